# A Citus cluster on loopback (coordinator + 2 workers) with the keys
# sharded next to a tenant-distributed charges table, and what must hold
# there (issue 15): each claim runs on the worker that holds its merchant's
# shard and writes that shard, never a shell relation; a call that Citus
# does not delegate is a clear error, never a read of an empty shell that
# answers 'new'; the keys move with their shards; the per-key lock is
# taken on the shard's node whichever node the client uses; no request is
# charged twice.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use CitusCluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $cluster = CitusCluster->new(workers => 2);
my $coord = $cluster->coordinator;
my ($worker1, $worker2) = $cluster->workers;

# --- The harness: three nodes with metadata, the extensions everywhere,
# a distributed table queried through the coordinator and through a worker.
is( $coord->safe_psql('postgres', q{
		SELECT string_agg(format('%s:%s:%s', groupid, hasmetadata, isactive), ' ' ORDER BY groupid)
		  FROM pg_dist_node}),
	'0:t:t 1:t:t 2:t:t',
	'coordinator (group 0) and two workers, all active with metadata');
for my $node ($cluster->nodes)
{
	is( $node->safe_psql('postgres',
			q{SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension WHERE extname <> 'plpgsql'}),
		'citus,idempotency,pgcrypto,pgstattuple',
		$node->name . ' has citus, idempotency (propagated by the coordinator) and its requirements');
}

$cluster->create_charges;
my $merchants = $cluster->values_per_worker('charges', 2, 'merchant_');
my @merchants = map { @{ $merchants->{ $_->name } } } $cluster->workers;
$coord->safe_psql('postgres',
	"INSERT INTO charges (merchant, key, amount) VALUES ('$_', 'setup', 1)")
  for @merchants;
for my $node ($coord, $worker2)
{
	is( $node->safe_psql('postgres',
			q{SELECT count(*) FROM charges WHERE key = 'setup'}),
		scalar(@merchants),
		'the charges of merchants on both workers, counted through ' . $node->name);
}
for my $worker ($cluster->workers)
{
	for my $m (@{ $merchants->{ $worker->name } })
	{
		my $shard = $cluster->shard_for('charges', $m);
		is( $worker->safe_psql('postgres',
				"SELECT count(*) FROM public.charges_$shard WHERE merchant = '$m'"),
			'1', "${m}'s charge is in its shard on " . $worker->name);
	}
}
$coord->safe_psql('postgres', q{DELETE FROM charges WHERE key = 'setup'});

# --- Distributing the extension (idempotency.distribute(), tested in
# 002_distribute.pl): keys.scope takes the merchant column's collation.
like($cluster->distribute('charges'),
	qr/idempotency\.keys\.scope now has the collation pg_catalog\."default"/,
	'distribute() co-locates the keys with charges, changing the collation of scope');

# --- The payment flow through the coordinator, in explicit transactions:
# force_delegation runs every call on the worker that holds the merchant.
for my $m (@merchants)
{
	is($cluster->pay($coord, $m, 'k1'), 'new', "$m: the first request is new");
	is($cluster->pay($coord, $m, 'k1'), 'replay', "$m: its retry replays");
	my $where = $coord->safe_psql('postgres', qq{
		BEGIN;
		SELECT outcome || ' on ' || inet_server_port()
		  FROM idempotency.claim('$m', 'k1', '\\x01');
		COMMIT;});
	is($where, 'replay on ' . $cluster->node_for('charges', $m)->port,
		"$m: the claim ran on the worker holding its shard");
}

# --- The other way: the whole request in a PL/pgSQL function distributed by
# merchant, delegated to the merchant's worker, where its statements
# (PERFORM and := included) run locally.
$coord->safe_psql('postgres', q{
	CREATE FUNCTION pay(merchant text, key text, amount int) RETURNS text
	LANGUAGE plpgsql AS $$
	DECLARE
		o text;
	BEGIN
		o := (idempotency.claim(merchant, key, '\x03')).outcome;
		IF o = 'new' THEN
			INSERT INTO charges (merchant, key, amount) VALUES (merchant, key, amount);
			PERFORM idempotency.complete(merchant, key, 201, jsonb_build_object('amount', amount));
		END IF;
		RETURN o || ' on ' || inet_server_port();
	END $$;
	SELECT create_distributed_function('pay(text, text, int)', 'merchant', colocate_with => 'charges');});
for my $m (@merchants)
{
	my $port = $cluster->node_for('charges', $m)->port;
	is($coord->safe_psql('postgres', "SELECT pay('$m', 'k-fn', 100)"), "new on $port",
		"$m: a request as a delegated function is new, on its worker");
	is($coord->safe_psql('postgres', "SELECT pay('$m', 'k-fn', 100)"), "replay on $port",
		"$m: its retry replays");
}

# --- What Citus holds: the keys are in the shards, the shells are empty.
is( $coord->safe_psql('postgres',
		q{SELECT count(*) FROM idempotency.keys WHERE key IN ('k1', 'k-fn')}),
	2 * @merchants,
	'Citus sees every completed key (they are in the shards)');
is( $coord->safe_psql('postgres', q{
		SELECT count(*)
		  FROM run_command_on_shards('idempotency.keys', $$SELECT count(*) FROM %s WHERE key = 'k1'$$)
		 WHERE result::int > 0}),
	scalar(@merchants),
	'each merchant\'s key is in a shard of its own');
is_deeply($cluster->shell_rows,
	{ coordinator => 0, worker1 => 0, worker2 => 0 },
	'no node has a row in its shell of idempotency.keys');

# --- Calls that Citus does not delegate, even with force_delegation, run
# where they are planned: on the coordinator, which has no shard of the
# keys.  Each must fail clearly; none may answer 'new' for a key completed
# above (that is a double charge).  $m1 is on worker1.
my $m1 = $merchants->{worker1}[0];
my $m2 = $merchants->{worker2}[0];
$coord->safe_psql('postgres', q{CREATE TABLE claim_log (outcome text)});
my %forms = (
	'a field of the result, SELECT (claim(...)).outcome' =>
	  qq{SELECT (idempotency.claim('$m1', 'k1', '\\x01')).outcome;},
	'a generic plan, the scope a parameter' => qq{
		SET plan_cache_mode = force_generic_plan;
		PREPARE c(text, text) AS SELECT outcome FROM idempotency.claim(\$1, \$2, '\\x01');
		EXECUTE c('$m1', 'k1');},
	'a CTE' => qq{
		WITH c AS (SELECT * FROM idempotency.claim('$m1', 'k1', '\\x01'))
		SELECT outcome FROM c;},
	'a subquery' => qq{
		SELECT outcome FROM (SELECT * FROM idempotency.claim('$m1', 'k1', '\\x01') OFFSET 0) AS s;},
	'INSERT ... SELECT' => qq{
		INSERT INTO claim_log SELECT outcome FROM idempotency.claim('$m1', 'k1', '\\x01');
		SELECT outcome FROM claim_log;},
	'a PL/pgSQL assignment' => qq{
		DO \$\$ DECLARE o text;
		BEGIN o := (idempotency.claim('$m1', 'k1', '\\x01')).outcome; RAISE NOTICE 'outcome=%', o; END \$\$;},
	'PL/pgSQL PERFORM' => qq{
		DO \$\$ BEGIN
			PERFORM idempotency.claim('$m1', 'k1', '\\x01');
			RAISE NOTICE 'outcome=claimed';
			PERFORM idempotency.release('$m1', 'k1');
		END \$\$;});
for my $form (sort keys %forms)
{
	my ($ret, $out, $err) = $coord->psql('postgres',
		"BEGIN; $forms{$form} ROLLBACK;",
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	my ($notice) = $err =~ /NOTICE:  (?:00000: )?outcome=(\w+)/;
	my $outcome = $out ne '' ? $out : $notice;
	isnt($outcome // 'none', 'new', "not delegated ($form): no 'new' for a completed key");
	isnt($outcome // 'none', 'claimed', "not delegated ($form): the claim did not go through");
	unlike($err, qr/ERROR:  XX/, "not delegated ($form): not an internal error");
	like($err, qr/ERROR:  IK421: idempotency keys of scope "$m1" are not stored on this node/,
		"not delegated ($form): IK421, the scope's shard is not on this node");
}

# A worker without metadata gets no delegated calls either.
$coord->safe_psql('postgres', "SELECT stop_metadata_sync_to_node('127.0.0.1', " . $worker2->port . ')');
my ($ret, $out, $err) = $coord->psql('postgres',
	"BEGIN; SELECT outcome FROM idempotency.claim('$m2', 'k1', '\\x01'); ROLLBACK;",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
isnt($out, 'new', "a merchant on a worker without metadata: no 'new' for a completed key");
like($err, qr/ERROR:  IK421: /, '... but IK421, from the coordinator that planned the call');
($ret, $out, $err) = $worker2->psql('postgres',
	"BEGIN; SELECT outcome FROM idempotency.claim('$m2', 'k1', '\\x01'); ROLLBACK;",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err,
	qr/ERROR:  IK421: idempotency\.keys is distributed by Citus, but this node has no Citus metadata for it/,
	'directly on the worker without metadata: IK421 (the mark distribute() left), never its empty shell');
$coord->safe_psql('postgres', "SELECT start_metadata_sync_to_node('127.0.0.1', " . $worker2->port . ')');
is($cluster->pay($coord, $m2, 'k1'), 'replay', 'with its metadata back, the key replays');

# --- The per-key lock is taken on the node that holds the shard, whichever
# node routes the call: two clients on two nodes get one 'new'.
my $holder = $coord->background_psql('postgres');
$holder->query_safe(qq{
	BEGIN;
	SELECT outcome FROM idempotency.claim('$m1', 'k-lock', '\\x02');});
for my $node ($worker2, $worker1)
{
	($ret, $out, $err) = $node->psql('postgres',
		"SELECT outcome FROM idempotency.claim('$m1', 'k-lock', '\\x02')",
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/ERROR:  IK409: idempotency key "k-lock" is in use/,
		"a duplicate through " . $node->name . ' finds the key held (IK409)');
}
is( $worker1->safe_psql('postgres',
		q{SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 18763 AND granted}),
	'1', 'the key\'s lock is held on the worker holding the shard');
$holder->query_safe(qq{
	INSERT INTO charges (merchant, key, amount) VALUES ('$m1', 'k-lock', 100);
	SELECT idempotency.complete('$m1', 'k-lock', 201);
	COMMIT;});
$holder->quit;
is($cluster->pay($worker2, $m1, 'k-lock', fingerprint => '\x02'), 'replay',
	'after the holder committed, the duplicate through worker2 replays');

# --- A claim left open: the client's COMMIT fails and the charge rolls
# back.  With one worker in the transaction Citus commits it in one phase
# and reports IK428 as a warning; with two it prepares, and IK428 is the error.
($ret, $out, $err) = $coord->psql('postgres', qq{
	BEGIN;
	SELECT outcome FROM idempotency.claim('$m1', 'k-open', '\\x01');
	INSERT INTO charges (merchant, key, amount) VALUES ('$m1', 'k-open', 100);
	COMMIT;}, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/WARNING:  IK428: cannot commit with idempotency key "k-open" still claimed/,
	'one worker: IK428 comes back as a warning');
like($err, qr/ERROR:  XX000: could not commit transaction for shard \d+ on at least one active node/,
	'... and COMMIT fails');
($ret, $out, $err) = $coord->psql('postgres', qq{
	BEGIN;
	SELECT outcome FROM idempotency.claim('$m1', 'k-open', '\\x01');
	INSERT INTO charges (merchant, key, amount) VALUES ('$m1', 'k-open', 100);
	INSERT INTO charges (merchant, key, amount) VALUES ('$m2', 'k-open', 100);
	COMMIT;}, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  IK428: cannot prepare transaction with idempotency key "k-open" still claimed/,
	'two workers (two-phase commit): COMMIT fails with IK428');
is($coord->safe_psql('postgres', q{SELECT count(*) FROM charges WHERE key = 'k-open'}),
	'0', 'the charges of both rolled back');

# --- Durable claims through the coordinator, on both workers.
for my $m ($m1, $m2)
{
	my $token = $coord->safe_psql('postgres',
		"SELECT lease_token FROM idempotency.claim('$m', 'k-durable', '\\x01', lease => '1 minute')");
	($ret, $out, $err) = $coord->psql('postgres', qq{
		SELECT 'checkpointed' FROM idempotency.checkpoint('$m', 'k-durable', 'authorized', '$token');
		SELECT * FROM idempotency.complete('$m', 'k-durable', 201, lease_token => '$token');});
	is($out, "checkpointed\nstored",
		"$m: a durable claim is checkpointed and completed through the coordinator");
	($ret, $out, $err) = $coord->psql('postgres',
		"SELECT outcome || ':' || recovery_point FROM idempotency.claim('$m', 'k-durable', '\\x01')");
	is($out, 'replay:authorized', "$m: its retry replays with its recovery point");
}

# --- The keys move with their shards: after a move (both modes), each
# retry replays and nobody is charged twice.
my %move = ($m1 => [ $worker1, $worker2, 'block_writes' ], $m2 => [ $worker2, $worker1, 'force_logical' ]);
for my $m ($m1, $m2)
{
	my ($from, $to, $mode) = @{ $move{$m} };
	$coord->safe_psql('postgres', sprintf(
		q{SELECT citus_move_shard_placement(%s, '127.0.0.1', %d, '127.0.0.1', %d, '%s')},
		$cluster->shard_for('charges', $m), $from->port, $to->port, $mode));
	is($cluster->node_for('idempotency.keys', $m)->name, $to->name,
		"$m: its shard moved to " . $to->name . " ($mode)");
	is($cluster->pay($coord, $m, 'k1'), 'replay', "$m: after the move ($mode), the retry replays");
}
is( $coord->safe_psql('postgres', q{
		SELECT count(*) FROM (SELECT FROM charges GROUP BY merchant, key HAVING count(*) > 1) AS twice}),
	'0', 'no request was charged twice');
is_deeply($cluster->shell_rows,
	{ coordinator => 0, worker1 => 0, worker2 => 0 },
	'after the moves, still no row in any shell');

done_testing();

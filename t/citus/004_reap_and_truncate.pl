# Reaping and TRUNCATE when the keys are distributed: reap() on the
# coordinator reaps every worker's shards, reap() on a worker its own, the
# background reaper of a worker its local shards; TRUNCATE is refused by
# the guard on the shell of the node where it is issued, and once a
# superuser allows it there, Citus truncates the shards (their copies of
# the guard let it through).
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
$cluster->create_charges;
$cluster->distribute('charges');
my $per_worker = $cluster->values_per_worker('charges', 2, 'm');
my @short = ($per_worker->{worker1}[0], $per_worker->{worker2}[0]);
my @long = ($per_worker->{worker1}[1], $per_worker->{worker2}[1]);

# Scopes whose keys are kept one second only, written through the
# coordinator into the reference table: every worker reads the policy.
$coord->safe_psql('postgres', join '', map {
	"INSERT INTO idempotency.policies (scope, ttl, retain) VALUES ('$_', '1 second', '1 second');"
} @short);

sub keys_of
{
	my ($m) = @_;
	return $coord->safe_psql('postgres', "SELECT count(*) FROM idempotency.keys WHERE scope = '$m'");
}

sub pay_keys
{
	my ($prefix, $n) = @_;
	for my $m (@short, @long)
	{
		is($cluster->pay($coord, $m, "$prefix$_"), 'new', "$m: $prefix$_ is new") for 1 .. $n;
	}
}

# --- reap() on the coordinator: every worker's shards.
pay_keys('a', 3);
sleep 2;
is($coord->safe_psql('postgres', 'SELECT idempotency.reap()'), '6',
	'reap() on the coordinator deletes the six keys past retention, on both workers');
is(keys_of($_), '0', "$_: its keys past retention are gone") for @short;
is(keys_of($_), '3', "$_: its keys within retention stay") for @long;

# --- reap() on a worker: its own shards only.
pay_keys('b', 2);
sleep 2;
is($worker1->safe_psql('postgres', 'SELECT idempotency.reap()'), '2',
	'reap() on worker1 deletes the keys past retention of its own shards');
is(keys_of($short[0]), '0', "$short[0] (worker1): reaped");
is(keys_of($short[1]), '2', "$short[1] (worker2): not reaped by worker1");

# --- The background reaper of worker2 reaps its local shards.
$worker2->append_conf('postgresql.conf', qq{
idempotency.reaper_databases = 'postgres'
idempotency.reaper_naptime = 1
});
$worker2->reload;
ok( $coord->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM idempotency.keys WHERE scope = '$short[1]'"),
	"worker2's background reaper deletes $short[1]'s keys past retention");
is(keys_of($long[1]), '5', "$long[1] (worker2): its keys within retention stay");
cmp_ok($worker2->safe_psql('postgres',
		q{SELECT reaped_rows FROM idempotency.stats WHERE database = current_database()}),
	'>=', 2, "worker2's statistics count the rows its reaper deleted");
is_deeply($cluster->shell_rows, { coordinator => 0, worker1 => 0, worker2 => 0 },
	'no node has a row in its shell of idempotency.keys');

# --- A split and a rebalance: the keys go with their shards, and a session
# that paid before (its Citus connections to the workers, and their shard
# maps, cached) replays afterwards.
my $session = $coord->background_psql('postgres', on_error_stop => 0);
sub replay_in_session
{
	my ($m, $k) = @_;
	my ($out) = $session->query(
		"SELECT outcome FROM idempotency.claim('$m', '$k', '\\x01')");
	return $out;
}
is(replay_in_session($long[0], 'a1'), 'replay', "$long[0]: a1 replays before the split");
my $shard = $cluster->shard_for('charges', $long[0]);
my $nodes = $coord->safe_psql('postgres', sprintf(q{
	SELECT string_agg(nodeid::text, ',' ORDER BY nodeport) FROM pg_dist_node WHERE nodeport IN (%d, %d)},
	$worker1->port, $worker2->port));
my ($ret, $out, $err) = $coord->psql('postgres', qq{
	SELECT citus_split_shard_by_split_points($shard,
		ARRAY[((shardminvalue::bigint + shardmaxvalue::bigint) / 2)::text], ARRAY[$nodes], 'block_writes')
	  FROM pg_dist_shard WHERE shardid = $shard});
is($ret, 0, "the shard of $long[0] splits in two, one half on each worker") or diag($err);
isnt($cluster->shard_for('idempotency.keys', $long[0]), $shard, "$long[0]'s keys are in a new shard");
is(replay_in_session($long[0], "a$_"), 'replay', "$long[0]: a$_ replays after the split") for 1 .. 3;
($ret, $out, $err) = $coord->psql('postgres', q{SELECT rebalance_table_shards(shard_transfer_mode => 'block_writes')});
is($ret, 0, 'rebalance_table_shards() completes') or diag($err);
for my $m (@long)
{
	is(replay_in_session($m, "a$_"), 'replay', "$m: a$_ replays after the rebalance") for 1 .. 3;
}
$session->quit;
is_deeply($cluster->shell_rows, { coordinator => 0, worker1 => 0, worker2 => 0 },
	'no node has a row in its shell of idempotency.keys');

# --- TRUNCATE: refused on the node where it is issued, by the guard on its
# shell; allowed there by a superuser, it truncates every shard.
for my $node ($coord, $worker1)
{
	my ($ret, $out, $err) = $node->psql('postgres', 'TRUNCATE idempotency.keys',
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/ERROR:  42501: TRUNCATE of idempotency\.keys is refused/,
		'TRUNCATE through ' . $node->name . ' is refused by the guard on its shell');
}
is(keys_of($long[0]), '5', 'the keys are all still there');
$coord->safe_psql('postgres', q{
	SET idempotency.allow_truncate = on;
	TRUNCATE idempotency.keys;});
is($coord->safe_psql('postgres', 'SELECT count(*) FROM idempotency.keys'), '0',
	'allowed on the coordinator, TRUNCATE empties every shard');

done_testing();

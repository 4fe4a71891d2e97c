# idempotency.distribute(colocate_with), made by the extension's scripts:
# what it refuses (changing nothing), what it
# makes of the keys, the policies and the functions, that a second call
# changes nothing, that the coordinator's existing keys and policies are
# kept, and how a node added later joins.
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
$cluster->load_distribute;

# Collation of keys.scope on each node, by name.
sub scope_collations
{
	return join ' ', map {
		$_->safe_psql('postgres', q{
			SELECT c.collname FROM pg_attribute AS a JOIN pg_collation AS c ON c.oid = a.attcollation
			 WHERE a.attrelid = 'idempotency.keys'::regclass AND a.attname = 'scope'})
	} $cluster->nodes;
}

# What distribute() decides on, in the coordinator's catalogs.
sub distribution
{
	return $coord->safe_psql('postgres', q{
		SELECT string_agg(format('%s:%s:%s', logicalrelid, partmethod, colocationid), ' ' ORDER BY logicalrelid::text)
		  FROM pg_dist_partition;
		SELECT string_agg(format('%s:%s:%s:%s', objid::regprocedure, distribution_argument_index,
								 colocationid, force_delegation), ' ' ORDER BY objid::regprocedure::text)
		  FROM pg_dist_object
		 WHERE classid = 'pg_proc'::regclass AND objid::regprocedure::text LIKE 'idempotency.%'
		   AND objid::regprocedure::text <> 'idempotency.distribute(regclass)';
		SELECT string_agg(shardid::text, ' ' ORDER BY shardid) FROM pg_dist_shard;});
}

# Tables distribute() must refuse, each for its own reason.
$coord->safe_psql('postgres', q{
	CREATE TABLE local_tenants (merchant text PRIMARY KEY);
	CREATE TABLE ref_tenants (merchant text PRIMARY KEY);
	SELECT create_reference_table('ref_tenants');
	CREATE TABLE bigint_tenants (merchant bigint PRIMARY KEY);
	SELECT create_distributed_table('bigint_tenants', 'merchant');
	CREATE TABLE varchar_tenants (merchant varchar PRIMARY KEY);
	SELECT create_distributed_table('varchar_tenants', 'merchant');
	CREATE TABLE single_shard_tenants (merchant text PRIMARY KEY);
	SELECT create_distributed_table('single_shard_tenants', NULL);
	CREATE TABLE append_tenants (merchant text);
	SELECT create_distributed_table('append_tenants', 'merchant', 'append');
	SET citus.shard_replication_factor = 2;
	CREATE TABLE replicated_tenants (merchant text PRIMARY KEY);
	SELECT create_distributed_table('replicated_tenants', 'merchant');
	RESET citus.shard_replication_factor;});
$cluster->create_charges;
my %refused = (
	'NULL' => qr/IK400: argument "colocate_with" must not be NULL/,
	'local_tenants' => qr/55000: table public\.local_tenants is not a distributed table/,
	'ref_tenants' => qr/55000: table public\.ref_tenants is not hash-distributed by a tenant column/,
	'single_shard_tenants' => qr/55000: table public\.single_shard_tenants is not hash-distributed by a tenant column/,
	'append_tenants' => qr/55000: table public\.append_tenants is not hash-distributed by a tenant column/,
	'bigint_tenants' =>
	  qr/42804: the distribution column "merchant" of table public\.bigint_tenants is of type bigint, not text/,
	'varchar_tenants' =>
	  qr/42804: the distribution column "merchant" of table public\.varchar_tenants is of type character varying, not text/,
	'replicated_tenants' => qr/55000: table public\.replicated_tenants has more than one placement per shard/);
# A nondeterministic collation would let scopes it calls equal share keys;
# distribute() relies on Citus refusing to hash-distribute by one.
my $icu = $coord->safe_psql('postgres', q{SELECT count(*) > 0 FROM pg_collation WHERE collprovider = 'i'});
SKIP:
{
	skip 'this PostgreSQL has no ICU, so no nondeterministic collation', 1 unless $icu eq 't';
	my ($ret, $out, $err) = $coord->psql('postgres', q{
		CREATE COLLATION case_insensitive (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
		CREATE TABLE ci_tenants (merchant text COLLATE case_insensitive PRIMARY KEY);
		SELECT create_distributed_table('ci_tenants', 'merchant');});
	like($err, qr/ERROR:  Hash distributed partition columns may not use a non deterministic collation/,
		'Citus refuses a tenant column with a nondeterministic collation');
}
my $before = distribution();
for my $table (sort keys %refused)
{
	my $arg = $table eq 'NULL' ? 'NULL' : "'$table'";
	my ($ret, $out, $err) = $coord->psql('postgres', "SELECT idempotency.distribute($arg)",
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, $refused{$table}, "distribute($table) is refused");
}

# Only the coordinator distributes; a worker's own rows are not hidden.
my ($ret, $out, $err) = $worker1->psql('postgres', q{SELECT idempotency.distribute('charges')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/55000: idempotency\.distribute\(\) must run on the Citus coordinator/,
	'distribute() on a worker is refused');
$worker2->safe_psql('postgres', q{
	INSERT INTO idempotency.keys (scope, key, fingerprint, state, response_status, created_at, expires_at, retain_until)
	VALUES ('stray', 'k', '\x01', 'completed', 201, now(), now() + interval '1 day', now() + interval '7 days')});
($ret, $out, $err) = $coord->psql('postgres', q{SELECT idempotency.distribute('charges')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/55000: node 127\.0\.0\.1:\d+ has rows in idempotency\.keys or idempotency\.policies/,
	'distribute() is refused while a worker has rows of its own');
$worker2->safe_psql('postgres', q{DELETE FROM idempotency.keys});
is(distribution(), $before, 'nothing was distributed by the refused calls');
is(scope_collations(), 'C C C', 'keys.scope is still COLLATE "C" on every node');

# Keys and a policy the coordinator had before: a completed request and a
# scope switched off (claims record nothing: a retry is 'new').
my $merchants = $cluster->values_per_worker('charges', 1, 'merchant_');
my ($m1, $m2) = ($merchants->{worker1}[0], $merchants->{worker2}[0]);
is($cluster->pay($coord, $m1, 'before'), 'new', 'a request before distribute()');
$coord->safe_psql('postgres', "INSERT INTO idempotency.policies (scope, mode) VALUES ('$m2', 'off')");

# A DBA's trigger on the keys: Citus copies it to every shard, which needs
# citus.enable_unsafe_triggers while the table is distributed.  (The shards
# are made from the coordinator's table; the workers' shells do not matter.)
$coord->safe_psql('postgres', q{
	CREATE FUNCTION public.keys_audit() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
	CREATE TRIGGER keys_audit AFTER INSERT ON idempotency.keys FOR EACH ROW EXECUTE FUNCTION public.keys_audit();});

my $notices = $cluster->distribute('charges');
like($notices, qr/idempotency\.keys\.scope now has the collation pg_catalog\."default" of public\.charges\.merchant, on every node/,
	'distribute() says it changed the collation of scope');
is(scope_collations(), 'default default default', 'keys.scope has the collation of charges.merchant on every node');
is( $coord->safe_psql('postgres', q{
		SELECT string_agg(result, ' ') FROM run_command_on_all_nodes($$SHOW idempotency.citus_distributed$$)}),
	'on on on', 'every node has the mark idempotency.citus_distributed for this database');
my $colocation = $coord->safe_psql('postgres',
	q{SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = 'charges'::regclass});
my ($tables, $functions) = split /\n/, distribution();
like($tables, qr/idempotency\.keys:h:$colocation /, 'the keys are hash-distributed, co-located with charges');
like($tables, qr/idempotency\.policies:n:\d+/, 'the policies are a reference table');
is($functions, join(' ',
		"idempotency.checkpoint(text,text,text,uuid):0:$colocation:t",
		"idempotency.claim(text,text,bytea,interval,interval):0:$colocation:t",
		"idempotency.complete(text,text,integer,jsonb,jsonb,uuid):0:$colocation:t",
		"idempotency.release(text,text,uuid):0:$colocation:t"),
	'claim, complete, release and checkpoint are delegated by scope, forced inside transactions');
is( $coord->safe_psql('postgres', q{
		SELECT count(*) FROM pg_dist_shard AS s
		 WHERE s.logicalrelid = 'idempotency.keys'::regclass
		   AND NOT EXISTS (SELECT FROM pg_dist_shard AS c
							WHERE c.logicalrelid = 'charges'::regclass
							  AND c.shardminvalue = s.shardminvalue AND c.shardmaxvalue = s.shardmaxvalue)}),
	'0', 'every shard of the keys covers the hash range of a shard of charges');
is( $worker1->safe_psql('postgres', q{
		SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'keys_audit_%'
		   AND tgrelid IN (SELECT ('idempotency.keys_' || shardid)::regclass FROM pg_dist_shard AS s
							 JOIN pg_dist_placement AS p USING (shardid)
							WHERE s.logicalrelid = 'idempotency.keys'::regclass
							  AND p.groupid = (SELECT groupid FROM pg_dist_local_group))}),
	$worker1->safe_psql('postgres', q{
		SELECT count(*) FROM pg_dist_shard AS s JOIN pg_dist_placement AS p USING (shardid)
		 WHERE s.logicalrelid = 'idempotency.keys'::regclass
		   AND p.groupid = (SELECT groupid FROM pg_dist_local_group)}),
	"the DBA's trigger is on every shard of the keys on worker1");

# The coordinator's rows are in the shards now, and its shells are empty.
is($coord->safe_psql('postgres', "SELECT state FROM idempotency.keys WHERE scope = '$m1'"),
	'completed', 'the key completed before distribute() is in its shard');
is($coord->safe_psql('postgres', 'SELECT scope || \':\' || mode FROM idempotency.policies'),
	"$m2:off", 'the policy is in the reference table');
is_deeply($cluster->shell_rows('idempotency.keys'), { coordinator => 0, worker1 => 0, worker2 => 0 },
	'no shell of the keys has a row');
is_deeply($cluster->shell_rows('idempotency.policies'), { coordinator => 0, worker1 => 0, worker2 => 0 },
	'no shell of the policies has a row');

# What the C part must make of them: the retry of the request made before
# distribute() replays; the policy written through the coordinator applies
# on the worker that holds the merchant.
is($cluster->pay($coord, $m1, 'before'), 'replay', 'the request made before distribute() replays');
is($cluster->pay($coord, $m2, 'off-1'), 'new', 'a scope switched off: a request is new');
is($cluster->pay($coord, $m2, 'off-1'), 'new', '... and so is its retry (off records nothing)');

# A second call changes nothing; so does a call naming another table of
# the same co-location group.  Another group is refused.
$before = distribution();
like($cluster->distribute('charges'), qr/NOTICE:  idempotency is already distributed with public\.charges/,
	'a second distribute() says there is nothing to do');
$coord->safe_psql('postgres', q{
	CREATE TABLE refunds (merchant text NOT NULL, id bigserial, PRIMARY KEY (merchant, id));
	SELECT create_distributed_table('refunds', 'merchant', colocate_with => 'charges');
	CREATE TABLE other_tenants (merchant text PRIMARY KEY);
	SELECT create_distributed_table('other_tenants', 'merchant', colocate_with => 'none');});
like($cluster->distribute('refunds'), qr/already distributed with public\.refunds/,
	'a table co-located with charges: nothing to do');
($ret, $out, $err) = $coord->psql('postgres', q{SELECT idempotency.distribute('other_tenants')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/55000: idempotency\.keys is already distributed, not co-located with public\.other_tenants/,
	'a table of another co-location group is refused');
is(join("\n", map { s/ \S*(?:other_tenants|refunds)\S*//gr } (split /\n/, distribution())[0 .. 1]),
	join("\n", (split /\n/, $before)[0 .. 1]),
	'the tables and functions are as the first call left them');

# A node added later: the extension Citus creates on it has keys.scope
# COLLATE "C", which Citus refuses to co-locate, so citus_add_node() fails
# until the node is given the change the NOTICE above names.
my $worker3 = $cluster->new_worker('worker3');
($ret, $err) = $cluster->add_worker($worker3);
like($err, qr/Distribution column collations don't match for keys and charges/,
	'a new node with keys.scope COLLATE "C" cannot join');
my ($prepare) = $notices =~ /before citus_add_node\(\): (.*)$/m;
$worker3->safe_psql('postgres', $prepare);
($ret, $err) = $cluster->add_worker($worker3);
is($ret, 0, 'after the change the NOTICE names, it joins');
is($worker3->safe_psql('postgres', q{SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'idempotency.keys'::regclass}),
	'1', 'and has the keys\' metadata');

done_testing();

# ALTER EXTENSION idempotency UPDATE on a distributed install, by the
# procedure of README.md ("Scaling out with Citus"): the coordinator's
# shells with DDL propagation off, every worker's the same way, then each
# table change on every placement.  Run against a test-only update
# (t/citus/update-test.sql: a column added to the keys and a function),
# which scripts/test-citus.sh installs in its private namespace only.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use CitusCluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $cluster = CitusCluster->new(workers => 2);
my $coord = $cluster->coordinator;
my $available = $coord->safe_psql('postgres', q{
	SELECT count(*) FROM pg_available_extension_versions
	 WHERE name = 'idempotency' AND version = '0.3.0citustest'});
plan skip_all => 'no test-only update installed (run through make test-citus)' unless $available;

$cluster->create_charges;
$cluster->distribute('charges');
my $per_worker = $cluster->values_per_worker('charges', 1, 'm');
my @merchants = ($per_worker->{worker1}[0], $per_worker->{worker2}[0]);
is($cluster->pay($coord, $_, 'before'), 'new', "$_: a request before the update") for @merchants;

# What Citus does with a plain ALTER EXTENSION UPDATE: it forwards the
# script's ALTER TABLE to the shards with the whole script as its text.
my ($ret, $out, $err) = $coord->psql('postgres',
	q{ALTER EXTENSION idempotency UPDATE TO '0.3.0citustest'});
isnt($ret, 0, 'a plain ALTER EXTENSION UPDATE on the coordinator fails') or diag($out);
is( $coord->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'idempotency'}),
	'0.3.0', '... and changes nothing');

# The procedure.
$coord->safe_psql('postgres', q{
	SET citus.enable_ddl_propagation = off;
	ALTER EXTENSION idempotency UPDATE TO '0.3.0citustest';
	RESET citus.enable_ddl_propagation;});
is( $coord->safe_psql('postgres', q{
		SELECT bool_and(success) FROM run_command_on_workers($$SET citus.enable_ddl_propagation = off;
			ALTER EXTENSION idempotency UPDATE TO '0.3.0citustest'$$)}),
	't', 'every worker updates its shells');
is( $coord->safe_psql('postgres', q{
		SELECT bool_and(success) FROM run_command_on_placements('idempotency.keys',
			$$ALTER TABLE %s ADD COLUMN note text$$)}),
	't', 'the table change is made on every placement of the keys');
is( $coord->safe_psql('postgres', q{
		SELECT string_agg(DISTINCT result, ',') FROM run_command_on_all_nodes(
			$$SELECT extversion FROM pg_extension WHERE extname = 'idempotency'$$)}),
	'0.3.0citustest', 'every node has the new version');
is( $coord->safe_psql('postgres', q{
		SELECT bool_and(result = '1') FROM run_command_on_placements('idempotency.keys',
			$$SELECT count(*) FROM pg_attribute WHERE attrelid = '%s'::regclass AND attname = 'note'$$)}),
	't', 'every shard of the keys has the new column');

# Claims work as before, on both workers, through the shards.
for my $m (@merchants)
{
	is($cluster->pay($coord, $m, 'before'), 'replay', "$m: the request from before the update replays");
	is($cluster->pay($coord, $m, 'after'), 'new', "$m: a new request is new");
	is($cluster->pay($coord, $m, 'after'), 'replay', "$m: and its retry replays");
}
is($coord->safe_psql('postgres', 'SELECT idempotency.citus_update_test()'), 'updated',
	'the update\'s new function is there');
is_deeply($cluster->shell_rows, { coordinator => 0, worker1 => 0, worker2 => 0 },
	'no node has a row in its shell of idempotency.keys');

done_testing();

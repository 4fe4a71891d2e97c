# The background reaper: it deletes rows past retention within a naptime,
# in every listed database; SIGHUP changes its naptime and database list
# without a restart; a terminated launcher and a crashed server bring it
# back without losing unexpired keys; a database without the extension
# causes no errors; and it runs on a primary only, from its promotion on.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('reaper');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'idempotency'
idempotency.reaper_naptime = 1
idempotency.reaper_databases = 'postgres'
});
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE db2');
$node->safe_psql('postgres', 'CREATE DATABASE db3');   # never gets the extension
$node->safe_psql($_, 'CREATE EXTENSION idempotency CASCADE') for qw(postgres db2);

# n rows past retention and one still in its replay window, in scope $scope
sub add_keys
{
	my ($db, $scope, $n) = @_;
	$node->safe_psql($db, qq{
		INSERT INTO idempotency.keys (scope, key, fingerprint, state, response_status,
		                              created_at, expires_at, retain_until)
		SELECT '$scope', 'expired-' || g, '\\x01', 'completed', 200,
		       now() - interval '9 days', now() - interval '8 days', now() - interval '1 day'
		  FROM generate_series(1, $n) g;
		BEGIN;
		SELECT outcome FROM idempotency.claim('$scope', 'live', '\\x01');
		SELECT idempotency.complete('$scope', 'live', 201);
		COMMIT;
	});
}

sub expired_left
{
	my ($db, $scope) = @_;
	return $node->safe_psql($db,
		"SELECT count(*) FROM idempotency.keys WHERE scope = '$scope' AND key <> 'live'");
}

sub runs
{
	my ($db) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce(sum(reaper_runs), 0) FROM idempotency.stats WHERE database = '$db'");
}

sub set_and_reload
{
	my ($setting) = @_;
	$node->append_conf('postgresql.conf', $setting);
	$node->reload;
}

# --- rows past retention vanish within a naptime --------------------------
add_keys('postgres', 'a', 2500);
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM idempotency.keys WHERE scope = 'a'}),
	'expired rows are reaped, the live one stays');
is($node->safe_psql('postgres', q{
	SELECT outcome FROM idempotency.claim('a', 'live', '\x01')}),
	'replay', 'the live key still replays');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_stat_activity
	 WHERE backend_type = 'idempotency reaper launcher'}),
	'1', 'one launcher');
ok($node->poll_query_until('postgres', q{
	SELECT reaped_rows >= 2500 AND reaper_runs > 0 AND last_reap IS NOT NULL
	  FROM idempotency.stats WHERE database = 'postgres'}),
	'the runs and the rows show in idempotency.stats');

# --- SIGHUP: a new database list and a new naptime -------------------------
add_keys('db2', 'b', 100);
set_and_reload("idempotency.reaper_databases = 'postgres, db2, db3, no_such_db'");
ok($node->poll_query_until('db2', q{
	SELECT count(*) = 1 FROM idempotency.keys WHERE scope = 'b'}),
	'a database added on reload is reaped: two databases');

set_and_reload("idempotency.reaper_naptime = 3600");
# the runs under way finish; after that nothing runs for an hour
sleep 3;
my $before = runs('postgres');
add_keys('postgres', 'c', 10);
sleep 3;
is(expired_left('postgres', 'c'), '10',
	'with a one-hour naptime, nothing is reaped for seconds');
is(runs('postgres'), $before, 'and no run started');
set_and_reload("idempotency.reaper_naptime = 1");
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM idempotency.keys WHERE scope = 'c'}),
	'back to one second on reload, without a restart');

# --- a terminated launcher comes back ---------------------------------------
my $launcher = $node->safe_psql('postgres', q{
	SELECT pid FROM pg_stat_activity WHERE backend_type = 'idempotency reaper launcher'});
$node->safe_psql('postgres', "SELECT pg_terminate_backend($launcher)");
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'idempotency reaper launcher' AND pid <> $launcher}),
	'pg_terminate_backend() on the launcher: the postmaster restarts it');
add_keys('postgres', 'd', 50);
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM idempotency.keys WHERE scope = 'd'}),
	'and it reaps');

set_and_reload("idempotency.reaper_databases = 'postgres'");
add_keys('db2', 'b2', 10);
sleep 4;
is(expired_left('db2', 'b2'), '10', 'a database taken off the list is no longer reaped');

# --- immediate shutdown: it comes back, and unexpired keys survive ----------
$node->stop('immediate');
$node->start;
add_keys('postgres', 'e', 50);
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM idempotency.keys WHERE scope = 'e'}),
	'after a crash and restart the reaper is back');
is($node->safe_psql('postgres', q{
	SELECT string_agg(scope, ',' ORDER BY scope) FROM idempotency.keys WHERE key = 'live'}),
	'a,c,d,e', 'no unexpired key was lost');

# --- the log: no errors for db3, one line for the missing database ----------
my $log = slurp_file($node->logfile);
my @errors = grep {
	!/FATAL:  terminating background worker "idempotency reaper( launcher)?" due to administrator command/
} ($log =~ /^.*(?:ERROR|FATAL|PANIC):.*$/mg);
is_deeply(\@errors, [],
	'no error in the log, from db3 without the extension or otherwise, but the termination');
my @missing = ($log =~ /idempotency reaper: database "no_such_db" of idempotency.reaper_databases does not exist/g);
ok(@missing >= 1 && @missing <= 2,
	'a missing database is reported once per launcher (it was restarted once), not in a loop');
unlike($log, qr/server process .* was terminated by signal/, 'nothing crashed');

# --- a standby runs no reaper until it is promoted --------------------------
$node->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($node, 'backup', has_streaming => 1);
$standby->start;
$node->wait_for_catchup($standby);
add_keys('postgres', 'f', 20);
$node->wait_for_catchup($standby);
sleep 2;
is($standby->safe_psql('postgres', q{
	SELECT count(*) FROM pg_stat_activity
	 WHERE backend_type LIKE 'idempotency reaper%'}),
	'0', 'no reaper on a hot standby');
$node->stop;
$standby->promote;
ok($standby->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM idempotency.keys WHERE scope = 'f'}),
	'after promotion the new primary reaps');
is($standby->safe_psql('postgres', q{
	SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'idempotency reaper launcher'}),
	'1', 'with its own launcher');
$standby->stop;

done_testing();

# A reaper holds a connection only while it runs, for at most two seconds,
# so that a listed database is never pinned: DROP DATABASE (by its owner,
# who may not end a superuser's session), ALTER DATABASE ... RENAME and
# CREATE DATABASE ... TEMPLATE of a listed database, the default
# 'postgres' included, succeed while reaping goes on.  A listed database
# that refuses connections is skipped with one log line; one that was
# dropped or renamed is reported once, not in a loop.  0.1.0's reapers
# stayed connected for life: each of these failed with 55006, and after a
# forced drop the orphan looped on FATAL every 5 s.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('no_pin');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'idempotency'
idempotency.reaper_naptime = 1
idempotency.reaper_databases = 'postgres, appdb, closed'
idempotency.reaper_rows_per_second = 2000
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE ROLE app_owner LOGIN CREATEDB;
	CREATE DATABASE appdb OWNER app_owner;
	CREATE DATABASE closed;
	CREATE EXTENSION idempotency CASCADE});
$node->safe_psql($_, 'CREATE EXTENSION idempotency CASCADE') for qw(appdb closed);

sub backlog
{
	my ($db, $n) = @_;
	$node->safe_psql($db, qq{
		INSERT INTO idempotency.keys (scope, key, fingerprint, state, response_status,
		                              created_at, expires_at, retain_until)
		SELECT 'bulk', 'k' || g, '\\x01', 'completed', 200, now() - interval '9 days',
		       now() - interval '8 days', now() - interval '1 day' + g * interval '1 microsecond'
		  FROM generate_series(1, $n) g});
}

sub reaping
{
	my ($db) = @_;
	return $node->poll_query_until('postgres', qq{
		SELECT count(*) = 1 FROM pg_stat_activity
		 WHERE backend_type = 'idempotency reaper' AND datname = '$db'});
}

# Refusing connections: skipped, said once.
$node->safe_psql('postgres', 'ALTER DATABASE closed ALLOW_CONNECTIONS false');
ok($node->wait_for_log(qr/database "closed" does not allow connections; it is not reaped/),
	'a database that refuses connections is skipped, and said so');
backlog('postgres', 30000);
backlog('appdb', 30000);

# The reaper is in appdb, with a backlog for many runs: RENAME waits for
# the run to end, and succeeds.
ok(reaping('appdb'), 'a reaper runs in appdb');
my $offset = length(slurp_file($node->logfile));
my ($ret, $out, $err) = $node->psql('postgres', 'ALTER DATABASE appdb RENAME TO appdb_renamed');
is($ret, 0, 'ALTER DATABASE RENAME of a listed database being reaped succeeds') or diag $err;

# The owner drops it, not a superuser, without FORCE.
($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE appdb_renamed',
	extra_params => [ '-U', 'app_owner' ]);
is($ret, 0, 'DROP DATABASE by its owner succeeds') or diag $err;

# TEMPLATE postgres, the default listed database, while it is being reaped.
ok(reaping('postgres'), 'a reaper runs in postgres');
($ret, $out, $err) = $node->psql('postgres', 'CREATE DATABASE copy TEMPLATE postgres');
is($ret, 0, 'CREATE DATABASE ... TEMPLATE postgres succeeds while it is reaped') or diag $err;
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM idempotency.keys WHERE retain_until < now()}),
	'and the backlog of postgres is reaped all the same');

# A database created under a listed name afterwards is reaped.
$node->safe_psql('postgres', 'CREATE DATABASE appdb');
$node->safe_psql('appdb', 'CREATE EXTENSION idempotency CASCADE');
backlog('appdb', 100);
ok($node->poll_query_until('appdb', q{
	SELECT count(*) = 0 FROM idempotency.keys WHERE retain_until < now()}),
	'a listed database created again is reaped again');
sleep 2;

my $log = substr(slurp_file($node->logfile), $offset);
my @noconn = ($log =~ /database "closed" does not allow connections; it is not reaped/g);
is(scalar @noconn, 0, 'a database that refuses connections is not reported again');
my @missing = ($log =~ /database "appdb" of idempotency.reaper_databases does not exist/g);
is(scalar @missing, 1, 'a renamed or dropped database is reported once');
my @failed = ($log =~ /FATAL:  database \d+ does not exist/g);
ok(@failed <= 1, 'no reaper failed to connect in a loop (' . scalar(@failed) . ' times)');
unlike($log, qr/being accessed by other users/, 'nothing was refused for a session in the way');
$node->stop;
done_testing();

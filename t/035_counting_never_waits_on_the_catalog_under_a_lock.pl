# Counting never reads the catalog under the statistics' LWLock, nor on
# the way out of an error.  When every one of the 64 per-database slots of
# idempotency.stats is taken, a database new to the statistics looks for
# the slot of a database since dropped, which is a catalog question
# (pg_database).  Asked under the LWLock, a syscache miss waits for a
# heavyweight lock on pg_database (a VACUUM FULL pg_database, here a LOCK
# TABLE standing in for it) with interrupts held off: the call cannot be
# cancelled, and every backend that counts waits on the LWLock behind it.
# Now the question is asked before the call runs, outside the lock:
#  - the new database's first counted call waits for pg_database like any
#    query, and statement_timeout cancels it (57014);
#  - meanwhile a new backend of a database that has its slot counts at
#    once, without waiting;
#  - once pg_database is free, the new database takes the slot of the
#    database that was dropped, and its counters count.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('slots');
$node->init;
# No reaper: it would take a slot of its own, whenever it first runs.
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'idempotency'\n"
	  . "idempotency.reaper_databases = ''\n");
$node->start;

# A counted call that counts: a claim, released.
my $count_one = q{BEGIN;
	SELECT outcome FROM idempotency.claim('s', 'k', '\x01');
	SELECT idempotency.release('s', 'k');
	COMMIT;};

# A template with the extension, and 64 databases made from it, each of
# which takes a slot with its first counted call.
$node->safe_psql('postgres', 'CREATE DATABASE tmpl');
$node->safe_psql('tmpl', 'CREATE EXTENSION idempotency CASCADE');
for my $i (1 .. 64)
{
	$node->safe_psql('postgres', "CREATE DATABASE d$i TEMPLATE tmpl");
	$node->safe_psql("d$i", $count_one);
}
is($node->safe_psql('d1',
		q{SELECT count(*) FROM idempotency.stats WHERE dboid IS NOT NULL}),
	'64', 'the 64 slots are taken, one per database');

# One database is dropped, and a new one made: its first count must find
# the dropped database's slot.
$node->safe_psql('postgres', 'DROP DATABASE d64');
$node->safe_psql('postgres', 'CREATE DATABASE newdb TEMPLATE tmpl');

# Sessions connected before pg_database is locked (connecting reads it).
my $newdb = $node->background_psql('newdb', on_error_stop => 0);
my $d1 = $node->background_psql('d1', on_error_stop => 0, timeout => 60);
my $locker = $node->background_psql('postgres', on_error_stop => 0);
$locker->query_safe('BEGIN; LOCK TABLE pg_catalog.pg_database IN ACCESS EXCLUSIVE MODE');

$newdb->{stderr} = '';
my $started = time;
$newdb->query(qq{SET statement_timeout = '2s';
	$count_one});
my $err = $newdb->{stderr};
$newdb->{stderr} = '';
like($err, qr/canceling statement due to statement timeout/,
	'the first counted call of a new database, waiting for pg_database, is cancelled by statement_timeout');
cmp_ok(time - $started, '<', 30, '... and does not wait until pg_database is free');

# A database with its slot counts meanwhile: this backend has not counted
# yet, so its first counted call looks for its slot under the LWLock.
$started = time;
$d1->{stderr} = '';
$d1->query(qq{SET statement_timeout = '10s';
	$count_one});
is($d1->{stderr}, '', 'a backend of a database that has its slot counts while pg_database is locked');
cmp_ok(time - $started, '<', 10, '... at once');
$d1->quit;

$locker->query_safe('COMMIT');
$locker->quit;

$newdb->query_safe(q{RESET statement_timeout});
$newdb->query_safe($count_one);
$newdb->quit;
is($node->safe_psql('newdb', q{
	SELECT count(*) FROM idempotency.stats
	 WHERE dboid = (SELECT oid FROM pg_database WHERE datname = 'newdb')}),
	'1', 'once pg_database is free, the new database has the dropped one\'s slot');

$node->stop;
done_testing();

# At most one reaper per listed database at any moment, and none left
# behind: across crash restarts of the cluster (a backend killed with
# SIGKILL, three times), pg_terminate_backend() of the launcher and of a
# reaper, and SIGHUP changes of idempotency.reaper_databases.  0.1.0's
# reapers survived the crash restart while the new launcher started more:
# 1, 2, 3 per database after two crashes.  A terminated reaper is not
# restarted at once either: its database's next run waits out a back-off.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = PostgreSQL::Test::Cluster->new('one_reaper');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'idempotency'
idempotency.reaper_naptime = 1
idempotency.reaper_databases = 'postgres, db2'
idempotency.reaper_rows_per_second = 2000
restart_after_crash = on
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE db2');
$node->safe_psql($_, 'CREATE EXTENSION idempotency CASCADE') for qw(postgres db2);

# a backlog, so that runs follow each other for a while
my $batches = 0;
sub backlog
{
	my ($db, $n) = @_;
	$batches++;
	$node->safe_psql($db, qq{
		INSERT INTO idempotency.keys (scope, key, fingerprint, state, response_status,
		                              created_at, expires_at, retain_until)
		SELECT 'bulk', 'b$batches-' || g, '\\x01', 'completed', 200, now() - interval '9 days',
		       now() - interval '8 days', now() - interval '1 day' + g * interval '1 microsecond'
		  FROM generate_series(1, $n) g});
}

# the most reapers seen at once, per database and in all, over seconds
sub most_reapers
{
	my ($seconds) = @_;
	my ($per_db, $all, $launchers) = (0, 0, 0);
	my $until = time + $seconds;
	while (time < $until)
	{
		my $row = $node->safe_psql('postgres', q{
			SELECT coalesce(max(n), 0), coalesce(sum(n), 0),
			       (SELECT count(*) FROM pg_stat_activity
			         WHERE backend_type = 'idempotency reaper launcher')
			  FROM (SELECT count(*) AS n FROM pg_stat_activity
			         WHERE backend_type = 'idempotency reaper' GROUP BY datname) r});
		my ($d, $a, $l) = split /\|/, $row;
		$per_db = $d if $d > $per_db;
		$all = $a if $a > $all;
		$launchers = $l if $l > $launchers;
		usleep(20_000);
	}
	return ($per_db, $all, $launchers);
}

backlog($_, 40000) for qw(postgres db2);
my ($per_db, $all, $launchers) = most_reapers(4);
is($per_db, 1, 'one reaper per database while both have a backlog');
is($all, 1, 'and one at a time in all: two worker slots, whatever the list');
is($launchers, 1, 'one launcher');

for my $crash (1 .. 3)
{
	backlog($_, 10000) for qw(postgres db2);
	my $victim = $node->background_psql('postgres');
	my $pid = $victim->query_safe('SELECT pg_backend_pid()');
	kill 'KILL', $pid;
	$victim->{run}->finish;
	$node->poll_query_until('postgres', 'SELECT 1', '1');
	ok($node->poll_query_until('postgres', q{
		SELECT count(*) = 1 FROM pg_stat_activity
		 WHERE backend_type = 'idempotency reaper launcher'}),
		"after crash $crash the launcher is back");
	my ($d, $a, $l) = most_reapers(3);
	ok($d <= 1 && $a <= 1 && $l == 1,
		"after crash $crash: at most one reaper per database ($d), one in all ($a), one launcher ($l)");
}

# A terminated launcher leaves its running reaper alone; its successor
# starts none while that one runs.
backlog('postgres', 20000);
$node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'idempotency reaper'});
$node->safe_psql('postgres', q{
	SELECT pg_terminate_backend(pid) FROM pg_stat_activity
	 WHERE backend_type = 'idempotency reaper launcher'});
($per_db, $all) = most_reapers(12);
ok($per_db <= 1 && $all <= 1,
	"launcher terminated and restarted: still at most one reaper ($all)");

# SIGHUP changes of the list, with runs going on.
for my $list ("'db2'", "'postgres, db2'", "'postgres'", "'db2, postgres, db2'")
{
	backlog($_, 5000) for qw(postgres db2);
	$node->append_conf('postgresql.conf', "idempotency.reaper_databases = $list");
	$node->reload;
	my ($d, $a, $l) = most_reapers(2);
	ok($d <= 1 && $a <= 1 && $l == 1, "reaper_databases = $list: at most one reaper ($a)");
}

# A terminated reaper: the next run of its database waits out a back-off
# (two naptimes), rather than following at once.
$node->append_conf('postgresql.conf', "idempotency.reaper_databases = 'postgres'");
$node->reload;
backlog('postgres', 50000);
$node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'idempotency reaper' AND datname = 'postgres'});
my $pid = $node->safe_psql('postgres', q{
	SELECT pid FROM pg_stat_activity
	 WHERE backend_type = 'idempotency reaper' AND datname = 'postgres'});
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
my $t0 = time;
$node->poll_query_until('postgres', qq{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'idempotency reaper' AND datname = 'postgres' AND pid <> $pid});
my $gap = time - $t0;
cmp_ok($gap, '>=', 1.5, sprintf('the next run came after a back-off (%.1f s), not at once', $gap));

my $log = slurp_file($node->logfile);
unlike($log, qr/could not start the idempotency reaper/, 'never short of worker slots');
$node->stop;
done_testing();

# The Prometheus files in contrib/prometheus work: promtool accepts the rules
# and passes their unit tests, and prometheus-postgres-exporter, given
# queries.yaml and a monitoring role with the documented (column) grants, exports
# the idempotency counters, the claim-latency histogram, the reaper's
# backlog and the durable claims of a live cluster with the values that
# the claims made here imply.  Skipped when the exporter or promtool is
# not installed (scripts/setup-debian.sh installs both).
use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;
use HTTP::Tiny;
use IPC::Run;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

sub find_program
{
	my ($name) = @_;
	for my $dir (split /:/, ($ENV{PATH} // ''), -1)
	{
		my $path = ($dir eq '' ? '.' : $dir) . "/$name";
		return $path if -f $path && -x _;
	}
	return undef;
}

my $exporter = find_program('prometheus-postgres-exporter');
my $promtool = find_program('promtool');
plan skip_all => 'prometheus-postgres-exporter is not installed' unless $exporter;
plan skip_all => 'promtool (Debian package prometheus) is not installed' unless $promtool;

my $contrib = File::Spec->rel2abs(dirname(__FILE__) . '/../contrib/prometheus');
my $queries = "$contrib/queries.yaml";
my $wait = $PostgreSQL::Test::Utils::timeout_default;

# --- the rules --------------------------------------------------------------
# run_with_timeout(ARGV): (exit status, stdout + stderr), killed after $wait s
sub run_with_timeout
{
	my @cmd = @_;
	my $out = '';
	my $ok = eval {
		IPC::Run::run(\@cmd, '<', \undef, '>&', \$out, IPC::Run::timeout($wait));
	};
	return ($ok ? 0 : ($@ ? -1 : $? >> 8), $out . ($@ // ''));
}

my ($rc, $out) = run_with_timeout($promtool, 'check', 'rules', "$contrib/alerts.yml");
is($rc, 0, 'promtool check rules alerts.yml') or diag($out);
like($out, qr/SUCCESS: \d+ rules found/, 'promtool finds the rules');
($rc, $out) = run_with_timeout($promtool, 'test', 'rules', "$contrib/alerts_test.yml");
is($rc, 0, 'promtool test rules alerts_test.yml: every alert fires and stays quiet as tested')
  or diag($out);

# --- a cluster with claims of every kind -------------------------------------
my $node = PostgreSQL::Test::Cluster->new('prometheus');
$node->init;
# No background reaper ('' lists no database): reap() below is the only
# reap, so the backlog made after it stays put.
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'idempotency'
idempotency.reaper_databases = ''
});
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION idempotency CASCADE;
	CREATE ROLE monitor LOGIN;
	GRANT pg_monitor TO monitor;
	GRANT USAGE ON SCHEMA idempotency TO monitor;
	GRANT SELECT ON idempotency.stats TO monitor;
	GRANT SELECT (state, retain_until, lease_expires_at) ON idempotency.keys TO monitor;
	GRANT EXECUTE ON FUNCTION idempotency.read_stats() TO monitor;
	GRANT SELECT ON idempotency.scope_stats TO monitor;
	GRANT EXECUTE ON FUNCTION idempotency.read_scope_stats() TO monitor;
});

# The columns the queries need, not the stored responses.
my ($ret, $stdout, $stderr) = $node->psql('postgres',
	'SELECT response_body FROM idempotency.keys', extra_params => [ '-U', 'monitor' ]);
like($stderr, qr/permission denied/, 'the monitoring role cannot read stored responses');

# new, completed; then two replays
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT outcome FROM idempotency.claim('shop', 'k1', '\x01');
	SELECT idempotency.complete('shop', 'k1', 201, '{"id": "ch_1"}');
	COMMIT;
});
is($node->safe_psql('postgres', q{SELECT outcome FROM idempotency.claim('shop', 'k1', '\x01')}),
	'replay', 'a replay');
is($node->safe_psql('postgres', q{SELECT outcome FROM idempotency.claim('shop', 'k1', '\x01')}),
	'replay', 'a second replay');

# 422: the same key with another fingerprint
my @verbose = (extra_params => [ '-v', 'VERBOSITY=verbose' ]);
($ret, $stdout, $stderr) = $node->psql('postgres',
	q{SELECT outcome FROM idempotency.claim('shop', 'k1', '\x02')}, @verbose);
like($stderr, qr/ERROR:  IK422:/, 'IK422 for another fingerprint');

# 409: a durable claim committed by one session, claimed by another while
# its lease is live
$node->safe_psql('postgres', q{
	SELECT outcome FROM idempotency.claim('shop', 'd1', '\x01', lease => '1 hour')});
($ret, $stdout, $stderr) = $node->psql('postgres',
	q{SELECT outcome FROM idempotency.claim('shop', 'd1', '\x01')}, @verbose);
like($stderr, qr/ERROR:  IK409:/, 'IK409 from another session, for a durable claim in progress');
is($node->safe_psql('postgres', q{
	SELECT format('%s/%s/%s/%s', claims_new, claims_replay, errors_ik409, errors_ik422)
	  FROM idempotency.stats WHERE database = 'postgres'}),
	'2/2/1/1', 'the view counts 2 new, 2 replays, one 409 and one 422');

# One reap (nothing to delete), then a backlog of 3 rows overdue by a day
# and more, and a durable claim whose lease lapsed 2 hours ago.
$node->safe_psql('postgres', q{SELECT idempotency.reap()});
$node->safe_psql('postgres', q{
	INSERT INTO idempotency.keys (scope, key, fingerprint, state, response_status,
	                              created_at, expires_at, retain_until)
	SELECT 'old', 'expired-' || g, '\x01', 'completed', 200,
	       now() - interval '9 days', now() - interval '8 days', now() - interval '1 day'
	  FROM generate_series(1, 3) g;
	INSERT INTO idempotency.keys (scope, key, fingerprint, state, recovery_point,
	                              lease_token, lease_duration, lease_expires_at,
	                              created_at, expires_at, retain_until)
	VALUES ('shop', 'stuck', '\x01', 'in_progress', 'authorized',
	        gen_random_uuid(), interval '30 seconds', now() - interval '2 hours',
	        now() - interval '3 hours', now() + interval '21 hours', now() + interval '4 days');
});

# 30 more scopes, one completed claim each: more than the top 25 the
# exporter keeps per database.
$node->safe_psql('postgres', q{
	DO $$ BEGIN
		FOR i IN 1 .. 30 LOOP
			PERFORM idempotency.claim('tenant_' || i, 'k', '\x01');
			PERFORM idempotency.complete('tenant_' || i, 'k', 201);
			COMMIT;
		END LOOP;
	END $$;
});

my $expected_count = $node->safe_psql('postgres', q{
	SELECT claim_latency_seconds_count FROM idempotency.stats WHERE database = 'postgres'});
is($expected_count, 36, 'the 36 claims are timed, the refused ones included');

# --- the exporter -------------------------------------------------------------
my $exporter_pid;
my $exporter_log = "$PostgreSQL::Test::Utils::log_path/007_prometheus_exporter_exporter.log";

# TERM, then KILL after 10 s; always reaps the process.
sub stop_exporter
{
	return unless $exporter_pid;
	my $pid = $exporter_pid;
	$exporter_pid = undef;
	kill 'TERM', $pid;
	my $deadline = time + 10;
	while (time < $deadline)
	{
		my $r = waitpid($pid, WNOHANG);
		return if $r == $pid || $r == -1;
		sleep 0.1;
	}
	kill 'KILL', $pid;
	waitpid($pid, 0);
}

# The exporter goes away however the test ends: normally, by die, or by
# a signal (turned into die, so that END blocks run).
$SIG{$_} = sub { die "killed by SIG$_[0]\n" } for qw(INT TERM HUP);
END
{
	local $?;    # keep the test's exit status
	stop_exporter();
}

my $http_port = PostgreSQL::Test::Cluster::get_free_port();
my $dsn = sprintf('host=%s port=%d user=monitor dbname=postgres sslmode=disable',
	$node->host, $node->port);
# Debian 12's exporter (0.11) reads pg_stat_bgwriter's checkpoint columns,
# which PostgreSQL 17 moved to pg_stat_checkpointer: its bgwriter collector
# fails there, whatever the extension does.
my @exporter_opts = $node->pg_version >= 17 ? ('--no-collector.bgwriter') : ();
$exporter_pid = fork();
die "fork: $!" unless defined $exporter_pid;
if ($exporter_pid == 0)
{
	# the child: never return into the test (no END blocks), exec or _exit
	open(STDIN, '<', '/dev/null');
	open(STDOUT, '>', $exporter_log) or POSIX::_exit(126);
	open(STDERR, '>&', \*STDOUT) or POSIX::_exit(126);
	delete @ENV{qw(DATA_SOURCE_URI DATA_SOURCE_USER DATA_SOURCE_PASS
		DATA_SOURCE_URI_FILE DATA_SOURCE_USER_FILE DATA_SOURCE_PASS_FILE
		PG_EXPORTER_EXTEND_QUERY_PATH PG_EXPORTER_AUTO_DISCOVER_DATABASES)};
	$ENV{DATA_SOURCE_NAME} = $dsn;
	{
		no warnings 'exec';
		exec {$exporter} $exporter, "--web.listen-address=127.0.0.1:$http_port",
		  "--extend.query-path=$queries", @exporter_opts;
	}
	POSIX::_exit(127);
}
note "exporter pid $exporter_pid on 127.0.0.1:$http_port, log $exporter_log";

# Poll /metrics until the idempotency series are there, or the exporter
# exits, or the time is up.
my $http = HTTP::Tiny->new(timeout => 10, proxy => undef, http_proxy => undef,
	https_proxy => undef);
my $metrics = '';
my $deadline = time + $wait;
while (time < $deadline)
{
	if (waitpid($exporter_pid, WNOHANG) == $exporter_pid)
	{
		$exporter_pid = undef;
		last;
	}
	my $res = $http->get("http://127.0.0.1:$http_port/metrics");
	if ($res->{success} && $res->{content} =~ /^idempotency_claims_new_total\{/m
		&& $res->{content} =~ /^idempotency_durable_claims_in_progress\{/m)
	{
		$metrics = $res->{content};
		last;
	}
	sleep 0.25;
}
ok($exporter_pid, 'the exporter runs');
ok($metrics ne '', 'its /metrics has the idempotency series')
  or diag('exporter log: ' . (-e $exporter_log ? slurp_file($exporter_log) : '(none)'));

# value(NAME, LABEL => VALUE, ...): the value of the one sample of NAME whose
# labels include those given; undef if there is none
sub value
{
	my ($name, %want) = @_;
	my @found;
	for my $line (split /\n/, $metrics)
	{
		next unless $line =~ /^\Q$name\E\{(.*)\} (\S+)$/;
		my ($labels, $v) = ($1, $2);
		my %have = $labels =~ /(\w+)="((?:[^"\\]|\\.)*)"/g;
		next if grep { !defined $have{$_} || $have{$_} ne $want{$_} } keys %want;
		push @found, $v;
	}
	return @found == 1 ? $found[0] : undef;
}

my %db = (database => 'postgres');
is(value('idempotency_claims_new_total', %db), 32, 'idempotency_claims_new_total = 32');
is(value('idempotency_claims_replay_total', %db), 2, 'idempotency_claims_replay_total = 2');
is(value('idempotency_errors_ik409_total', %db), 1, 'idempotency_errors_ik409_total = 1');
is(value('idempotency_errors_ik422_total', %db), 1, 'idempotency_errors_ik422_total = 1');
is(value('idempotency_completions_total', %db), 31, 'idempotency_completions_total = 31');
is(value('idempotency_claims_resume_total', %db), 0, 'no resume');
is(value('idempotency_reaper_runs_total', %db), 1, 'one reap: reaper_runs_total = 1');
is(value('idempotency_reaper_skipped_rows_total', %db), 0, 'reaper_skipped_rows_total is exported');
cmp_ok(value('idempotency_last_reap_timestamp_seconds', %db) // 0, '>', 1e9,
	'last_reap_timestamp_seconds is a Unix time');
my $since = value('idempotency_seconds_since_last_reap', %db);
ok(defined $since && $since >= 0 && $since < $wait + 60,
	"seconds_since_last_reap is recent ($since)");
cmp_ok(value('idempotency_stats_reset_timestamp_seconds', %db) // 0, '>', 1e9,
	'stats_reset_timestamp_seconds');
like($metrics, qr/^# TYPE idempotency_claims_new_total counter$/m, 'the counters are counters');

# the histogram
like($metrics, qr/^# TYPE idempotency_claim_latency_seconds histogram$/m, 'the latency is a histogram');
is(value('idempotency_claim_latency_seconds_bucket', %db, le => '+Inf'), $expected_count,
	'its +Inf bucket counts every claim');
is(value('idempotency_claim_latency_seconds_count', %db), $expected_count, 'and so does _count');
cmp_ok(value('idempotency_claim_latency_seconds_sum', %db) // 0, '>', 0, '_sum is positive');
ok(defined value('idempotency_claim_latency_seconds_bucket', %db, le => '0.001'),
	'a finite bucket (le="0.001")');
my @les = $metrics =~ /^idempotency_claim_latency_seconds_bucket\{[^}]*database="postgres"[^}]*le="([^"]+)"/mg;
is(scalar(grep { $_ eq '+Inf' } @les), 1, 'one +Inf bucket (the view\'s Infinity bound is not doubled)');

# the reaper's backlog and the durable claims, from idempotency.keys
is(value('idempotency_reaper_backlog_rows', %db), 3, 'three rows past retention');
cmp_ok(value('idempotency_reaper_backlog_oldest_seconds', %db) // 0, '>=', 86400,
	'the oldest overdue by a day or more');
is(value('idempotency_durable_claims_in_progress', %db), 2, 'two durable claims in progress');
is(value('idempotency_durable_claims_abandoned', %db), 1,
	'one of them with a lease lapsed over an hour ago');
cmp_ok(value('idempotency_durable_claims_oldest_lapse_seconds', %db) // 0, '>=', 7200,
	'its lease lapsed two hours ago');

# the top scopes: bounded, the scope with errors first
my %shop = (database => 'postgres', scope => 'shop');
is(value('idempotency_scope_claims_new_total', %shop), 2, 'scope shop: 2 new claims');
is(value('idempotency_scope_claims_replay_total', %shop), 2, 'scope shop: 2 replays');
is(value('idempotency_scope_errors_ik422_total', %shop), 1, 'scope shop: one IK422');
is(value('idempotency_scope_errors_ik409_total', %shop), 1, 'scope shop: one IK409');
cmp_ok(value('idempotency_scope_tracked_since_timestamp_seconds', %shop) // 0, '>', 1e9,
	'scope shop: tracked since a Unix time');
like($metrics, qr/^# TYPE idempotency_scope_errors_ik422_total counter$/m, 'the scope counters are counters');
my @scopes;
for my $line (split /\n/, $metrics)
{
	next unless $line =~ /^idempotency_scope_claims_new_total\{(.*)\} /;
	my %have = $1 =~ /(\w+)="((?:[^"\\]|\\.)*)"/g;
	push @scopes, $have{scope} if ($have{database} // '') eq 'postgres';
}
is(scalar @scopes, 25, 'of 31 scopes, the exporter exports the top 25');
ok((grep { $_ eq 'shop' } @scopes), 'among them the one with errors');

# the "other databases" slot is labelled, and nothing failed
is(value('idempotency_claims_new_total', database => '(other)'), 0,
	'the shared slot of other databases is labelled "(other)"');
like($metrics, qr/^pg_exporter_last_scrape_error 0$/m,
	'no query failed: the monitoring role has every grant it needs');
like($metrics, qr/^pg_up 1$/m, 'pg_up 1');

stop_exporter();
ok(!defined $exporter_pid, 'the exporter is stopped');
my $log = -e $exporter_log ? slurp_file($exporter_log) : '';
unlike($log, qr/level=error/, 'no error in the exporter log') or diag($log);

$node->stop;
done_testing();

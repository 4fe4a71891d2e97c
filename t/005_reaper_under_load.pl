# Reaping 1,000,000 expired rows while clients keep claiming: every claim
# succeeds, including claims of keys the reaper is deleting, and none
# waits on the reaper for longer than one batch.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

# IDEMPOTENCY_TEST_LOAD_ROWS scales the load down for a slow server (valgrind).
my $rows = $ENV{IDEMPOTENCY_TEST_LOAD_ROWS} // 1_000_000;
my $batch = 10_000;

my $node = PostgreSQL::Test::Cluster->new('load');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'idempotency'
idempotency.reaper_naptime = 3600
idempotency.reaper_batch_size = $batch
idempotency.reaper_rows_per_second = 0
log_min_messages = warning
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION idempotency CASCADE');

# The reaper's first run found an empty table; the next is an hour away.
$node->poll_query_until('postgres', q{
	SELECT reaper_runs >= 1 FROM idempotency.stats WHERE database = 'postgres'});
$node->safe_psql('postgres', qq{
	INSERT INTO idempotency.keys (scope, key, fingerprint, state, response_status,
	                              created_at, expires_at, retain_until)
	SELECT 'load', 'k' || g, '\\x01', 'completed', 200,
	       now() - interval '9 days', now() - interval '8 days',
	       now() - interval '2 days' + g * interval '1 millisecond'
	  FROM generate_series(1, $rows) g;
	VACUUM ANALYZE idempotency.keys;
});

# How long one batch takes on this machine, measured in a transaction that
# is rolled back: the bound for any claim's wait.
$node->safe_psql('postgres', "SET idempotency.reaper_batch_size = $batch");
my $t0 = time;
$node->safe_psql('postgres', "BEGIN; SELECT idempotency.reap($batch); ROLLBACK;");
my $batch_seconds = time - $t0;
note sprintf('one batch of %d rows: %.3f s', $batch, $batch_seconds);

# Clients claim random keys, most of them expired rows the reaper is about
# to delete, and complete them.
my $script = $node->basedir . '/claim.sql';
PostgreSQL::Test::Utils::append_to_file($script, "\\set k random(1, @{[ 2 * $rows ]})\n" . q{
BEGIN;
SELECT (outcome = 'new')::int AS is_new FROM idempotency.claim('load', 'k' || :k, '\x02', wait => '60s') \gset
\if :is_new
SELECT idempotency.complete('load', 'k' || :k, 201);
\endif
COMMIT;
});

# Start the reaper (naptime 1 s, on reload, unthrottled: this is about the
# claims' waits, not the throttle) and the clients together.
$node->append_conf('postgresql.conf', 'idempotency.reaper_naptime = 1');
$node->reload;
my $logprefix = $node->basedir . '/claims';
my ($stdout, $stderr);
my $ok = IPC::Run::run(
	[ 'pgbench', '-n', '-c', '4', '-j', '2', '-T', '15', '-f', $script,
	  '-l', "--log-prefix=$logprefix", '-h', $node->host, '-p', $node->port,
	  'postgres' ],
	'>', \$stdout, '2>', \$stderr);
ok($ok, 'pgbench ran') or diag $stderr;
like($stdout, qr/number of failed transactions: 0 /, 'every claim succeeded')
  or diag $stdout;
my ($done) = $stdout =~ /number of transactions actually processed: (\d+)/;
ok($done > 100, "clients kept claiming ($done transactions)");

my $max_us = 0;
for my $f (glob "$logprefix.*")
{
	for my $line (split /\n/, slurp_file($f))
	{
		my @field = split / /, $line;
		$max_us = $field[2] if $field[2] > $max_us;
	}
}
note sprintf('slowest claim: %.3f s', $max_us / 1e6);
cmp_ok($max_us / 1e6, '<', 1 + 5 * $batch_seconds,
	'no claim waited on the reaper for longer than about one batch');

ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM idempotency.keys WHERE retain_until < now()}),
	'the reaper deleted every expired row');
cmp_ok($node->safe_psql('postgres',
		q{SELECT count(*) FROM idempotency.keys WHERE scope = 'load'}),
	'>=', $done / 2, 'and the keys completed meanwhile are there');

$node->stop;
done_testing();

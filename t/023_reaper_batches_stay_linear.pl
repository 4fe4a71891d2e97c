# With an old snapshot holding back the horizon, the rows the reaper has
# deleted stay in the retain_until index until the snapshot goes, and each
# batch that starts from the oldest entry walks them all again: 0.1.0's
# reaping was quadratic in the backlog.  The reaper's batches start where
# the last one stopped, within a run and from one run to the next, so
# reaping 100,000 rows under an open REPEATABLE READ transaction reads
# each index entry about once, not once per batch.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $rows = 100_000;
my $batch = 5_000;
my $node = PostgreSQL::Test::Cluster->new('linear');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'idempotency'
idempotency.reaper_naptime = 3600
idempotency.reaper_databases = 'postgres'
idempotency.reaper_batch_size = $batch
idempotency.reaper_rows_per_second = 0
autovacuum = off
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION idempotency CASCADE');
$node->poll_query_until('postgres', q{
	SELECT reaper_runs >= 1 FROM idempotency.stats WHERE database = 'postgres'});

$node->safe_psql('postgres', qq{
	INSERT INTO idempotency.keys (scope, key, fingerprint, state, response_status,
	                              created_at, expires_at, retain_until)
	SELECT 'bulk', 'k' || g, '\\x01', 'completed', 200, now() - interval '9 days',
	       now() - interval '8 days', now() - interval '1 day' + g * interval '1 microsecond'
	  FROM generate_series(1, $rows) g;
	SELECT pg_stat_force_next_flush()});

sub index_reads
{
	return $node->safe_psql('postgres', q{
		SELECT idx_tup_read FROM pg_stat_all_indexes
		 WHERE indexrelid = 'idempotency.keys_retain_until_idx'::regclass});
}

# the horizon, held from before the first delete to the end
my $holder = $node->background_psql('postgres');
$holder->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
$holder->query_safe('SELECT count(*) FROM idempotency.keys');

# Runs follow each other at once while a backlog is left; once it is
# drained the next run is a naptime away, and it would walk the dead
# entries once more: the reaper is taken off the database before that.
my $reads0 = index_reads();
$node->append_conf('postgresql.conf', 'idempotency.reaper_naptime = 10');
$node->reload;
# (polled through the counters: a query on the index would read it too)
ok($node->poll_query_until('postgres', qq{
	SELECT reaped_rows >= $rows FROM idempotency.stats WHERE database = 'postgres'}),
	"$rows rows reaped under an open REPEATABLE READ transaction");
$node->append_conf('postgresql.conf', "idempotency.reaper_databases = ''");
$node->reload;
sleep 2;	# the last run's statistics reach shared memory as it exits
my $reads = index_reads() - $reads0;
note "index entries read while reaping $rows rows in batches of $batch: $reads";
cmp_ok($reads, '<', 1.5 * $rows,
	'each index entry is read about once (quadratic would be about '
	  . ($rows / $batch / 2 * $rows) . ')');

$holder->query_safe('COMMIT');
$holder->quit;
$node->stop;
done_testing();

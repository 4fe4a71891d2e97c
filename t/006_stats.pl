# Statistics in shared memory: counted across backends and databases,
# including the reaper's work and abandoned durable claims, and zeroed by
# stats_reset(), which is for administrators only.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('stats');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'idempotency'
idempotency.reaper_naptime = 1
idempotency.reaper_databases = 'postgres'
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql($_, 'CREATE EXTENSION idempotency CASCADE') for qw(postgres other);

sub stat_of
{
	my ($db, $column) = @_;
	return $node->safe_psql('postgres',
		"SELECT $column FROM idempotency.stats WHERE database = '$db'");
}

# Each psql call is a backend of its own.
for my $i (1 .. 3)
{
	$node->safe_psql('postgres', qq{
		BEGIN;
		SELECT outcome FROM idempotency.claim('m', 'k$i', '\\x01');
		SELECT idempotency.complete('m', 'k$i', 201);
		COMMIT;});
	$node->safe_psql('postgres', qq{SELECT outcome FROM idempotency.claim('m', 'k$i', '\\x01')});
}
$node->psql('postgres', q{SELECT idempotency.claim('m', 'k1', '\x02')});
$node->psql('postgres', q{SELECT idempotency.claim('', 'k1', '\x02')});
$node->safe_psql('other', q{
	BEGIN;
	SELECT outcome FROM idempotency.claim('m', 'k1', '\x01');
	SELECT idempotency.complete('m', 'k1', 503);
	COMMIT;});

is(stat_of('postgres', 'claims_new'), '3', 'new claims from three backends add up');
is(stat_of('postgres', 'claims_replay'), '3', 'replays add up');
is(stat_of('postgres', 'completions'), '3', 'completions');
is(stat_of('postgres', 'errors_ik422'), '1', 'an IK422');
is(stat_of('postgres', 'errors_ik400'), '1', 'an IK400');
is(stat_of('other', 'claims_new') . ' ' . stat_of('other', 'releases_5xx'),
	'1 1', 'another database has its own row');
is(stat_of('postgres', 'claim_latency_seconds_count'), '8',
	'every claim is in the latency histogram, failed ones included');
is($node->safe_psql('postgres', q{
	SELECT claim_latency_seconds_bucket[array_length(claim_latency_seconds_bucket, 1)]
	       = claim_latency_seconds_count
	   AND claim_latency_seconds[array_length(claim_latency_seconds, 1)] = 'Infinity'
	  FROM idempotency.stats WHERE database = 'postgres'}),
	't', 'the histogram is cumulative and ends with +Inf');

# The reaper's work, and an abandoned durable claim.
$node->safe_psql('postgres', q{
	SELECT outcome FROM idempotency.claim('m', 'durable', '\x01', lease => '1 minute');
	INSERT INTO idempotency.keys (scope, key, fingerprint, state, response_status,
	                              created_at, expires_at, retain_until)
	SELECT 'old', 'k' || g, '\x01', 'completed', 200,
	       now() - interval '9 days', now() - interval '8 days', now() - interval '1 day'
	  FROM generate_series(1, 40) g;
	UPDATE idempotency.keys SET retain_until = now() - interval '1 day',
	       expires_at = now() - interval '2 days', created_at = now() - interval '3 days',
	       lease_expires_at = now() - interval '2 days'
	 WHERE key = 'durable';});
ok($node->poll_query_until('postgres', q{
	SELECT reaped_rows = 41 AND abandoned_claims = 1 AND reaper_runs > 0
	       AND last_reap > now() - interval '1 minute'
	  FROM idempotency.stats WHERE database = 'postgres'}),
	'reaped rows, the abandoned claim, reaper runs and the last reap are counted');
ok($node->wait_for_log(qr/abandoned durable claim of key "durable" in scope "m"/),
	'and the abandoned claim is logged');

# stats_reset() is for administrators.
$node->safe_psql('postgres', q{
	CREATE ROLE monitor LOGIN;
	GRANT USAGE ON SCHEMA idempotency TO monitor;
	GRANT SELECT ON idempotency.stats TO monitor;
	GRANT EXECUTE ON FUNCTION idempotency.read_stats() TO monitor;});
is($node->safe_psql('postgres',
		q{SELECT claims_new FROM idempotency.stats WHERE database = 'postgres'},
		extra_params => [ '-U', 'monitor' ]),
	'4', 'a monitoring role with the documented grants reads the view');
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT idempotency.stats_reset()',
	extra_params => [ '-U', 'monitor' ]);
like($err, qr/permission denied for function stats_reset/, 'but cannot reset it');

my $before_reset = $node->safe_psql('postgres',
	q{SELECT stats_reset FROM idempotency.stats WHERE database = 'postgres'});
$node->safe_psql('postgres', 'SELECT idempotency.stats_reset()');
is($node->safe_psql('postgres', qq{
	SELECT sum(claims_new + claims_replay + completions + errors_ik422 + errors_ik400
	           + releases_5xx + reaped_rows + claim_latency_seconds_count)
	       || ' ' || bool_and(stats_reset > '$before_reset')
	  FROM idempotency.stats WHERE database IN ('postgres', 'other')}),
	'0 true', 'stats_reset() zeroes every database and moves stats_reset');
$node->safe_psql('postgres', q{SELECT outcome FROM idempotency.claim('m', 'k1', '\x01')});
is(stat_of('postgres', 'claims_replay'), '1', 'counting goes on after a reset');

$node->stop;
done_testing();

# Replication and failover keep every key: keys and responses reach the
# standby; a claim there fails with a clear read-only error, never a silent
# 'new'; after promotion a retry of a completed key replays, an in-flight
# durable claim resumes after its lease, and the reaper runs on the new
# primary only.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'idempotency'
idempotency.reaper_naptime = 1
});
$primary->start;
$primary->safe_psql('postgres', q{
	CREATE EXTENSION idempotency CASCADE;
	CREATE TABLE charges (id text PRIMARY KEY, amount int);});
$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;

# A completed request, and a durable one left in flight by a worker that
# will never come back (its lease is short).
$primary->safe_psql('postgres', q{
	BEGIN;
	SELECT outcome FROM idempotency.claim('m', 'done', '\x01');
	INSERT INTO charges VALUES ('ch_done', 100);
	SELECT idempotency.complete('m', 'done', 201, '{"id": "ch_done"}', '{"X-Req": "1"}');
	COMMIT;});
my $token = $primary->safe_psql('postgres', q{
	SELECT lease_token FROM idempotency.claim('m', 'inflight', '\x01', lease => '3 seconds')});
$primary->safe_psql('postgres',
	"SELECT idempotency.checkpoint('m', 'inflight', 'authorized', '$token')");
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', q{
	SELECT string_agg(key || ':' || state || ':' || coalesce(response_body->>'id', recovery_point), ',' ORDER BY key)
	  FROM idempotency.keys}),
	'done:completed:ch_done,inflight:in_progress:authorized',
	'keys, responses and recovery points reach the standby');

for my $call (
	q{SELECT outcome FROM idempotency.claim('m', 'done', '\x01')},
	q{SELECT outcome FROM idempotency.claim('m', 'new-on-standby', '\x01')},
	q{SELECT idempotency.complete('m', 'done', 200)},
	q{SELECT idempotency.release('m', 'done')},
	qq{SELECT idempotency.checkpoint('m', 'inflight', 'x', '$token')},
	q{SELECT idempotency.reap()})
{
	my ($ret, $out, $err) = $standby->psql('postgres', $call,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/ERROR:  25006: cannot run idempotency\.\w+\(\) on a standby/,
		"on the standby: $call");
	is($out, '', '... and no outcome at all');
}
is($standby->safe_psql('postgres', q{
	SELECT idempotency.fingerprint('POST', '/p', '{"a": 1}'::jsonb)
	     = idempotency.fingerprint('POST', '/p', '{"a": 1.0}'::jsonb)}),
	't', 'fingerprints work on the standby');
is($standby->safe_psql('postgres', q{
	SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'idempotency reaper%'}),
	'0', 'no reaper on the standby');

# A read-only transaction on the primary is refused the same way.
my ($ret, $out, $err) = $primary->psql('postgres', q{
	BEGIN READ ONLY;
	SELECT outcome FROM idempotency.claim('m', 'ro', '\x01');},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  25006: cannot execute idempotency\.claim\(\) in a read-only transaction/,
	'a read-only transaction cannot claim');

# Failover: the primary dies, the standby is promoted.
$primary->stop('immediate');
$standby->promote;

is($standby->safe_psql('postgres', q{
	SELECT outcome || ' ' || response_status || ' ' || (response_body->>'id') || ' ' || (response_headers->>'X-Req')
	  FROM idempotency.claim('m', 'done', '\x01')}),
	'replay 201 ch_done 1', 'after promotion a retry of a completed key replays');
($ret, $out, $err) = $standby->psql('postgres', q{
	SELECT idempotency.claim('m', 'done', '\x02')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/IK422/, 'and another body is still IK422');
is($standby->safe_psql('postgres', q{SELECT count(*) FROM charges}), '1',
	'the charge is there once');

$standby->poll_query_until('postgres', q{
	SELECT lease_expires_at < clock_timestamp() FROM idempotency.keys WHERE key = 'inflight'})
  or die 'the lease never lapsed';
is($standby->safe_psql('postgres', q{
	SELECT outcome || ' ' || recovery_point
	  FROM idempotency.claim('m', 'inflight', '\x01', lease => '1 minute')}),
	'resume authorized', 'the in-flight durable claim resumes after its lease');
($ret, $out, $err) = $standby->psql('postgres',
	"SELECT idempotency.checkpoint('m', 'inflight', 'late', '$token')",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/IK409/, 'the old primary\'s worker token is fenced off');

ok($standby->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'idempotency reaper launcher'}),
	'the reaper runs on the new primary');
$standby->safe_psql('postgres', q{
	INSERT INTO idempotency.keys (scope, key, fingerprint, state, response_status,
	                              created_at, expires_at, retain_until)
	VALUES ('m', 'old', '\x01', 'completed', 200,
	        now() - interval '9 days', now() - interval '8 days', now() - interval '1 day')});
ok($standby->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM idempotency.keys WHERE key = 'old'}),
	'and reaps there');

$standby->stop;
done_testing();

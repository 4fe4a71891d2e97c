# A new library keeps serving the 0.1.0 catalog until ALTER EXTENSION ...
# UPDATE runs: a package upgrade or pg_upgrade replaces the library in
# every database at once, and an error there would stop every payment.
# With CREATE EXTENSION idempotency VERSION '0.1.0' and the current library
# preloaded, the core contract holds: a claim is 'new', completes and
# replays; another fingerprint is IK422; a concurrent duplicate is IK409;
# a 5xx is not stored; a durable claim checkpoints and completes with its
# token, and resumes under a new token once its lease lapses, the old one
# fenced off; a tombstone is IK410; reap() deletes rows past retention;
# idempotency.stats (the 0.1.0 view) counts; modes and policy rows apply,
# a policy change reaching a session that already claimed.  A 0.1.0 row in
# progress whose lease outlives its retention (0.1.0 allowed that) is
# never answered 'new' nor reaped while its lease is live.  And a session
# that served the 0.1.0 catalog keeps serving once the update has run.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('catalog_0_1_0');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'idempotency'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE payments');
$node->safe_psql('payments', q{
	CREATE EXTENSION idempotency VERSION '0.1.0' CASCADE;
	CREATE TABLE charges (id text PRIMARY KEY, amount integer);
	SELECT idempotency.stats_reset();
});
is($node->safe_psql('payments', q{SELECT extversion FROM pg_extension WHERE extname = 'idempotency'}),
	'0.1.0', 'the catalog is 0.1.0');
isnt($node->safe_psql('payments',
		q{SELECT default_version FROM pg_available_extensions WHERE name = 'idempotency'}),
	'0.1.0', 'the library installed is a newer version');

my $fp = q{idempotency.fingerprint('POST', '/v1/charges', '{"amount": 1000}'::jsonb)};

sub sqlstate_of
{
	my ($sql) = @_;
	my ($ret, $out, $err) = $node->psql('payments', $sql,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return $err =~ /ERROR:  (\w{5}):/ ? $1 : "no error, output '$out'";
}

sub stat_of
{
	my ($column) = @_;
	return $node->safe_psql('payments',
		"SELECT $column FROM idempotency.stats WHERE database = 'payments'");
}

# A session that lives through the whole test, and claims first.
my $session = $node->background_psql('payments', on_error_stop => 0);
is($session->query_safe(q{
	BEGIN;
	SELECT outcome FROM idempotency.claim('merchant_shadow', 'early', '\x01');
	SELECT idempotency.complete('merchant_shadow', 'early', 201);
	COMMIT;}),
	"new\nstored", 'a long-lived session claims and completes');

# --- claim, complete, replay; IK422 -------------------------------------------
is($node->safe_psql('payments', qq{
	BEGIN;
	SELECT outcome FROM idempotency.claim('merchant_1', 'k1', $fp);
	INSERT INTO charges VALUES ('ch_1', 1000);
	SELECT idempotency.complete('merchant_1', 'k1', 201, '{"id": "ch_1"}', '{"Request-Id": "r1"}');
	COMMIT;}),
	"new\nstored", "a claim is 'new' and completes");
is($node->safe_psql('payments', qq{
	SELECT outcome || ' ' || response_status || ' ' || (response_body->>'id') || ' ' ||
	       (response_headers->>'Request-Id')
	  FROM idempotency.claim('merchant_1', 'k1', $fp)}),
	'replay 201 ch_1 r1', 'its retry replays the stored status, body and headers');
is(sqlstate_of(q{SELECT outcome FROM idempotency.claim('merchant_1', 'k1', '\x02')}),
	'IK422', 'another fingerprint under the key is IK422');

# --- a concurrent duplicate is IK409 --------------------------------------------
my $holder = $node->background_psql('payments');
is($holder->query_safe(q{
	BEGIN;
	SELECT outcome FROM idempotency.claim('merchant_1', 'busy', '\x01');}),
	'new', 'a request holds a key in an open transaction');
is(sqlstate_of(q{SELECT outcome FROM idempotency.claim('merchant_1', 'busy', '\x01')}),
	'IK409', 'a concurrent duplicate is IK409');
$holder->query_safe(q{SELECT idempotency.complete('merchant_1', 'busy', 201); COMMIT;});
$holder->quit;
is($node->safe_psql('payments', q{SELECT outcome FROM idempotency.claim('merchant_1', 'busy', '\x01')}),
	'replay', 'once the first commits, the duplicate replays');

# --- a 5xx is not stored --------------------------------------------------------
is($node->safe_psql('payments', q{
	BEGIN;
	SELECT outcome FROM idempotency.claim('merchant_1', 'flaky', '\x01');
	SELECT idempotency.complete('merchant_1', 'flaky', 503);
	COMMIT;
	SELECT count(*) FROM idempotency.keys WHERE key = 'flaky';
	BEGIN;
	SELECT outcome FROM idempotency.claim('merchant_1', 'flaky', '\x01');
	SELECT idempotency.release('merchant_1', 'flaky');
	COMMIT;}),
	"new\nreleased\n0\nnew\n", 'a 5xx is not stored: the retry is new');

# --- durable claims ---------------------------------------------------------------
my $t1 = $node->safe_psql('payments', q{
	SELECT lease_token FROM idempotency.claim('psp', 'order-1', '\x01', lease => '1 hour')});
like($t1, qr/^[0-9a-f-]{36}$/, 'a durable claim returns a lease token');
is($node->safe_psql('payments', qq{
	SELECT idempotency.checkpoint('psp', 'order-1', 'authorized', '$t1');
	SELECT idempotency.complete('psp', 'order-1', 201, '{"id": "pay_1"}', lease_token => '$t1');
	SELECT outcome || ' ' || recovery_point || ' ' || (response_body->>'id')
	  FROM idempotency.claim('psp', 'order-1', '\\x01')}),
	"\nstored\nreplay authorized pay_1", 'it checkpoints, completes with its token and replays');

my $t2 = $node->safe_psql('payments', q{
	SELECT lease_token FROM idempotency.claim('psp', 'order-2', '\x01', lease => '1 second')});
$node->safe_psql('payments',
	"SELECT idempotency.checkpoint('psp', 'order-2', 'authorized', '$t2')");
$node->poll_query_until('payments', q{
	SELECT lease_expires_at < clock_timestamp() FROM idempotency.keys WHERE key = 'order-2'})
  or die 'the lease never lapsed';
my ($outcome, $point, $t2b) = split /\|/, $node->safe_psql('payments', q{
	SELECT outcome, recovery_point, lease_token
	  FROM idempotency.claim('psp', 'order-2', '\x01', lease => '1 hour')});
is("$outcome $point", 'resume authorized',
	'after its lease lapses, the next claim resumes from the recovery point');
isnt($t2b, $t2, '... under a new token');
is(sqlstate_of("SELECT idempotency.checkpoint('psp', 'order-2', 'late', '$t2')"),
	'IK409', '... and the old token is fenced off');
is($node->safe_psql('payments',
		"SELECT idempotency.complete('psp', 'order-2', 201, lease_token => '$t2b')"),
	'stored', 'the new holder completes');

# --- a 0.1.0 row whose lease outlives its retention --------------------------------
$node->safe_psql('payments', q{
	SELECT lease_token FROM idempotency.claim('psp', 'order-long', '\x01', lease => '1 hour');
	UPDATE idempotency.keys
	   SET created_at = now() - interval '8 days', expires_at = now() - interval '7 days',
	       retain_until = now() - interval '1 minute'
	 WHERE key = 'order-long'});
my $long_row = q{SELECT k::text FROM idempotency.keys k WHERE key = 'order-long'};
my $long_before = $node->safe_psql('payments', $long_row);
is($node->safe_psql('payments', q{
	SELECT lease_expires_at > now() AND retain_until < now()
	  FROM idempotency.keys WHERE key = 'order-long'}),
	't', 'a durable claim past its retention with its lease live, as 0.1.0 allowed');
is(sqlstate_of(q{
	BEGIN;
	SELECT outcome FROM idempotency.claim('psp', 'order-long', '\x01');
	ROLLBACK;}),
	'IK409', "a duplicate claim while its lease is live is IK409, never 'new'");

# --- tombstones and reaping -----------------------------------------------------
$node->safe_psql('payments', q{
	DO $$
	BEGIN
		FOR n IN 1 .. 3 LOOP
			PERFORM idempotency.claim('merchant_1', 'old-' || n, '\x01');
			PERFORM idempotency.complete('merchant_1', 'old-' || n, 201);
			COMMIT;
		END LOOP;
	END $$;
	-- old-1 a tombstone, old-2 and old-3 past retention
	UPDATE idempotency.keys
	   SET created_at = now() - interval '2 days', expires_at = now() - interval '1 day',
	       retain_until = now() + interval '5 days'
	 WHERE key = 'old-1';
	UPDATE idempotency.keys
	   SET created_at = now() - interval '9 days', expires_at = now() - interval '8 days',
	       retain_until = now() - interval '2 days'
	 WHERE key IN ('old-2', 'old-3');
});
is(sqlstate_of(q{SELECT outcome FROM idempotency.claim('merchant_1', 'old-1', '\x01')}),
	'IK410', 'a tombstone is IK410');
my $kept = q{SELECT string_agg(key, ',' ORDER BY key) FROM idempotency.keys};
my $all_before = $node->safe_psql('payments', $kept);
is($node->safe_psql('payments', 'SELECT idempotency.reap()'), '2',
	'reap() deletes the two rows past retention');
(my $expected = $all_before) =~ s/,old-2,old-3//;
is($node->safe_psql('payments', $kept), $expected,
	'... and nothing else: the live lease past its retention stays');
is($node->safe_psql('payments', $long_row), $long_before,
	'... unchanged, as the duplicate claim left it');

# --- modes and policies ---------------------------------------------------------
is($node->safe_psql('payments', q{
	SET idempotency.mode = 'off';
	BEGIN;
	SELECT outcome FROM idempotency.claim('merchant_2', 'm1', '\x01');
	SELECT idempotency.complete('merchant_2', 'm1', 201);
	COMMIT;
	SELECT count(*) FROM idempotency.keys WHERE scope = 'merchant_2';}),
	"new\nskipped\n0", 'idempotency.mode = off records nothing');

# The long-lived session has looked at the (empty) policies: a committed
# policy row reaches it at its next claim.
my $would_replay = stat_of('shadow_would_replay');
$node->safe_psql('payments', q{
	INSERT INTO idempotency.policies (scope, mode) VALUES ('merchant_shadow', 'shadow')});
is($session->query_safe(q{
	BEGIN;
	SELECT outcome FROM idempotency.claim('merchant_shadow', 'early', '\x01');
	ROLLBACK;}),
	'new', "a policy row makes a scope shadow, in a session that already claimed: 'new'");
is(stat_of('shadow_would_replay'), $would_replay + 1, '... counted as shadow_would_replay');
$node->safe_psql('payments', q{
	INSERT INTO idempotency.policies (scope, ttl, retain) VALUES ('merchant_short', '2 hours', '3 hours')});
is($node->safe_psql('payments', q{
	BEGIN;
	SELECT outcome FROM idempotency.claim('merchant_short', 's1', '\x01');
	SELECT idempotency.complete('merchant_short', 's1', 201);
	COMMIT;
	SELECT (expires_at - created_at) || ' ' || (retain_until - created_at)
	  FROM idempotency.keys WHERE key = 's1'}),
	"new\nstored\n02:00:00 03:00:00", 'a policy row sets the windows of a new key');

# --- the 0.1.0 statistics view --------------------------------------------------
is($node->safe_psql('payments', q{
	SELECT format('new=%s replay=%s resume=%s ik409=%s ik410=%s ik422=%s 5xx=%s reaped=%s',
	              claims_new, claims_replay, claims_resume, errors_ik409, errors_ik410,
	              errors_ik422, releases_5xx, reaped_rows)
	  FROM idempotency.stats WHERE database = 'payments'}),
	'new=13 replay=3 resume=1 ik409=3 ik410=1 ik422=1 5xx=1 reaped=2',
	'idempotency.stats, the 0.1.0 view, counts every outcome and error');

# --- ALTER EXTENSION UPDATE, under a session that served 0.1.0 -----------------
$node->safe_psql('payments', 'ALTER EXTENSION idempotency UPDATE');
is($session->query_safe(q{
	SELECT outcome FROM idempotency.claim('merchant_1', 'k1',
		idempotency.fingerprint('POST', '/v1/charges', '{"amount": 1000}'::jsonb));
	BEGIN;
	SELECT outcome FROM idempotency.claim('merchant_1', 'after-update', '\x01');
	SELECT idempotency.complete('merchant_1', 'after-update', 201);
	COMMIT;}),
	"replay\nnew\nstored", 'after the update the same session replays, claims and completes');
$session->quit;

$node->stop;
done_testing();

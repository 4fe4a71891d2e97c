# pg_upgrade from an older PostgreSQL major keeps every key: 15 to 18 (make
# test-pg18), 15 to 17 (make test-pg17) and 18 to 19 (make test-pg19).  An
# old cluster with the library preloaded and the reaper on is filled with
# completed keys, durable claims in progress, tombstones, rows past
# retention and policies; it is upgraded by the new major's pg_upgrade, once
# with --copy and once with --link, each from a copy of the same stopped
# cluster.  On the new major every completed request replays its stored
# response, the durable claim whose lease is live is still held and the one
# whose lease lapsed resumes from its recovery point, the policies apply,
# the reaper runs and the statistics view works (its counters, in shared
# memory, start from zero).
#
# Run with PATH leading to the new major and IDEMPOTENCY_UPGRADE_FROM naming
# the old installation, both with the extension installed;
# IDEMPOTENCY_UPGRADE_MAJORS is "OLD NEW" (default "15 18"), checked against
# both installations.  By `make test-upgrade` and `make test-pg18`
# (scripts/test-cassert.sh --pg 18), the 15 is the upstream build the
# assert-enabled suite makes, not the system's 15.20 package: the package
# stamps a pg_attver option on every column, which PostgreSQL 18 rejects on
# any table (../shared/toolchain/README.md).  By scripts/test-major.sh, 15
# is built from Debian's source package and 18 is Debian's (sid).
use strict;
use warnings;

use Cwd ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::RecursiveCopy;
use PostgreSQL::Test::Utils;
use Test::More;

my $old_install = $ENV{IDEMPOTENCY_UPGRADE_FROM}
  or plan skip_all => 'IDEMPOTENCY_UPGRADE_FROM (the PostgreSQL to upgrade from) is not set';
my ($old_major, $new_major) = split ' ', ($ENV{IDEMPOTENCY_UPGRADE_MAJORS} // '15 18');

my $old = PostgreSQL::Test::Cluster->new('old', install_path => $old_install);
is($old->pg_version->major, $old_major, "the old cluster is PostgreSQL $old_major");
$old->init;
# The reaper works on this database every hour: once at start, and not
# again before the upgrade, so that the rows past retention made below are
# still there for the new major's reaper.
$old->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'idempotency'
idempotency.reaper_databases = 'shop'
idempotency.reaper_naptime = 3600
});
$old->start;
$old->safe_psql('postgres', 'CREATE DATABASE shop');

my $n_completed = 300;
my $old_version;

# What the application does, in both clusters: a claim's outcome, or the
# SQLSTATE it raised.  Defined in the old cluster, so it is upgraded too.
my $setup = q{
CREATE EXTENSION idempotency CASCADE;
CREATE FUNCTION public.body(i integer) RETURNS jsonb LANGUAGE sql IMMUTABLE
	RETURN jsonb_build_object('amount', i, 'currency', 'eur');
CREATE FUNCTION public.try_claim(s text, k text, b jsonb, lease interval DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	r idempotency.claim_result;
BEGIN
	SELECT * INTO r FROM idempotency.claim(s, k,
		idempotency.fingerprint('POST', '/v1/charges', b), lease);
	RETURN r.outcome;
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END $$;
CREATE FUNCTION public.sqlstate_of(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END $$;
};
$old->safe_psql('shop', $setup);
$old_version = $old->safe_psql('shop',
	q{SELECT extversion FROM pg_extension WHERE extname = 'idempotency'});

# The reaper has made its first run: the next is an hour away.
ok($old->poll_query_until('shop', q{
	SELECT reaper_runs >= 1 FROM idempotency.stats WHERE database = 'shop'}),
	"PostgreSQL $old_major: the reaper runs");

# Completed keys in three scopes, one transaction each, as requests make them.
my $fill = '';
for my $i (1 .. $n_completed)
{
	my $scope = 'm' . ($i % 3 + 1);
	my $status = $i % 10 == 0 ? 200 : 201;
	$fill .= qq{
BEGIN;
SELECT outcome FROM idempotency.claim('$scope', 'k$i',
	idempotency.fingerprint('POST', '/v1/charges', body($i)));
SELECT idempotency.complete('$scope', 'k$i', $status,
	jsonb_build_object('id', 'ch_$i', 'amount', $i, 'note', repeat('x', $i)),
	'{"Content-Type": "application/json"}');
COMMIT;};
}
$old->safe_psql('shop', $fill);

# Tombstones: a scope whose replay window is a second and retention 30 days;
# a scope completed under enforce whose policy then turns to shadow; a
# scope switched off.
$old->safe_psql('shop', q{
INSERT INTO idempotency.policies (scope, ttl, retain) VALUES ('tomb', '1 second', '30 days');
BEGIN;
SELECT outcome FROM idempotency.claim('tomb', 't1',
	idempotency.fingerprint('POST', '/v1/charges', body(1)));
SELECT idempotency.complete('tomb', 't1', 201);
COMMIT;
BEGIN;
SELECT outcome FROM idempotency.claim('sh', 's1',
	idempotency.fingerprint('POST', '/v1/charges', body(1)));
SELECT idempotency.complete('sh', 's1', 201);
COMMIT;
INSERT INTO idempotency.policies (scope, mode) VALUES ('sh', 'shadow'), ('off', 'off');
});

# Durable claims in progress: one with a lease of an hour, one whose two
# seconds lapse before the upgrade ends; both checkpointed.
my %token;
for my $d (['d-live', '1 hour'], ['d-lapsed', '2 seconds'])
{
	my ($key, $lease) = @$d;
	$token{$key} = $old->safe_psql('shop', qq{
		SELECT lease_token FROM idempotency.claim('d', '$key',
			idempotency.fingerprint('POST', '/v1/charges', body(7)),
			lease => '$lease')});
	like($token{$key}, qr/^[0-9a-f-]{36}$/, "PostgreSQL $old_major: durable claim $key");
	$old->safe_psql('shop', qq{
		SELECT idempotency.checkpoint('d', '$key', 'authorized', '$token{$key}')});
}

# Rows past retention, for the reaper on the other side.
$old->safe_psql('shop', q{
INSERT INTO idempotency.keys (scope, key, fingerprint, state, response_status,
                              created_at, expires_at, retain_until)
SELECT 'expired', 'e' || g, '\x01', 'completed', 200,
       now() - interval '9 days', now() - interval '8 days', now() - interval '1 day'
  FROM generate_series(1, 500) g;
});

# Every completed request, claimed again: what it must still replay after the upgrade.
my $replays = qq{
SELECT r.s, r.k, c.outcome, c.response_status, c.response_headers::text,
       c.response_body::text, c.first_seen
  FROM (SELECT 'm' || (g % 3 + 1) AS s, 'k' || g AS k, g
          FROM generate_series(1, $n_completed) g) r,
       LATERAL idempotency.claim(r.s, r.k,
                 idempotency.fingerprint('POST', '/v1/charges', body(r.g))) c
 ORDER BY r.g};
my $old_replays = $old->safe_psql('shop', $replays);
is(scalar(grep { /\|replay\|/ } split /\n/, $old_replays), $n_completed,
	"PostgreSQL $old_major: $n_completed completed keys replay");

# The rows themselves, to compare byte for byte after the upgrade.
my $rows = q{
SELECT scope, key, fingerprint, state, response_status, response_headers::text,
       response_body::text, recovery_point, lease_token, lease_duration,
       lease_expires_at, created_at, expires_at, retain_until
  FROM idempotency.keys WHERE scope <> 'expired' ORDER BY scope, key};
my $old_rows = $old->safe_psql('shop', $rows);
my $old_policies = $old->safe_psql('shop',
	'SELECT * FROM idempotency.policies ORDER BY scope');
my $old_checksums = $old->safe_psql('postgres', 'SHOW data_checksums');
$old->stop;

my $copies = Cwd::abs_path(PostgreSQL::Test::Utils::tempdir);
my $old_data = "$copies/old_data";
PostgreSQL::Test::RecursiveCopy::copypath($old->data_dir, $old_data);

# pg_upgrade writes its scripts and logs into the working directory.
chdir $copies;

for my $mode ('--copy', '--link')
{
	(my $name = $mode) =~ s/^--//;
	my $from = "$copies/old_$name";
	PostgreSQL::Test::RecursiveCopy::copypath($old_data, $from);
	chmod 0700, $from;

	my $new = PostgreSQL::Test::Cluster->new("new_$name");
	is($new->pg_version->major, $new_major,
		"$name: the new cluster is PostgreSQL $new_major");
	# pg_upgrade needs data checksums on in both clusters or in neither: 18
	# and later enable them by default, 15 and 17 do not.
	$new->init($old_checksums eq 'on' ? () : (no_data_checksums => 1));

	command_ok(
		[
			'pg_upgrade', '--no-sync',
			'--old-datadir' => $from,
			'--new-datadir' => $new->data_dir,
			'--old-bindir' => "$old_install/bin",
			'--new-bindir' => $new->config_data('--bindir'),
			'--socketdir' => $new->host,
			'--old-port' => $old->port,
			'--new-port' => $new->port,
			$mode,
		],
		"$name: pg_upgrade $mode from $old_major to $new_major");

	$new->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'idempotency'
idempotency.reaper_databases = 'shop'
idempotency.reaper_naptime = 1
});
	$new->start;

	my $relfile = $new->data_dir . '/'
	  . $new->safe_psql('shop', q{SELECT pg_relation_filepath('idempotency.keys')});
	is((stat $relfile)[3], $mode eq '--link' ? 2 : 1,
		"$name: the keys' heap file is " . ($mode eq '--link' ? 'linked to' : 'a copy of')
		  . ' the old one');

	is($new->safe_psql('shop',
		q{SELECT extversion FROM pg_extension WHERE extname = 'idempotency'}),
		$old_version, "$name: the extension's version is kept");
	is($new->safe_psql('shop', $rows), $old_rows,
		"$name: every key's row is unchanged");
	is($new->safe_psql('shop', 'SELECT * FROM idempotency.policies ORDER BY scope'),
		$old_policies, "$name: the policies are unchanged");

	is($new->safe_psql('shop', $replays), $old_replays,
		"$name: every completed request replays its stored response");
	# Shared memory is not carried over: the counters start again from zero.
	is($new->safe_psql('shop', q{
		SELECT claims_replay || ' ' || claims_new FROM idempotency.stats
		 WHERE database = 'shop'}),
		"$n_completed 0", "$name: the statistics view counts from the upgrade on");

	is($new->safe_psql('shop', q{SELECT try_claim('m2', 'k1', body(2))}),
		'IK422', "$name: a key reused for another body is refused");
	is($new->safe_psql('shop', q{SELECT try_claim('tomb', 't1', body(1))}),
		'IK410', "$name: a tombstone stays a tombstone (the policy's windows apply)");
	is($new->safe_psql('shop', q{
		BEGIN;
		SELECT try_claim('sh', 's1', body(2));
		ROLLBACK}),
		'new', "$name: the shadow policy applies");
	is($new->safe_psql('shop', q{
		SELECT shadow_would_ik422 FROM idempotency.stats WHERE database = 'shop'}),
		'1', "$name: what enforce would have done is counted");
	$new->safe_psql('shop', q{UPDATE idempotency.policies SET mode = 'enforce' WHERE scope = 'sh'});
	is($new->safe_psql('shop', q{SELECT try_claim('sh', 's1', body(2))}),
		'IK422', "$name: a policy changed after the upgrade applies");
	is($new->safe_psql('shop', q{
		BEGIN;
		SELECT try_claim('off', 'o1', body(1)) || ' ' || try_claim('off', 'o1', body(2));
		ROLLBACK}),
		'new new', "$name: the off policy applies");

	# The durable claims.
	is($new->safe_psql('shop', q{SELECT try_claim('d', 'd-live', body(7))}),
		'IK409', "$name: a durable claim whose lease is live is still held");
	is($new->safe_psql('shop', q{
		SELECT outcome || ' ' || recovery_point FROM idempotency.claim('d', 'd-lapsed',
			idempotency.fingerprint('POST', '/v1/charges', body(7)))}),
		'resume authorized', "$name: a lapsed durable claim resumes from its recovery point");
	is($new->safe_psql('shop', qq{
		SELECT sqlstate_of(\$\$SELECT idempotency.checkpoint('d', 'd-lapsed', 'captured',
			'$token{'d-lapsed'}')\$\$)}),
		'IK409', "$name: the resumed claim's old lease token is fenced off");
	$new->safe_psql('shop', qq{
		SELECT idempotency.checkpoint('d', 'd-live', 'captured', '$token{'d-live'}');
		SELECT idempotency.complete('d', 'd-live', 201, '{"id": "pay_1"}',
		                            lease_token => '$token{'d-live'}');
	});
	is($new->safe_psql('shop', q{
		SELECT outcome || ' ' || response_status || ' ' || recovery_point
		  FROM idempotency.claim('d', 'd-live',
		         idempotency.fingerprint('POST', '/v1/charges', body(7)))}),
		'replay 201 captured', "$name: the holder of the live lease finishes its claim");

	# The reaper works after the upgrade and deletes the rows past retention.
	ok($new->poll_query_until('shop', q{
		SELECT count(*) = 0 FROM idempotency.keys WHERE scope = 'expired'}),
		"$name: the reaper deletes the rows past retention");
	is($new->safe_psql('shop', q{
		SELECT reaper_runs >= 1 AND reaped_rows = 500 FROM idempotency.stats
		 WHERE database = 'shop'}),
		't', "$name: the reaper's runs and deletions are counted");

	# A new request after the upgrade: claimed, completed, replayed.
	$new->safe_psql('shop', q{
		BEGIN;
		SELECT outcome FROM idempotency.claim('m1', 'after',
			idempotency.fingerprint('POST', '/v1/charges', body(1)));
		SELECT idempotency.complete('m1', 'after', 201);
		COMMIT;});
	is($new->safe_psql('shop', q{SELECT try_claim('m1', 'after', body(1))}),
		'replay', "$name: a key claimed after the upgrade replays");

	$new->stop;
}

done_testing();

# Dump and restore keep every key and every policy.  A payment database
# (a few hundred completed keys over several scopes, durable claims in
# progress, tombstones, policy rows, and a charges table whose foreign key
# references idempotency.keys) is dumped with pg_dump in the custom,
# directory, tar and plain formats and with pg_dumpall, and each dump is
# restored into a fresh cluster with the library preloaded.  In each:
#  - the keys, policies and charges are exactly those dumped, and the
#    foreign key from the charges to their keys is restored and valid;
#  - every completed request replays its stored status, headers and body;
#  - a durable claim in progress is still held (IK409) while its lease is
#    live, and once it lapses the next claim resumes it from the same
#    recovery point under a new token, the old token fenced off;
#  - a tombstone (past its replay window, within retention) raises IK410;
#  - the policy rows apply: a shadow scope stays shadow (a duplicate of a
#    completed key is 'new' and counted as shadow_would_replay), a scope
#    with its own windows gives them to a new key, cache_5xx still replays
#    a stored 5xx, and an off scope records nothing.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $preload = "shared_preload_libraries = 'idempotency'\n";

# The targets first, so that the durable claim made just before the dumps
# is still live when every restore is done.
my @formats = (
	[ 'custom', 'pg_dump -Fc' ],
	[ 'directory', 'pg_dump -Fd' ],
	[ 'tar', 'pg_dump -Ft' ],
	[ 'plain', 'pg_dump -Fp and psql' ],
	[ 'dumpall', 'pg_dumpall and psql' ]);
my %target;
for my $f (@formats)
{
	my $node = PostgreSQL::Test::Cluster->new("restore_$f->[0]");
	$node->init;
	$node->append_conf('postgresql.conf', $preload);
	$node->start;
	$target{ $f->[0] } = $node;
}

my $source = PostgreSQL::Test::Cluster->new('dumped');
$source->init;
$source->append_conf('postgresql.conf', $preload);
$source->start;
$source->safe_psql('postgres', 'CREATE DATABASE payments');
$source->safe_psql('payments', q{
	CREATE EXTENSION idempotency CASCADE;
	CREATE TABLE charges (
		id     text PRIMARY KEY,
		scope  text COLLATE "C" NOT NULL,
		key    text COLLATE "C" NOT NULL,
		amount integer NOT NULL,
		status text NOT NULL,
		FOREIGN KEY (key, scope) REFERENCES idempotency.keys (key, scope)
			DEFERRABLE INITIALLY DEFERRED);
	INSERT INTO idempotency.policies (scope, mode, ttl, retain, cache_5xx) VALUES
		('merchant_shadow', 'shadow', NULL, NULL, NULL),
		('merchant_short', 'enforce', '2 hours', '3 hours', NULL),
		('merchant_5xx', NULL, NULL, NULL, true),
		('merchant_off', 'off', NULL, NULL, NULL);
});

# One request: claim, charge, complete, in one transaction (a DO block
# commits after each).  The fingerprint is what a retry computes.
my $charge_fn = q{
	CREATE FUNCTION charge(s text, k text, amt integer, status integer DEFAULT 201)
	RETURNS text LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM idempotency.claim(s, k, idempotency.fingerprint('POST', '/v1/charges',
			jsonb_build_object('amount', amt, 'currency', 'eur')));
		INSERT INTO charges VALUES ('ch_' || s || '_' || k, s, k, amt, 'captured');
		RETURN idempotency.complete(s, k, status,
			jsonb_build_object('id', 'ch_' || s || '_' || k, 'amount', amt),
			jsonb_build_object('Content-Type', 'application/json', 'Request-Id', 'req_' || k));
	END $$;
};
$source->safe_psql('payments', $charge_fn);
$source->safe_psql('payments', q{
	DO $$
	BEGIN
		-- 300 completed requests over four enforced scopes
		FOR n IN 1 .. 300 LOOP
			PERFORM charge('merchant_' || (n % 4 + 1), 'key-' || n, 100 + n);
			COMMIT;
		END LOOP;
		-- 20 that will be tombstones
		FOR n IN 1 .. 20 LOOP
			PERFORM charge('merchant_' || (n % 4 + 1), 'late-' || n, 5000 + n);
			COMMIT;
		END LOOP;
		-- recorded in shadow mode, with its own windows, a stored 5xx
		FOR n IN 1 .. 10 LOOP
			PERFORM charge('merchant_shadow', 'sh-' || n, 700 + n);
			COMMIT;
			PERFORM charge('merchant_short', 'short-' || n, 800 + n);
			COMMIT;
		END LOOP;
		PERFORM charge('merchant_5xx', 'flaky-1', 900, 503);
		COMMIT;
	END $$;
	-- past the replay window (24 h), within retention (7 days)
	UPDATE idempotency.keys
	   SET created_at = now() - interval '30 hours',
	       expires_at = now() - interval '6 hours',
	       retain_until = now() - interval '30 hours' + interval '7 days'
	 WHERE key LIKE 'late-%';
});
is($source->safe_psql('payments', q{
	SELECT count(*) FILTER (WHERE key LIKE 'key-%') || ' ' ||
	       count(*) FILTER (WHERE key LIKE 'late-%') || ' ' ||
	       count(*) FILTER (WHERE scope = 'merchant_shadow') || ' ' ||
	       count(*) FILTER (WHERE scope = 'merchant_short')
	  FROM idempotency.keys WHERE state = 'completed'}),
	'300 20 10 10', 'the data set: completed keys, tombstones, shadowed and short-window keys');

# Durable claims in progress, each with its payment pending: three with a
# long lease, and one whose lease lapses after the restores (longer where
# the test timeout is scaled up for a slow server).
my $scale = $PostgreSQL::Test::Utils::timeout_default / 180;
$scale = 1 if $scale < 1;
my $lease = int(12 * $scale);
my $pay_fp = q{idempotency.fingerprint('POST', '/v1/payments', '{"amount": 5000}'::jsonb)};

sub durable_claim
{
	my ($scope, $key, $lease) = @_;
	my $token = $source->safe_psql('payments', qq{
		BEGIN;
		SELECT lease_token FROM idempotency.claim('$scope', '$key', $pay_fp,
			lease => '$lease');
		INSERT INTO charges VALUES ('pay_${scope}_$key', '$scope', '$key', 5000, 'pending');
		COMMIT;});
	$source->safe_psql('payments',
		"SELECT idempotency.checkpoint('$scope', '$key', 'authorized', '$token')");
	return $token;
}
durable_claim('merchant_1', 'order-held', '1 hour');
durable_claim('merchant_2', 'order-held', '2 hours');
durable_claim('merchant_3', 'order-7781', '1 hour');
my $lapsing_token = durable_claim('merchant_1', 'order-lapsing', "$lease seconds");

# What was dumped: every row of the three tables, and what the retries of
# the completed requests get.
my $checksums = q{
	SELECT (SELECT md5(string_agg(k::text, '|' ORDER BY scope, key)) FROM idempotency.keys k)
	    || ' ' || (SELECT md5(string_agg(p::text, '|' ORDER BY scope)) FROM idempotency.policies p)
	    || ' ' || (SELECT md5(string_agg(c::text, '|' ORDER BY id)) FROM charges c)};
my $replays = q{
	SELECT count(*) FILTER (WHERE r.outcome = 'replay') || ' ' ||
	       md5(string_agg(concat_ws(' ', c.id, r.outcome, r.response_status,
	                                r.response_headers, r.response_body, r.first_seen),
	                      '|' ORDER BY c.id))
	  FROM charges c,
	       LATERAL idempotency.claim(c.scope, c.key, idempotency.fingerprint('POST', '/v1/charges',
	           jsonb_build_object('amount', c.amount, 'currency', 'eur'))) r
	 WHERE c.key LIKE 'key-%'};
my $dumped = $source->safe_psql('payments', $checksums);

# --- the dumps ---------------------------------------------------------------
my $dir = PostgreSQL::Test::Utils::tempdir;
my $connstr = $source->connstr('payments');
my %dump = (
	custom => [ "$dir/payments.dump", '-Fc' ],
	directory => [ "$dir/payments.dir", '-Fd' ],
	tar => [ "$dir/payments.tar", '-Ft' ],
	plain => [ "$dir/payments.sql", '-Fp' ]);
for my $f (qw(custom directory tar plain))
{
	$source->command_ok(
		[ $source->installed_command('pg_dump'), $dump{$f}[1], '-f', $dump{$f}[0], '-d', $connstr ],
		"pg_dump $dump{$f}[1]");
}
$source->command_ok(
	[ $source->installed_command('pg_dumpall'), '-f', "$dir/all.sql", '-d', $source->connstr('postgres') ],
	'pg_dumpall');
is($source->safe_psql('payments', $checksums), $dumped, 'nothing changed while dumping');
my $source_replays = $source->safe_psql('payments', $replays);
like($source_replays, qr/^300 /, 'on the source, the 300 completed requests replay');

# --- the restores ------------------------------------------------------------
for my $f (qw(custom directory tar))
{
	my $t = $target{$f};
	$t->safe_psql('postgres', 'CREATE DATABASE payments');
	$t->command_ok(
		[ $t->installed_command('pg_restore'), '--exit-on-error', '-d', $t->connstr('payments'),
		  $dump{$f}[0] ],
		"pg_restore of the $f dump into a fresh cluster, without an error");
}
{
	my $t = $target{plain};
	$t->safe_psql('postgres', 'CREATE DATABASE payments');
	my ($ret, $out, $err) = $t->psql('payments', slurp_file($dump{plain}[0]), on_error_stop => 1);
	is($ret, 0, 'psql restores the plain dump into a fresh cluster');
	unlike($err, qr/ERROR/, '... without an error');
}
{
	my $t = $target{dumpall};
	my ($ret, $out, $err) = $t->psql('postgres', slurp_file("$dir/all.sql"), on_error_stop => 0);
	my @errors = grep { !/role "\w+" already exists/ } ($err =~ /^.*ERROR:.*$/mg);
	is_deeply(\@errors, [],
		'psql restores the pg_dumpall output into a fresh cluster, its only error the existing superuser');
}

# Run a claim and return its outcome, or the SQLSTATE it raised.
my $try_claim = q{
	CREATE FUNCTION pg_temp.try_claim(s text, k text, f bytea, l interval DEFAULT NULL)
	RETURNS text LANGUAGE plpgsql AS $$
	DECLARE o text;
	BEGIN
		SELECT outcome INTO o FROM idempotency.claim(s, k, f, lease => l);
		RETURN o;
	EXCEPTION WHEN OTHERS THEN
		RETURN SQLSTATE;
	END $$;
};

# The durable claims first, while the short lease is live.
for my $f (@formats)
{
	my ($name, $how) = @$f;
	my $t = $target{$name};
	is($t->safe_psql('payments', qq{
		$try_claim
		SELECT string_agg(DISTINCT pg_temp.try_claim(scope, key, $pay_fp), ',') || ' ' || count(*)
		  FROM charges WHERE status = 'pending'}),
		'IK409 4',
		"$how: the durable claims in progress are still held while their leases are live")
	  or diag($t->safe_psql('payments', q{
		SELECT key || ' lease ends ' || lease_expires_at || ', now ' || clock_timestamp()
		  FROM idempotency.keys WHERE state = 'in_progress'}));
}

for my $f (@formats)
{
	my ($name, $how) = @$f;
	my $t = $target{$name};

	is($t->safe_psql('payments', $checksums), $dumped,
		"$how: every key, policy and charge is restored as dumped");
	is($t->safe_psql('payments', q{
		SELECT convalidated FROM pg_constraint
		 WHERE conrelid = 'charges'::regclass AND contype = 'f'
		   AND confrelid = 'idempotency.keys'::regclass}),
		't', "$how: the foreign key from the charges to their keys is restored and valid");
	is($t->safe_psql('payments', $replays), $source_replays,
		"$how: every completed request replays its stored status, headers and body");

	is($t->safe_psql('payments', qq{
		$try_claim
		SELECT string_agg(DISTINCT pg_temp.try_claim(c.scope, c.key,
		           idempotency.fingerprint('POST', '/v1/charges',
		               jsonb_build_object('amount', c.amount, 'currency', 'eur'))), ',')
		       || ' ' || count(*)
		  FROM charges c WHERE c.key LIKE 'late-%'}),
		'IK410 20', "$how: every tombstone raises IK410");

	my $would_replay = q{
		SELECT shadow_would_replay FROM idempotency.stats WHERE database = 'payments'};
	my $before = $t->safe_psql('payments', $would_replay);
	is($t->safe_psql('payments', q{
		BEGIN;
		SELECT outcome FROM idempotency.claim('merchant_shadow', 'sh-3',
			idempotency.fingerprint('POST', '/v1/charges', '{"amount": 703, "currency": "eur"}'::jsonb));
		ROLLBACK;}),
		'new', "$how: the shadow scope stays shadow: a duplicate of a completed key is 'new'");
	is($t->safe_psql('payments', $would_replay), $before + 1,
		"$how: ... and is counted as shadow_would_replay");

	is($t->safe_psql('payments', q{
		BEGIN;
		SELECT outcome FROM idempotency.claim('merchant_short', 'after-restore', '\x01');
		SELECT idempotency.complete('merchant_short', 'after-restore', 201);
		COMMIT;
		SELECT (expires_at - created_at) || ' ' || (retain_until - created_at)
		  FROM idempotency.keys WHERE scope = 'merchant_short' AND key = 'after-restore'}),
		"new\nstored\n02:00:00 03:00:00",
		"$how: the scope with its own windows gives them to a new key");
	is($t->safe_psql('payments', q{
		SELECT outcome || ' ' || response_status
		  FROM idempotency.claim('merchant_5xx', 'flaky-1',
			idempotency.fingerprint('POST', '/v1/charges', '{"amount": 900, "currency": "eur"}'::jsonb))}),
		'replay 503', "$how: the cache_5xx scope replays its stored 5xx");
	is($t->safe_psql('payments', q{
		BEGIN;
		SELECT outcome FROM idempotency.claim('merchant_off', 'off-1', '\x01');
		SELECT idempotency.complete('merchant_off', 'off-1', 201);
		COMMIT;
		SELECT count(*) FROM idempotency.keys WHERE scope = 'merchant_off'}),
		"new\nskipped\n0", "$how: the off scope records nothing");
}

# Once the short lease lapses, its claim resumes in every restored cluster.
for my $f (@formats)
{
	my ($name, $how) = @$f;
	my $t = $target{$name};
	$t->poll_query_until('payments', q{
		SELECT lease_expires_at < clock_timestamp() FROM idempotency.keys
		 WHERE key = 'order-lapsing'})
	  or die 'the lease never lapsed';
	my ($outcome, $point, $token) = split /\|/, $t->safe_psql('payments', qq{
		SELECT outcome, recovery_point, lease_token
		  FROM idempotency.claim('merchant_1', 'order-lapsing', $pay_fp, lease => '1 hour')});
	is("$outcome $point", 'resume authorized',
		"$how: after its lease lapses the durable claim resumes from its recovery point");
	isnt($token, $lapsing_token, "$how: ... under a new lease token");
	my ($ret, $out, $err) = $t->psql('payments',
		"SELECT idempotency.checkpoint('merchant_1', 'order-lapsing', 'late', '$lapsing_token')",
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/IK409/, "$how: ... and the dumped token is fenced off");
	is($t->safe_psql('payments', qq{
		$try_claim
		SELECT string_agg(DISTINCT pg_temp.try_claim(scope, key, $pay_fp), ',') || ' ' || count(*)
		  FROM charges WHERE status = 'pending' AND key <> 'order-lapsing'}),
		'IK409 3', "$how: the claims with long leases are still held");
}

$_->stop for values %target;
$source->stop;
done_testing();

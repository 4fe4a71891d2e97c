# The per-transaction limit on key locks keeps the server available.  Each
# key a transaction claims holds an entry of the lock table that every
# backend shares, until the transaction ends (complete() keeps its lock
# too).  With max_locks_per_transaction = 64 a transaction may hold 32
# key locks (idempotency.max_key_locks = -1: half of it); the next claim
# gets SQLSTATE 53400 with the limit in its DETAIL, also after a rolled
# back savepoint, while new connections keep working and other sessions
# keep claiming.  Only a superuser can raise the limit; raised far above
# what the lock table holds, one transaction's claims fill the table and
# every new connection fails with "out of shared memory" until that
# transaction ends: what the limit prevents.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# Nothing else takes locks in the shared table while the test fills it:
# no autovacuum, and no reaper (the library loads on first use).
my $node = PostgreSQL::Test::Cluster->new('key_locks');
$node->init;
$node->append_conf('postgresql.conf', qq{
max_locks_per_transaction = 64
autovacuum = off
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION idempotency CASCADE;
	CREATE ROLE app LOGIN;
	GRANT USAGE ON SCHEMA idempotency TO app;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA idempotency TO app;
});

# One request: claim and complete (which keeps the key's lock).
my $charge_fn = q{
	CREATE FUNCTION pg_temp.charge(k text) RETURNS text LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM idempotency.claim('merchant_1', k, '\x01');
		RETURN idempotency.complete('merchant_1', k, 201);
	END $$;
};
my $claimer = $node->background_psql('postgres', on_error_stop => 0,
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
my $pid = $claimer->query_safe('SELECT pg_backend_pid()');
$claimer->query_safe($charge_fn);

is($claimer->query_safe(q{
	BEGIN;
	SELECT count(*) FROM generate_series(1, 32) g WHERE pg_temp.charge('a-' || g) = 'stored';}),
	'32', 'one transaction claims and completes 32 keys');
is($claimer->query_safe('SHOW idempotency.max_key_locks'), '-1',
	'idempotency.max_key_locks is at its default, -1: half of max_locks_per_transaction');
my $key_locks = qq{
	SELECT count(*) FROM pg_locks
	 WHERE pid = $pid AND locktype = 'advisory' AND objsubid = 18763};
is($node->safe_psql('postgres', $key_locks), '32',
	'... and holds their 32 key locks, though no claim is open');

# Run a statement in the claimer session; return its error, or ''.
sub claimer_error
{
	my ($sql) = @_;
	$claimer->{stderr} = '';
	$claimer->query($sql);
	my $err = $claimer->{stderr};
	$claimer->{stderr} = '';
	return $err;
}

my $err = claimer_error(q{
	SAVEPOINT s;
	SELECT outcome FROM idempotency.claim('merchant_1', 'a-33', '\x01');});
like($err, qr/ERROR:  53400: too many idempotency keys locked in one transaction/,
	'the 33rd key lock is refused with SQLSTATE 53400');
like($err, qr/DETAIL: .*\b32\b.*idempotency\.max_key_locks/,
	'... and the DETAIL names the limit and its setting');
claimer_error('ROLLBACK TO s');
like(claimer_error(q{SELECT outcome FROM idempotency.claim('merchant_1', 'a-34', '\x01')}),
	qr/53400/, 'after the savepoint is rolled back the transaction is still at its limit');

# While it holds its limit, the server serves everyone else.
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'a new connection works');
is($node->safe_psql('postgres', qq{
	$charge_fn
	BEGIN;
	SELECT count(*) FROM generate_series(1, 32) g WHERE pg_temp.charge('b-' || g) = 'stored';
	COMMIT;}),
	'32', 'another session claims and completes up to its own limit');
is($node->safe_psql('postgres', q{
	SET ROLE app;
	BEGIN;
	SELECT outcome FROM idempotency.claim('merchant_2', 'c-1', '\x01');
	SELECT idempotency.complete('merchant_2', 'c-1', 201);
	COMMIT;}),
	"new\nstored", 'an application role claims and completes');

is(claimer_error('COMMIT'), '', 'the claimer commits its 32 completed keys');
is($claimer->query_safe(q{
	BEGIN;
	SELECT count(*) FROM generate_series(1, 32) g WHERE pg_temp.charge('d-' || g) = 'stored';
	COMMIT;}),
	'32', 'the next transaction has the whole limit again');

# Only a superuser sets the limit.
my ($ret, $out, $stderr) = $node->psql('postgres', q{
	SET ROLE app;
	SELECT idempotency.fingerprint('\x01'::bytea) IS NOT NULL;
	SET idempotency.max_key_locks = 100000;},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($stderr, qr/ERROR:  42501: permission denied to set parameter "idempotency.max_key_locks"/,
	'an application role cannot raise the limit');

# What the limit prevents: raised far above what the shared lock table
# holds, one transaction claims until the table is full, catching the
# error of the claim that no longer fits and keeping the others.
$claimer->query_safe(q{
	SET idempotency.max_key_locks = 100000000;
	CREATE FUNCTION pg_temp.fill() RETURNS text LANGUAGE plpgsql AS $$
	DECLARE n integer := 0;
	BEGIN
		LOOP
			BEGIN
				PERFORM idempotency.claim('merchant_1', 'fill-' || n, '\x01');
			EXCEPTION WHEN out_of_memory THEN
				RETURN n || ' ' || SQLSTATE || ' ' || SQLERRM;
			END;
			n := n + 1;
		END LOOP;
	END $$;
});
my ($held, $state, $message) =
  split / /, $claimer->query_safe('BEGIN; SELECT pg_temp.fill();'), 3;
is("$state $message", '53200 out of shared memory',
	'with the limit raised, one transaction claims until the shared lock table is full');
cmp_ok($held, '>', 1000, "... holding $held key locks");
($ret, $out, $stderr) = $node->psql('postgres', 'SELECT 1');
isnt($ret, 0, 'while it holds them, a new connection fails');
like($stderr, qr/FATAL:  out of shared memory/, '... with "out of shared memory"');

is(claimer_error('ROLLBACK'), '', 'the transaction ends');
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'then new connections work again');
is($node->safe_psql('postgres', q{
	BEGIN;
	SELECT outcome FROM idempotency.claim('merchant_1', 'e-1', '\x01');
	SELECT idempotency.complete('merchant_1', 'e-1', 201);
	COMMIT;}),
	"new\nstored", 'and claims too');
$claimer->quit;

$node->stop;
done_testing();

# Without shared_preload_libraries every function works: the library loads
# on first use and registers the commit guard in that backend.  Only the
# statistics need shared memory, and say so.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('no_preload');
$node->init;
$node->start;

is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'', 'the library is not preloaded');

$node->safe_psql('postgres', q{
	CREATE EXTENSION idempotency CASCADE;
	CREATE TABLE charges (id text PRIMARY KEY, amount int);
});

is( $node->safe_psql('postgres', q{
		BEGIN;
		SELECT outcome FROM idempotency.claim('m', 'k1',
			idempotency.fingerprint('POST', '/v1/charges', '{"amount": 1}'::jsonb));
		INSERT INTO charges VALUES ('ch_1', 1);
		SELECT idempotency.complete('m', 'k1', 201, '{"id": "ch_1"}');
		COMMIT;}),
	"new\nstored", 'a fresh session claims and completes');

is( $node->safe_psql('postgres', q{
		SELECT outcome || ' ' || (response_body->>'id')
		  FROM idempotency.claim('m', 'k1',
			idempotency.fingerprint('POST', '/v1/charges', '{"amount": 1.0}'::jsonb))}),
	'replay ch_1', 'another session replays');

# The commit guard is there even when a claim is the session's first call.
my ($ret, $stdout, $stderr) = $node->psql('postgres', q{
	BEGIN;
	SELECT outcome FROM idempotency.claim('m', 'k2', '\x01');
	INSERT INTO charges VALUES ('ch_2', 2);
	COMMIT;},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($stderr, qr/IK428/, 'commit with an open claim fails in a fresh session');
is($node->safe_psql('postgres', q{SELECT count(*) FROM charges WHERE id = 'ch_2'}),
	'0', 'and its charge is rolled back');

# Waiting works without preload too.
my $holder = $node->background_psql('postgres');
$holder->query_safe(q{
	BEGIN;
	SELECT outcome FROM idempotency.claim('m', 'k3', '\x01');
});
($ret, $stdout, $stderr) = $node->psql('postgres', q{
	SELECT outcome FROM idempotency.claim('m', 'k3', '\x01', wait => '100ms')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($stderr, qr/IK409/, 'a duplicate times out with IK409');
$holder->query_safe(q{
	SELECT idempotency.complete('m', 'k3', 200, '{"done": true}');
	COMMIT;
});
$holder->quit;
is( $node->safe_psql('postgres', q{
		SELECT outcome FROM idempotency.claim('m', 'k3', '\x01')}),
	'replay', 'and replays after the holder commits');

# Statistics need shared memory: the view says so, with the remedy.
($ret, $stdout, $stderr) = $node->psql('postgres', 'SELECT * FROM idempotency.stats');
like($stderr, qr/ERROR:  idempotency statistics need the library in shared_preload_libraries/,
	'the stats view explains that it needs preloading');
like($stderr, qr/HINT:  Add 'idempotency' to shared_preload_libraries and restart the server./,
	'with a hint');

$node->stop;
done_testing();

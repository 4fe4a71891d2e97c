# A committed charge never loses its key, and a crash never leaves a key
# claimed by a request that did not commit.  After an immediate shutdown
# (no checkpoint, WAL replay on start):
#  - a completed key replays its response;
#  - a request in flight at the crash left neither charge nor key: the
#    retry is 'new';
#  - a prepared transaction that completed its key still holds it: a
#    duplicate gets IK409 until COMMIT PREPARED, then replays.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'idempotency'
max_prepared_transactions = 5
});
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION idempotency CASCADE;
	CREATE TABLE charges (id text PRIMARY KEY, amount int);
});

# One completed request per key; the charge and the key commit together.
sub charge
{
	my ($key, $finish) = @_;
	return qq{
		BEGIN;
		SELECT outcome FROM idempotency.claim('m', '$key', '\\x01');
		INSERT INTO charges VALUES ('ch_$key', 100);
		SELECT idempotency.complete('m', '$key', 201,
			jsonb_build_object('id', 'ch_$key'));
		$finish;
	};
}

$node->safe_psql('postgres', charge('committed', 'COMMIT'));
$node->safe_psql('postgres', charge('prepared', "PREPARE TRANSACTION 'p1'"));

# A request in flight: claimed and charged, not committed.
my $inflight = $node->background_psql('postgres');
$inflight->query_safe(q{
	BEGIN;
	SELECT outcome FROM idempotency.claim('m', 'inflight', '\x01');
	INSERT INTO charges VALUES ('ch_inflight', 100);
});
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM pg_locks
		 WHERE locktype = 'advisory' AND objsubid = 18763 AND granted}),
	'2', 'the in-flight and the prepared request each hold their key');

$node->stop('immediate');
$inflight->{run}->finish;
$node->start;

is( $node->safe_psql('postgres', q{
		SELECT outcome || ' ' || response_status || ' ' || (response_body->>'id')
		  FROM idempotency.claim('m', 'committed', '\x01')}),
	'replay 201 ch_committed',
	'a key committed before the crash replays its response');

is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM charges WHERE id = 'ch_inflight'}),
	'0', 'the in-flight charge is gone');
is( $node->safe_psql('postgres', q{
		BEGIN;
		SELECT outcome FROM idempotency.claim('m', 'inflight', '\x01');
		SELECT idempotency.release('m', 'inflight');
		COMMIT;}),
	"new\n", 'the in-flight key is new for the retry');

my ($ret, $stdout, $stderr) = $node->psql('postgres', q{
	SELECT outcome FROM idempotency.claim('m', 'prepared', '\x01')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($stderr, qr/IK409/,
	'the prepared transaction still holds its key after the restart');

$node->safe_psql('postgres', "COMMIT PREPARED 'p1'");
is( $node->safe_psql('postgres', q{
		SELECT outcome || ' ' || (response_body->>'id')
		  FROM idempotency.claim('m', 'prepared', '\x01')}),
	'replay ch_prepared', 'after COMMIT PREPARED the key replays');
is( $node->safe_psql('postgres', q{SELECT string_agg(id, ',' ORDER BY id) FROM charges}),
	'ch_committed,ch_prepared',
	'exactly the committed charges exist, each once');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM idempotency.keys k
		  JOIN charges c ON c.id = 'ch_' || k.key
		 WHERE k.scope = 'm'}),
	'2', 'every committed charge has its key');

$node->stop;
done_testing();

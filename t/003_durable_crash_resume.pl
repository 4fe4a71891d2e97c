# A durable claim survives its worker and the server: after the backend
# holding a lease is terminated and the server is stopped with an
# immediate shutdown, the next claim of the request resumes from the last
# committed checkpoint, and no committed checkpoint or response is lost.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('durable');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'idempotency'");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION idempotency CASCADE');

sub token_of
{
	my ($key) = @_;
	return $node->safe_psql('postgres',
		"SELECT lease_token FROM idempotency.keys WHERE scope = 'psp' AND key = '$key'");
}

# order-a: claimed and checkpointed, then its worker dies mid-step.  Its lease
# must outlast the restart below: 5 s, longer where the test timeout is scaled
# up for a slow server (valgrind).
my $lease = 5 * $PostgreSQL::Test::Utils::timeout_default / 180;
$lease = 5 if $lease < 5;
$node->safe_psql('postgres',
	qq{SELECT outcome FROM idempotency.claim('psp', 'order-a', '\\x01', lease => '$lease seconds')});
my $token_a = token_of('order-a');
$node->safe_psql('postgres',
	"SELECT idempotency.checkpoint('psp', 'order-a', 'authorized', '$token_a')");

my $worker = $node->background_psql('postgres', on_error_stop => 0);
my $worker_pid = $worker->query_safe('SELECT pg_backend_pid()');
$worker->query_safe(qq{
	BEGIN;
	SELECT idempotency.checkpoint('psp', 'order-a', 'captured', '$token_a');
});
is( $node->safe_psql('postgres',
		"SELECT pg_terminate_backend($worker_pid)"),
	't', 'the worker holding the lease is terminated mid-transaction');
$worker->quit;
is( $node->safe_psql('postgres',
		"SELECT recovery_point FROM idempotency.keys WHERE key = 'order-a'"),
	'authorized', 'its uncommitted checkpoint is gone, the committed one stays');

# order-b: completed before the crash.
$node->safe_psql('postgres',
	q{SELECT outcome FROM idempotency.claim('psp', 'order-b', '\x01', lease => '2 seconds')});
my $token_b = token_of('order-b');
$node->safe_psql('postgres', qq{
	SELECT idempotency.checkpoint('psp', 'order-b', 'captured', '$token_b');
	SELECT idempotency.complete('psp', 'order-b', 201, '{"id": "ch_b"}', lease_token => '$token_b');
});

# order-c: a durable claim whose own transaction never committed.
my $inflight = $node->background_psql('postgres');
$inflight->query_safe(q{
	BEGIN;
	SELECT outcome FROM idempotency.claim('psp', 'order-c', '\x01', lease => '2 seconds');
});

$node->stop('immediate');
$inflight->{run}->finish;
$node->start;

my ($ret, $out, $err) = $node->psql('postgres',
	q{SELECT outcome FROM idempotency.claim('psp', 'order-a', '\x01')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/IK409/, 'right after the restart the lease is still live: IK409');

# Let the lease lapse, then the next claim resumes.
$node->poll_query_until('postgres', q{
	SELECT lease_expires_at < clock_timestamp() FROM idempotency.keys WHERE key = 'order-a'})
  or die 'the lease never lapsed';
is( $node->safe_psql('postgres', q{
		SELECT outcome || ' ' || recovery_point
		  FROM idempotency.claim('psp', 'order-a', '\x01', lease => '1 minute')}),
	'resume authorized', 'the next claim resumes from the last committed checkpoint');
my $new_token = token_of('order-a');
isnt($new_token, $token_a, 'under a new lease token');
($ret, $out, $err) = $node->psql('postgres',
	"SELECT idempotency.checkpoint('psp', 'order-a', 'late', '$token_a')",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/IK409/, 'the dead worker\'s token is fenced off');
$node->safe_psql('postgres', qq{
	SELECT idempotency.checkpoint('psp', 'order-a', 'captured', '$new_token');
	SELECT idempotency.complete('psp', 'order-a', 201, '{"id": "ch_a"}', lease_token => '$new_token');
});
is( $node->safe_psql('postgres', q{
		SELECT outcome || ' ' || recovery_point || ' ' || (response_body->>'id')
		  FROM idempotency.claim('psp', 'order-a', '\x01')}),
	'replay captured ch_a', 'the resumed claim completes and replays');

is( $node->safe_psql('postgres', q{
		SELECT outcome || ' ' || response_status || ' ' || (response_body->>'id')
		  FROM idempotency.claim('psp', 'order-b', '\x01')}),
	'replay 201 ch_b', 'a response completed before the crash replays');

is( $node->safe_psql('postgres', q{
		SELECT outcome FROM idempotency.claim('psp', 'order-c', '\x01', lease => '1 minute')}),
	'new', 'a durable claim that never committed left nothing behind');

$node->stop;
done_testing();

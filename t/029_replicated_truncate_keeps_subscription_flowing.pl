# A TRUNCATE of idempotency.keys that a superuser allowed on a publisher
# (SET idempotency.allow_truncate = on) reaches a logical-replication
# subscriber, whose apply worker applies it: the subscription goes on,
# later payments replicate.  Before, the subscriber's guard refused the
# replicated TRUNCATE, the apply worker retried it forever, nothing after
# it was applied and the publisher kept its WAL.  The subscriber's own
# sessions are still refused, a replica-role one included.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $publisher = PostgreSQL::Test::Cluster->new('publisher');
$publisher->init(allows_streaming => 'logical');
$publisher->append_conf('postgresql.conf', "shared_preload_libraries = 'idempotency'\n");
$publisher->start;
my $subscriber = PostgreSQL::Test::Cluster->new('subscriber');
$subscriber->init;
$subscriber->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'idempotency'
wal_retrieve_retry_interval = '200ms'
});
$subscriber->start;

$_->safe_psql('postgres', 'CREATE EXTENSION idempotency CASCADE') for $publisher, $subscriber;

my $pay = sub {
	my ($key) = @_;
	$publisher->safe_psql('postgres', qq{
BEGIN;
SELECT outcome FROM idempotency.claim('shop', '$key', '\\x01');
SELECT idempotency.complete('shop', '$key', 201, '{"id": "ch_$key"}');
COMMIT;});
};
$pay->('before');
$publisher->safe_psql('postgres', 'CREATE PUBLICATION keys FOR TABLE idempotency.keys');
my $connstr = $publisher->connstr . ' dbname=postgres';
$subscriber->safe_psql('postgres', qq{
	CREATE SUBSCRIPTION keys CONNECTION '$connstr' PUBLICATION keys WITH (copy_data = true)});
$subscriber->wait_for_subscription_sync($publisher, 'keys');

# Whether the subscriber has the key, within 30 seconds.
my $arrives = sub {
	my ($key) = @_;
	for (1 .. 150)
	{
		return 1 if $subscriber->safe_psql('postgres',
			qq{SELECT count(*) FROM idempotency.keys WHERE key = '$key'}) eq '1';
		usleep(200_000);
	}
	return 0;
};
ok($arrives->('before'), 'the subscriber has the first key');

# The permitted TRUNCATE, then a payment.
$publisher->safe_psql('postgres', q{
SET idempotency.allow_truncate = on;
TRUNCATE idempotency.keys;});
$pay->('after');
ok($arrives->('after'), 'a payment after the TRUNCATE reaches the subscriber');
is($subscriber->safe_psql('postgres',
	q{SELECT string_agg(key, ',' ORDER BY key) FROM idempotency.keys}),
	'after', 'the subscriber applied the TRUNCATE');
unlike(slurp_file($subscriber->logfile), qr/TRUNCATE of idempotency\.keys is refused/,
	'the apply worker was never refused');
is($subscriber->safe_psql('postgres', q{
SELECT outcome, response_body->>'id' FROM idempotency.claim('shop', 'after', '\x01')}),
	'replay|ch_after', 'the subscriber replays the replicated key');

# The subscriber's own sessions are still guarded.
my ($out, $err) = ('', '');
$subscriber->psql('postgres', 'TRUNCATE idempotency.keys', stdout => \$out, stderr => \$err);
like($err, qr/TRUNCATE of idempotency\.keys is refused/, 'a subscriber session is refused');
$subscriber->psql('postgres', q{
SET session_replication_role = replica;
TRUNCATE idempotency.keys;}, stdout => \$out, stderr => \$err);
like($err, qr/TRUNCATE of idempotency\.keys is refused/, 'a replica-role session too');

# A TRUNCATE the publisher refused never replicates.
$publisher->psql('postgres', 'TRUNCATE idempotency.keys', stdout => \$out, stderr => \$err);
like($err, qr/refused/, 'the publisher refuses an unpermitted TRUNCATE');
$pay->('last');
ok($arrives->('last'), 'and replication goes on');
is($subscriber->safe_psql('postgres', q{SELECT count(*) FROM idempotency.keys}),
	'2', 'with the keys kept');

$subscriber->stop;
$publisher->stop;
done_testing();

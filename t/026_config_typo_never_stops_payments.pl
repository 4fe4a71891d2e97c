# The configuration typo of README.md's "Configuration checks": ALTER
# SYSTEM SET idempotency.ttl = '8d' (retention left at 7 days) and a
# reload.  Payments go on: a warm session, that claimed before the reload,
# replays its completed key and makes new ones, each kept for the 8-day
# window; the kill switch mode = off, reloaded, works; the mistake is a
# WARNING in the log.  Before, every claim raised 22023 after the reload.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('config_typo');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'idempotency'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION idempotency CASCADE');

my $payment = sub {
	my ($key) = @_;
	return qq{
BEGIN;
SELECT outcome FROM idempotency.claim('shop', '$key', '\\x01');
SELECT idempotency.complete('shop', '$key', 201, '{"id": "ch_$key"}');
COMMIT;
};
};

# A warm session: it claimed before the reload.
my $warm = $node->background_psql('postgres', on_error_stop => 0);
like($warm->query_safe($payment->('before')), qr/new/, 'a payment before the reload');

$node->safe_psql('postgres', q{ALTER SYSTEM SET idempotency.ttl = '8d'});
$node->reload;
$node->poll_query_until('postgres',
	q{SELECT current_setting('idempotency.ttl') = '8d'})
  or die 'the reload did not arrive';

my ($out, $err) = ('', '');
$out = $warm->query(q{SELECT outcome, response_body->>'id' FROM idempotency.claim('shop', 'before', '\x01')});
is($out, "replay|ch_before", 'the warm session replays a completed key after the reload');
like($warm->{stderr}, qr/WARNING:  retention of scope "shop" is shorter than its replay window/,
	'the warm session is warned');
$warm->{stderr} = '';
like($warm->query_safe($payment->('after')), qr/new/, 'and makes a new payment');
is($node->safe_psql('postgres', q{
SELECT expires_at - created_at, retain_until - created_at
  FROM idempotency.keys WHERE key = 'after'}),
	'8 days|8 days', 'kept for the window it was promised');

$node->psql('postgres', q{SELECT outcome FROM idempotency.claim('shop', 'before', '\x01')},
	stdout => \$out, stderr => \$err);
is($out, 'replay', 'a new session replays too');
like($err, qr/WARNING/, 'and is warned');

# The kill switch, reloaded over the typo.
$node->safe_psql('postgres', q{ALTER SYSTEM SET idempotency.mode = off});
$node->reload;
$node->poll_query_until('postgres',
	q{SELECT current_setting('idempotency.mode') = 'off'})
  or die 'the reload did not arrive';
$out = $warm->query(q{
BEGIN;
SELECT outcome FROM idempotency.claim('shop', 'off', '\x01');
SELECT idempotency.complete('shop', 'off', 201);
COMMIT;});
is($out, "new\nskipped", 'mode = off claims');

like(slurp_file($node->logfile),
	qr/WARNING:  retention of scope "shop" is shorter than its replay window; it is raised to the replay window/,
	'the mistake is in the server log');

$warm->quit;
$node->stop;
done_testing();

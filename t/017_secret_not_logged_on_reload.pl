# Rotating or restoring the fingerprint secret the way README.md says
# (postgresql.conf, then a reload) never writes it to the server log at
# default logging settings: not the secret set at start, not the one a
# reload brings in, nor the previous one kept during a rotation.  (PostgreSQL logs "parameter ... changed to ..." with
# the new value for every setting a reload changes.)
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $first = 'first-secret-4b1d9e';
my $second = 'second-secret-8c2f7a';

my $node = PostgreSQL::Test::Cluster->new('secret_reload');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'idempotency'
idempotency.fingerprint_secret = '$first'
# the server's defaults, which the test framework raises
log_statement = 'none'
log_min_messages = warning
log_min_error_statement = error
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION idempotency CASCADE');

my $fp = q{SELECT encode(idempotency.fingerprint('\x01'::bytea), 'hex')};
my $before = $node->safe_psql('postgres', $fp);

$node->append_conf('postgresql.conf',
	"idempotency.fingerprint_secret = '$second'\n"
	  . "idempotency.fingerprint_secret_previous = '$first'\n");
$node->reload;
ok($node->poll_query_until('postgres', "$fp <> '$before'"),
	'the reload changed the secret');

my $log = slurp_file($node->logfile);
unlike($log, qr/\Q$first\E/, 'the server log does not contain the secret set at start');
unlike($log, qr/\Q$second\E/, 'the server log does not contain the secret a reload set');
ok($node->poll_query_until('postgres',
		q{SELECT current_setting('idempotency.fingerprint_secret_previous') <> ''}),
	'the reload set the previous secret');
$node->append_conf('postgresql.conf', "idempotency.fingerprint_secret_previous = ''\n");
$node->reload;
ok($node->poll_query_until('postgres',
		q{SELECT current_setting('idempotency.fingerprint_secret_previous') = ''}),
	'a reload dropped the previous secret');
$log = slurp_file($node->logfile);
unlike($log, qr/\Q$first\E/, 'the server log does not contain the previous secret');

$node->stop;
done_testing();

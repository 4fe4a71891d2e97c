# The fingerprint secret, set in postgresql.conf as README.md says, keys
# everyone's fingerprints and never shows: not in SHOW, current_setting()
# or pg_settings for any role, not in pg_file_settings for a monitoring
# role, not in pg_stat_activity, not in error messages, not in the server
# log at default settings.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $secret = 'S3cr3t-HMAC-key-7f9c2b';
my $previous = 'Pr3vious-HMAC-key-2a6d01';

my $node = PostgreSQL::Test::Cluster->new('secret');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'idempotency'
idempotency.fingerprint_secret = '$secret'
idempotency.fingerprint_secret_previous = '$previous'
# the server's defaults, which the test framework raises
log_statement = 'none'
log_min_messages = warning
log_min_error_statement = error
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION idempotency CASCADE;
	CREATE ROLE app LOGIN;
	GRANT USAGE ON SCHEMA idempotency TO app;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA idempotency TO app;
	REVOKE EXECUTE ON FUNCTION idempotency.reap(integer), idempotency.stats_reset() FROM app;
	CREATE ROLE monitor LOGIN IN ROLE pg_monitor;});

my %as = (app => [ '-U', 'app' ], monitor => [ '-U', 'monitor' ], superuser => []);
my @seen;    # everything any role got back

sub run_as
{
	my ($role, $sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql,
		extra_params => [ @{ $as{$role} }, '-v', 'VERBOSITY=verbose' ]);
	push @seen, $out, $err;
	return ($out, $err);
}

# It keys the fingerprints of every role.
is($node->safe_psql('postgres', qq{
	SELECT idempotency.fingerprint('abc'::bytea) = hmac('abc'::bytea, '$secret'::bytea, 'sha256')}),
	't', 'fingerprints are HMAC-SHA256 under the configured secret');
my ($app_fp) = run_as('app', q{SELECT encode(idempotency.fingerprint('abc'::bytea), 'hex')});
is($app_fp, $node->safe_psql('postgres',
		q{SELECT encode(idempotency.fingerprint('abc'::bytea), 'hex')}),
	'the application role gets the same keyed fingerprint');

# Nobody reads it back.
for my $role (qw(app monitor superuser))
{
	for my $sql ('SHOW idempotency.fingerprint_secret',
		q{SELECT current_setting('idempotency.fingerprint_secret')},
		q{SELECT current_setting('idempotency.fingerprint_secret', true)},
		'SHOW idempotency.fingerprint_secret_previous',
		q{SELECT current_setting('idempotency.fingerprint_secret_previous', true)},
		q{SELECT name, setting, reset_val, boot_val FROM pg_settings WHERE name LIKE 'idempotency.%'},
		'SHOW ALL')
	{
		my ($out, $err) = run_as($role, $sql);
		unlike("$out$err", qr/\Q$secret\E|\Q$previous\E/, "$role: $sql");
	}
}
my ($out, $err) = run_as('monitor', 'SHOW idempotency.fingerprint_secret');
is($out, '********', 'pg_monitor (pg_read_all_settings) sees a mask');
($out, $err) = run_as('app', 'SHOW idempotency.fingerprint_secret');
like($err, qr/42501/, 'an application role may not even look');
($out, $err) = run_as('monitor', 'SELECT * FROM pg_file_settings');
like($err, qr/permission denied/, 'pg_file_settings is closed to the monitoring role');

# A workload with every kind of error, as the application role.
run_as('app', q{
	BEGIN;
	SELECT outcome FROM idempotency.claim('m', 'k1', idempotency.fingerprint('POST', '/p', '{"a": 1}'::jsonb));
	SELECT idempotency.complete('m', 'k1', 201, '{"ok": true}');
	COMMIT;});
run_as('app', q{SELECT idempotency.claim('m', 'k1', idempotency.fingerprint('POST', '/p', '{"a": 2}'::jsonb))});
run_as('app', q{SELECT idempotency.fingerprint('PO ST', '/p', '{}'::jsonb)});
run_as('app', q{SELECT idempotency.fingerprint('POST', '/p', 'not json')});
run_as('app', q{SELECT idempotency.claim('m', 'k2', '\x01')});
run_as('app', q{SELECT idempotency.complete('m', 'nope', 200)});
run_as('app', q{SET idempotency.fingerprint_secret = 'guess'});
my $bg = $node->background_psql('postgres', extra_params => [ '-U', 'app' ]);
$bg->query_safe(q{SELECT idempotency.fingerprint('POST', '/p', '{"b": 1}'::jsonb)});

($out) = run_as('superuser', q{SELECT string_agg(coalesce(query, ''), ' | ') FROM pg_stat_activity});
unlike($out, qr/\Q$secret\E/, 'pg_stat_activity never shows it');
$bg->quit;

unlike(join("\n", @seen), qr/\Q$secret\E|\Q$previous\E/,
	'no output or error message of any role contains it');
my $log = slurp_file($node->logfile);
like($log, qr/IK422|different request/, 'the log has the errors of the workload');
unlike($log, qr/\Q$secret\E|\Q$previous\E/, 'the server log at default settings never contains it, nor the previous one');

$node->stop;
done_testing();

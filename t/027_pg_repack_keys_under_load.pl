# pg_repack of idempotency.keys while clients pay: pg_repack rebuilds the
# table into new files and swaps them in, keeping the table's OID, its
# extension membership and its TRUNCATE guard, so the drift check passes.
# Every payment succeeds, no request is charged twice, every charge keeps
# its key, and a warm session that used the table before goes on without
# an error.  (A copy renamed into the table's place is refused instead:
# sql/table_drift.sql.)
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $pg_repack = `pg_config --bindir`;
chomp $pg_repack;
$pg_repack .= '/pg_repack';
plan skip_all => "pg_repack is not installed (Debian: postgresql-15-repack, scripts/setup-debian.sh)"
  unless -x $pg_repack;

my $node = PostgreSQL::Test::Cluster->new('repack');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'idempotency'
log_min_messages = warning
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION idempotency CASCADE;
CREATE EXTENSION pg_repack;
CREATE TABLE charges (key text NOT NULL);
-- rows for pg_repack to copy
INSERT INTO idempotency.keys (scope, key, fingerprint, state, response_status,
                              created_at, expires_at, retain_until)
SELECT 'old', 'k' || g, '\x01', 'completed', 201,
       now(), now() + interval '1 day', now() + interval '7 days'
  FROM generate_series(1, 50000) g;
});
my ($oid_before, $file_before) = split /\|/, $node->safe_psql('postgres',
	q{SELECT oid, relfilenode FROM pg_class WHERE oid = 'idempotency.keys'::regclass});

# A warm session: its cached state is of the files before the repack.
my $warm = $node->background_psql('postgres', on_error_stop => 0);
my $pay = sub {
	my ($key) = @_;
	return qq{
BEGIN;
SELECT outcome FROM idempotency.claim('repack', '$key', '\\x01');
SELECT idempotency.complete('repack', '$key', 201, '{"id": "ch"}');
COMMIT;};
};
is($warm->query_safe($pay->('warm-1')), "new\nstored", 'the warm session pays before the repack');

# Payments with repeated keys, so that replays and waits happen during the
# repack; a second charge of a key would be a second row in charges.
my $script = $node->basedir . '/pay.sql';
append_to_file($script, q{\set k random(1, 3000)
BEGIN;
SELECT (outcome = 'new')::int AS is_new FROM idempotency.claim('repack', 'k' || :k, '\x01', wait => '30s') \gset
\if :is_new
INSERT INTO charges VALUES ('k' || :k);
SELECT idempotency.complete('repack', 'k' || :k, 201, '{"id": "ch"}');
\endif
COMMIT;
});
my ($pgbench_out, $pgbench_err) = ('', '');
my $pgbench = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '4', '-j', '2', '-T', '15', '-f', $script,
	  '-h', $node->host, '-p', $node->port, 'postgres' ],
	'>', \$pgbench_out, '2>', \$pgbench_err);

# Wait until the load is under way, then repack twice while it runs.
$node->poll_query_until('postgres', q{SELECT count(*) > 50 FROM charges});
for my $round (1 .. 2)
{
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run(
		[ $pg_repack, '--no-superuser-check', '--table', 'idempotency.keys',
		  '-h', $node->host, '-p', $node->port, '-d', 'postgres' ],
		'>', \$out, '2>', \$err);
	ok($ok, "pg_repack round $round ran") or diag "$out\n$err";
}
$pgbench->finish;
like($pgbench_out, qr/number of failed transactions: 0 /, 'every payment succeeded during the repacks')
  or diag "$pgbench_out\n$pgbench_err";
my ($done) = $pgbench_out =~ /number of transactions actually processed: (\d+)/;
ok(defined $done && $done > 100, 'clients kept paying (' . ($done // 0) . ' transactions)');

my ($oid_after, $file_after) = split /\|/, $node->safe_psql('postgres',
	q{SELECT oid, relfilenode FROM pg_class WHERE oid = 'idempotency.keys'::regclass});
is($oid_after, $oid_before, 'the table kept its OID');
isnt($file_after, $file_before, 'pg_repack swapped in new files');

is($node->safe_psql('postgres',
	q{SELECT count(*) FROM (SELECT key FROM charges GROUP BY key HAVING count(*) > 1) d}),
	'0', 'no request was charged twice');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM charges c
 WHERE NOT EXISTS (SELECT FROM idempotency.keys k
                    WHERE k.scope = 'repack' AND k.key = c.key)}),
	'0', 'every charge kept its key');
is($node->safe_psql('postgres', q{SELECT count(*) FROM idempotency.keys WHERE scope = 'old'}),
	'50000', 'the rows copied by pg_repack are all there');

is($warm->query_safe(q{SELECT outcome FROM idempotency.claim('repack', 'warm-1', '\x01')}),
	'replay', 'the warm session replays after the repack');
is($warm->query_safe($pay->('warm-2')), "new\nstored", 'and pays again');

my ($out, $err) = ('', '');
$node->psql('postgres', 'TRUNCATE idempotency.keys', stdout => \$out, stderr => \$err);
like($err, qr/TRUNCATE of idempotency.keys is refused/, 'the TRUNCATE guard is still in place');

$warm->quit;
$node->stop;
done_testing();

# The fingerprint secret travels with the data.  Keys dumped from a cluster
# whose idempotency.fingerprint_secret is one value and restored into a
# cluster with another keep fingerprints that the new cluster cannot
# reproduce: a retry of a completed request, fingerprinted there with
# idempotency.fingerprint(), gets IK422 (never 'new', never a second
# charge).  Setting the old secret in the new cluster's postgresql.conf
# and reloading makes the same retry replay.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

sub cluster
{
	my ($name, $secret) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'idempotency'
idempotency.fingerprint_secret = '$secret'
});
	$node->start;
	return $node;
}

my $source = cluster('old_secret', 'secret-of-the-old-cluster');
my $target = cluster('new_secret', 'a-different-secret');

my @requests = map { [ "key-$_", qq{{"amount": ${_}00, "currency": "eur"}} ] } 1 .. 3;
sub fp
{
	my ($body) = @_;
	return qq{idempotency.fingerprint('POST', '/v1/charges', '$body'::jsonb)};
}

$source->safe_psql('postgres', 'CREATE DATABASE payments');
$source->safe_psql('payments', 'CREATE EXTENSION idempotency CASCADE');
for my $r (@requests)
{
	my ($key, $body) = @$r;
	$source->safe_psql('payments', qq{
		BEGIN;
		SELECT outcome FROM idempotency.claim('merchant_1', '$key', @{[ fp($body) ]});
		SELECT idempotency.complete('merchant_1', '$key', 201, '{"id": "ch_$key"}');
		COMMIT;});
}
is($source->safe_psql('payments', qq{
	SELECT string_agg(outcome, ',') FROM (VALUES @{[ join ', ',
	    map { "('$_->[0]', " . fp($_->[1]) . ')' } @requests ]}) AS r(k, f),
	  LATERAL idempotency.claim('merchant_1', r.k, r.f)}),
	'replay,replay,replay', 'in the source cluster the retries replay');

my $dump = PostgreSQL::Test::Utils::tempdir . '/payments.dump';
$source->command_ok(
	[ $source->installed_command('pg_dump'), '-Fc', '-f', $dump, '-d', $source->connstr('payments') ],
	'pg_dump');
$target->safe_psql('postgres', 'CREATE DATABASE payments');
$target->command_ok(
	[ $target->installed_command('pg_restore'), '--exit-on-error', '-d', $target->connstr('payments'), $dump ],
	'pg_restore into a cluster with another fingerprint secret');

my $same_fp = q{SELECT count(*) FILTER (WHERE idempotency.fingerprint('POST', '/v1/charges',
	('{"currency": "eur", "amount": ' || substr(key, 5) || '00}')::jsonb) = fingerprint)
	  || ' of ' || count(*) FROM idempotency.keys};
is($target->safe_psql('payments', $same_fp), '0 of 3',
	'the new cluster computes other fingerprints for the same requests');

for my $r (@requests)
{
	my ($key, $body) = @$r;
	my ($ret, $out, $err) = $target->psql('payments', qq{
		SELECT outcome FROM idempotency.claim('merchant_1', '$key', @{[ fp($body) ]})},
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/ERROR:  IK422/, "with another secret, a retry of $key is IK422");
	is($out, '', '... never an outcome');
}

# The fix: the old secret, in postgresql.conf, reloaded.
$target->append_conf('postgresql.conf',
	"idempotency.fingerprint_secret = 'secret-of-the-old-cluster'\n");
$target->reload;
# The reload has taken effect once a fingerprint equals the source's (SHOW
# shows only asterisks, even to a superuser).
my $source_fp = $source->safe_psql('payments',
	q{SELECT encode(idempotency.fingerprint('\x01'::bytea), 'hex')});
$target->poll_query_until('payments', qq{
	SELECT encode(idempotency.fingerprint('\\x01'::bytea), 'hex') = '$source_fp'})
  or die 'the old secret was never loaded';
is($target->safe_psql('payments', $same_fp), '3 of 3',
	'with the old secret the new cluster computes the stored fingerprints');
for my $r (@requests)
{
	my ($key, $body) = @$r;
	is($target->safe_psql('payments', qq{
		SELECT outcome || ' ' || response_status || ' ' || (response_body->>'id')
		  FROM idempotency.claim('merchant_1', '$key', @{[ fp($body) ]})}),
		"replay 201 ch_$key", "with the old secret, a retry of $key replays");
}

$target->stop;
$source->stop;
done_testing();

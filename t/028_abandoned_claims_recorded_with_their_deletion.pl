# An abandoned durable claim (nobody finished it before its retention
# ended) is a payment to reconcile.  It is recorded in
# idempotency.abandoned_claims by the transaction that reaps or replaces
# its row, so the record prepares, commits, rolls back and survives a
# crash with that change: under two-phase commit (PREPARE TRANSACTION,
# COMMIT PREPARED), where the after-commit log line and counter are
# dropped, the record is there.  On a 0.2.0 catalog, without the table,
# the library behaves as before.  pg_dump keeps the records.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('abandoned');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'idempotency'
max_prepared_transactions = 5
idempotency.reaper_naptime = 3600
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION idempotency CASCADE');

# A durable claim that checkpointed, then was abandoned past retention.
my $abandon = sub {
	my ($db, $key) = @_;
	$node->safe_psql($db, qq{
SELECT idempotency.checkpoint('psp', '$key', 'authorized:$key', lease_token)
  FROM idempotency.claim('psp', '$key', '\\x01', lease => '1 minute');
UPDATE idempotency.keys
   SET created_at = now() - interval '9 days', expires_at = now() - interval '8 days',
       retain_until = now() - interval '2 days', lease_expires_at = now() - interval '9 days'
 WHERE scope = 'psp' AND key = '$key';});
	return $node->safe_psql($db,
		qq{SELECT lease_token FROM idempotency.keys WHERE scope = 'psp' AND key = '$key'});
};
my $recorded = sub {
	my ($key) = @_;
	return $node->safe_psql('postgres', qq{
SELECT how, recovery_point, lease_token,
       first_seen < now() - interval '8 days' AND lease_expires_at < first_seen + interval '1 day',
       abandoned_at <= now()
  FROM idempotency.abandoned_claims WHERE scope = 'psp' AND key = '$key'});
};

# Reaped under two-phase commit.
my $token = $abandon->('postgres', 'reaped');
$node->safe_psql('postgres', q{
BEGIN;
SELECT idempotency.reap();
PREPARE TRANSACTION 'reap';});
is($recorded->('reaped'), '', 'nothing is recorded before COMMIT PREPARED');
$node->safe_psql('postgres', q{COMMIT PREPARED 'reap'});
is($recorded->('reaped'), "reaped|authorized:reaped|$token|t|t",
	'COMMIT PREPARED of a reap records the abandoned claim');

# Replaced by a new claim under two-phase commit.
$token = $abandon->('postgres', 'replaced');
$node->safe_psql('postgres', q{
BEGIN;
SELECT outcome FROM idempotency.claim('psp', 'replaced', '\x02', lease => '1 minute');
PREPARE TRANSACTION 'replace';
COMMIT PREPARED 'replace';});
is($recorded->('replaced'), "replaced|authorized:replaced|$token|t|t",
	'COMMIT PREPARED of a replacing claim records the abandoned claim');

# ROLLBACK PREPARED: the row is kept, nothing is recorded; the next reap
# records it once.
$token = $abandon->('postgres', 'rolled-back');
$node->safe_psql('postgres', q{
BEGIN;
SELECT idempotency.reap();
PREPARE TRANSACTION 'rollback';
ROLLBACK PREPARED 'rollback';});
is($recorded->('rolled-back'), '', 'ROLLBACK PREPARED records nothing');
is($node->safe_psql('postgres',
	q{SELECT count(*) FROM idempotency.keys WHERE key = 'rolled-back'}),
	'1', 'and keeps the row');
$node->safe_psql('postgres', q{SELECT idempotency.reap()});
is($recorded->('rolled-back'), "reaped|authorized:rolled-back|$token|t|t",
	'a later reap records it');

# A crash right after the commit: the record is committed with the
# deletion (the log line, an after-commit effect, could be lost).
$token = $abandon->('postgres', 'crash');
$node->safe_psql('postgres', q{SELECT idempotency.reap()});
$node->stop('immediate');
$node->start;
is($recorded->('crash'), "reaped|authorized:crash|$token|t|t",
	'the record survives a crash right after the commit');

# The background reaper records too.
$token = $abandon->('postgres', 'background');
$node->append_conf('postgresql.conf', 'idempotency.reaper_naptime = 1');
$node->reload;
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM idempotency.abandoned_claims WHERE key = 'background'}),
	'the background reaper records the abandoned claim');
is($recorded->('background'), "reaped|authorized:background|$token|t|t",
	'with what is known of it');

# The records are the extension's data: pg_dump keeps them.
my $dump = $node->basedir . '/abandoned.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres') ],
	'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored'), $dump ],
	'pg_restore');
is($node->safe_psql('restored', q{SELECT string_agg(key, ',' ORDER BY key) FROM idempotency.abandoned_claims}),
	'background,crash,reaped,replaced,rolled-back', 'pg_dump and pg_restore keep the records');

# Reconciled: the operator deletes the rows.
$node->safe_psql('postgres', q{DELETE FROM idempotency.abandoned_claims WHERE scope = 'psp'});
is($node->safe_psql('postgres', q{SELECT count(*) FROM idempotency.abandoned_claims}),
	'0', 'an operator clears reconciled claims');

# A 0.2.0 catalog: no table, the reap and the replacement work as before.
$node->safe_psql('postgres', 'CREATE DATABASE old');
$node->safe_psql('old', q{CREATE EXTENSION pgcrypto;
CREATE EXTENSION idempotency VERSION '0.2.0'});
$abandon->('old', 'reaped');
$abandon->('old', 'replaced');
is($node->safe_psql('old', q{
SELECT outcome FROM idempotency.claim('psp', 'replaced', '\x02', lease => '1 minute');
SELECT idempotency.reap();}), "new\n1", 'a 0.2.0 catalog is served as before');
is($node->safe_psql('old',
	q{SELECT count(*) FROM pg_class WHERE relname = 'abandoned_claims'}),
	'0', 'without the table');

$node->stop;
done_testing();

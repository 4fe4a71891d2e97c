# The per-scope statistics need shared memory, which only a preloaded
# library has, and a table of at least one entry.  Without preload, or with
# idempotency.scope_stats_max = 0, their views and the rollout report say
# which, clearly, while claims and the per-database statistics work on.
# The size takes effect only at a restart, and only a superuser's
# configuration sets it.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('scope_stats_off');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION idempotency CASCADE');

sub error_of
{
	my ($sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return $err;
}

my $claim = q{
	BEGIN;
	SELECT outcome FROM idempotency.claim('m', 'k' || txid_current(), '\x01');
	SELECT idempotency.complete('m', 'k' || txid_current(), 201);
	COMMIT;};

# --- without preload ---------------------------------------------------------
is($node->safe_psql('postgres', $claim), "new\nstored", 'without preload a claim works');
for my $q ('SELECT * FROM idempotency.scope_stats',
	'SELECT * FROM idempotency.scope_stats_info',
	q{SELECT * FROM idempotency.rollout_report(now() - interval '1 day')},
	'SELECT idempotency.scope_stats_reset()')
{
	like(error_of($q),
		qr/ERROR:  55000: idempotency per-scope statistics need the library in shared_preload_libraries.*HINT:  Add 'idempotency' to shared_preload_libraries/s,
		"without preload, $q says it needs preload");
}

# --- preloaded, with no table ------------------------------------------------
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'idempotency'
idempotency.reaper_databases = ''
idempotency.scope_stats_max = 0
});
$node->restart;
is($node->safe_psql('postgres', $claim), "new\nstored", 'with scope_stats_max = 0 a claim works');
is($node->safe_psql('postgres',
		q{SELECT claims_new FROM idempotency.stats WHERE database = 'postgres'}),
	'1', 'and the per-database statistics count it');
for my $q ('SELECT * FROM idempotency.scope_stats',
	q{SELECT * FROM idempotency.rollout_report(now() - interval '1 day')})
{
	like(error_of($q),
		qr/ERROR:  55000: idempotency per-scope statistics are disabled.*HINT:  Set idempotency.scope_stats_max above 0 and restart the server/s,
		"with scope_stats_max = 0, $q says they are disabled");
}

# --- the size: a restart setting, for superusers -----------------------------
is($node->safe_psql('postgres',
		q{SELECT context FROM pg_settings WHERE name = 'idempotency.scope_stats_max'}),
	'postmaster', 'idempotency.scope_stats_max takes effect at a restart');
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET idempotency.scope_stats_max = 100;
	SELECT pg_reload_conf();});
like(error_of('SELECT * FROM idempotency.scope_stats'), qr/are disabled/,
	'a reload does not make the table');
$node->restart;
is($node->safe_psql('postgres', $claim), "new\nstored", 'after the restart');
is($node->safe_psql('postgres', q{
	SELECT i.max_entries || ' ' || s.scope || ' ' || s.claims_new
	  FROM idempotency.scope_stats s, idempotency.scope_stats_info i}),
	'100 m 1', 'the table of 100 entries counts the claim of scope m');
$node->safe_psql('postgres', 'CREATE ROLE app LOGIN');
my ($ret, $out, $err) = $node->psql('postgres',
	'SET idempotency.scope_stats_max = 5', extra_params => [ '-U', 'app' ]);
like($err, qr/cannot be changed without restarting the server|permission denied/,
	'no session sets it');

$node->stop;
done_testing();

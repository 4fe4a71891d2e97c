# The per-scope statistics under tenant churn, and the rollout report of a
# seeded shadow run.  A database in shadow mode, with a table of 8 entries:
# three offending tenants (keys reused with other bodies: would-be 422;
# retries after the replay window: 410; concurrent duplicates: 409), a
# steady clean tenant, a clean tenant seen early and again at the end, and
# 40 one-off tenants, more than the table holds.  Then:
#  - eviction takes the clean entries least recently seen, never an
#    offender; evictions are counted, none of a scope with errors;
#  - the offenders' and the steady tenant's entries are complete since the
#    shadow period began; an entry made after an eviction is complete only
#    since that eviction, so the early tenant, evicted and back, and the
#    one-off tenants are not called safe;
#  - `make rollout-report` prints all of it as a rollout owner reads it;
#  - when every entry has errors, the one with the fewest goes first, and
#    the report warns that an offender was evicted;
#  - the same scope in another database is another entry;
#  - after a restart the statistics start again, and the report of a
#    shadow period that began before it calls nothing safe.
use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $root = File::Spec->rel2abs(dirname(__FILE__) . '/..');

my $node = PostgreSQL::Test::Cluster->new('scope_churn');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'idempotency'
idempotency.reaper_databases = ''
idempotency.scope_stats_max = 8
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION idempotency CASCADE;
	ALTER SYSTEM SET idempotency.mode = 'shadow';
	SELECT pg_reload_conf();
});
$node->poll_query_until('postgres', q{SELECT current_setting('idempotency.mode') = 'shadow'})
  or die 'the server did not switch to shadow mode';

# The shadow period begins once the statistics were reset.
$node->safe_psql('postgres', 'SELECT idempotency.scope_stats_reset()');
my $shadow_since = $node->safe_psql('postgres', 'SELECT now()');

# A shadowed claim, completed: shadow mode records the key.
sub charge
{
	my ($scope, $key, $fp) = @_;
	return qq{
		PERFORM idempotency.claim('$scope', '$key', '$fp');
		PERFORM idempotency.complete('$scope', '$key', 201);
		COMMIT;};
}

# --- the seeded shadow run --------------------------------------------------
# offender_422: an SDK that reuses keys across bodies; offender_410: retries
# after the replay window; the early tenant, once.
my $seed = "DO \$\$ BEGIN\n";
$seed .= charge('offender_422', "k$_", '\x01') . charge('offender_422', "k$_", '\x02') for 1 .. 5;
$seed .= charge('tenant_early', 'e1', '\x01');
$seed .= "END \$\$;";
$node->safe_psql('postgres', $seed);
$node->safe_psql('postgres', q{
	INSERT INTO idempotency.keys (scope, key, fingerprint, state, response_status,
	                              created_at, expires_at, retain_until)
	SELECT 'offender_410', 'late' || g, '\x01', 'completed', 200,
	       now() - interval '2 days', now() - interval '1 day', now() + interval '5 days'
	  FROM generate_series(1, 2) g;
	DO $$ BEGIN
		PERFORM idempotency.claim('offender_410', 'late1', '\x01'); COMMIT;
		PERFORM idempotency.claim('offender_410', 'late2', '\x01'); COMMIT;
	END $$;});

# offender_409: duplicates while the first request is in flight.
my $holder = $node->background_psql('postgres');
$holder->query_safe(q{BEGIN; SELECT outcome FROM idempotency.claim('offender_409', 'k1', '\x01')});
$node->safe_psql('postgres',
	q{SELECT outcome FROM idempotency.claim('offender_409', 'k1', '\x01')}) for 1 .. 3;
$holder->query_safe(q{SELECT idempotency.complete('offender_409', 'k1', 201); COMMIT});
$holder->quit;

# The churn: 40 one-off tenants, the steady tenant claiming after each, and
# the SDK offender once more in the middle.
my $churn = "DO \$\$ BEGIN\n";
for my $i (1 .. 40)
{
	$churn .= charge("one_off_$i", 'k', '\x01') . charge('tenant_steady', "s$i", '\x01');
	$churn .= charge('offender_422', 'k1', '\x03') if $i == 20;
}
$churn .= "END \$\$;";
$node->safe_psql('postgres', $churn);
# The early tenant comes back.
$node->safe_psql('postgres', 'DO $$ BEGIN ' . charge('tenant_early', 'e2', '\x01') . ' END $$');

# --- what the table kept -----------------------------------------------------
is($node->safe_psql('postgres', q{
	SELECT string_agg(scope, ' ' ORDER BY scope) FROM idempotency.scope_stats}),
	'offender_409 offender_410 offender_422 one_off_38 one_off_39 one_off_40 tenant_early tenant_steady',
	'the table keeps the offenders, the steady tenant, the early one back and the latest one-offs');
# 3 offenders, 2 clean tenants, 40 one-offs and the early tenant again
# make 46 entries, of which 8 are kept: each one past the 8th evicted one,
# the early tenant first, then the oldest one-off each time.
is($node->safe_psql('postgres', q{
	SELECT entries || ' ' || evictions || ' ' || evictions_with_errors || ' '
	       || (last_eviction > stats_reset)
	  FROM idempotency.scope_stats_info}),
	'8 38 0 true', 'one entry evicted per new scope past 8, none of them with errors');
is($node->safe_psql('postgres', q{
	SELECT scope || ' ' || shadow_would_ik422 || ' ' || shadow_would_ik410 || ' '
	       || shadow_would_conflict || ' ' || claims_shadow
	  FROM idempotency.scope_stats WHERE scope LIKE 'offender%' ORDER BY scope}),
	"offender_409 0 0 3 4\noffender_410 0 2 0 2\noffender_422 6 0 0 11",
	'the offenders\' counts are whole, the churn\'s included');
is($node->safe_psql('postgres', qq{
	SELECT string_agg(scope || ':' || (tracked_since <= '$shadow_since'), ' ' ORDER BY scope)
	  FROM idempotency.scope_stats}),
	'offender_409:true offender_410:true offender_422:true one_off_38:false one_off_39:false one_off_40:false tenant_early:false tenant_steady:true',
	'entries made before any eviction cover the shadow period; those made after one do not');
is($node->safe_psql('postgres', q{
	SELECT tracked_since <= last_seen AND claims_shadow = 1
	  FROM idempotency.scope_stats WHERE scope = 'tenant_early'}),
	't', 'the early tenant\'s new entry counts only its return');

# --- the report, as make rollout-report prints it -------------------------
sub report
{
	my ($since) = @_;
	my ($stdout, $stderr);
	my $ok = IPC::Run::run(
		[ 'bash', "$root/scripts/rollout-report.sh" ],
		'>', \$stdout, '2>', \$stderr,
		init => sub {
			$ENV{SHADOW_SINCE} = $since;
			$ENV{PGHOST} = $node->host;
			$ENV{PGPORT} = $node->port;
			$ENV{PGDATABASE} = 'postgres';
			delete $ENV{PG_CONFIG};
		});
	ok($ok, 'scripts/rollout-report.sh succeeds') or diag($stderr);
	note($stdout);
	return $stdout;
}

# The lines of the report's table, as "scope | recommendation".
sub recommendations
{
	my ($report) = @_;
	return join "\n", map { /^ (\S+)\s+\|.*\| (investigate: [^|]*?|safe to enforce)\s*$/ ? "$1 | $2" : () }
	  split /\n/, $report;
}

my $report = report($shadow_since);
like($report, qr/^Rollout report for database postgres, shadow period since /m, 'the report names the database and the period');
like($report, qr/^Per-scope statistics since .*: 8 of 8 entries in use, 38 evictions \(0 of them of scopes with errors\), the last at /m,
	'it says what the table holds and what it evicted');
like($report, qr/^Scopes evicted and not seen since are not listed/m, 'and what eviction hides');
unlike($report, qr/WARNING/, 'no warning: the statistics cover the period, no offender was evicted');
my $since_re = qr/tracked only since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00, after the shadow period began/;
my $lines = recommendations($report);
$lines =~ s/$since_re/tracked only since T, after the shadow period began/g;
is($lines, join("\n",
	'offender_422 | investigate: enforce would have refused 6 of its requests (422: 6, 410: 0, 409: 0)',
	'offender_409 | investigate: enforce would have refused 3 of its requests (422: 0, 410: 0, 409: 3)',
	'offender_410 | investigate: enforce would have refused 2 of its requests (422: 0, 410: 2, 409: 0)',
	'one_off_38 | investigate: tracked only since T, after the shadow period began',
	'one_off_39 | investigate: tracked only since T, after the shadow period began',
	'one_off_40 | investigate: tracked only since T, after the shadow period began',
	'tenant_early | investigate: tracked only since T, after the shadow period began',
	'tenant_steady | safe to enforce'),
	'offenders first, then the scopes not tracked all along; only the steady tenant is safe');
like($report, qr/^Summary: 1 of 8 scopes safe to enforce, 7 to investigate\.$/m, 'the summary line');

# --- every entry an offender -------------------------------------------------
$node->safe_psql('postgres', 'SELECT idempotency.scope_stats_reset()');
my $fill = "DO \$\$ BEGIN\n";
for my $i (1 .. 8)
{
	$fill .= charge("bad_$i", "k$_", '\x01') . charge("bad_$i", "k$_", '\x02') for 1 .. $i;
}
$fill .= charge('newcomer', 'k', '\x01') . "END \$\$;";
$node->safe_psql('postgres', $fill);
is($node->safe_psql('postgres', q{
	SELECT string_agg(scope, ' ' ORDER BY scope) FROM idempotency.scope_stats}),
	'bad_2 bad_3 bad_4 bad_5 bad_6 bad_7 bad_8 newcomer',
	'with every entry an offender, the one with the fewest errors goes');
is($node->safe_psql('postgres', q{SELECT evictions || ' ' || evictions_with_errors FROM idempotency.scope_stats_info}),
	'1 1', 'and that eviction is counted as one of a scope with errors');
like(report($shadow_since), qr/^WARNING: 1 entries of scopes with errors were evicted; raise idempotency.scope_stats_max\.$/m,
	'the report warns of it');

# --- another database ------------------------------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', 'CREATE EXTENSION idempotency CASCADE');
$node->safe_psql('postgres', 'SELECT idempotency.scope_stats_reset()');
$node->safe_psql($_, 'DO $$ BEGIN ' . charge('newcomer', 'k', '\x01') . ' END $$') for qw(postgres other);
is($node->safe_psql('postgres', q{
	SELECT string_agg(database || ':' || claims_shadow, ' ' ORDER BY database)
	  FROM idempotency.scope_stats WHERE scope = 'newcomer'}),
	'other:1 postgres:1', 'the same scope in another database is another entry');
is($node->safe_psql('other', q{SELECT count(*) FROM idempotency.rollout_report(now() - interval '1 hour')}),
	'1', 'and the report of a database lists its own scopes only');

# --- a restart --------------------------------------------------------------------
$node->restart;
$node->safe_psql('postgres', 'DO $$ BEGIN ' . charge('tenant_steady', 'after', '\x01') . ' END $$');
$report = report($shadow_since);
like($report, qr/^WARNING: the statistics start after the shadow period began \(a restart or a reset\): no scope is called safe\.$/m,
	'after a restart the report says the statistics no longer cover the period');
like(recommendations($report), qr/^tenant_steady \| investigate: tracked only since /,
	'and does not call the steady tenant safe');

$node->stop;
done_testing();

# Version 0.1.0 updates in place to the current version and ends with the
# catalog of a fresh install.  A 0.1.0 database, filled with completed keys,
# durable claims in progress (one of them with a lease that outlives its
# retention, which 0.1.0 allowed), tombstones, policies and statistics, is
# updated with ALTER EXTENSION idempotency UPDATE and its new constraints
# validated as README.md says.  Then:
#  - every row is kept as it was, except the documented change: a lease
#    that outlived its retention has its retain_until moved to
#    lease_expires_at + (expires_at - created_at);
#  - the statistics are untouched and the keys still answer;
#  - its catalog equals a fresh CREATE EXTENSION in another database of the
#    same cluster: every member object, functions with their definitions,
#    volatility, parallel safety, SECURITY DEFINER and ACLs, types, table
#    columns, constraints (validated), indexes, triggers (and how they are
#    enabled), views, comments, initial privileges, extconfig.
# And an update of a 0.1.0 table holding a row that breaks one of the new
# constraints fails with an error naming that row's key and scope, and
# leaves the extension at 0.1.0 with nothing changed.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('update');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'idempotency'\n");
$node->start;

my $current = $node->safe_psql('postgres',
	q{SELECT default_version FROM pg_available_extensions WHERE name = 'idempotency'});
isnt($current, '0.1.0', "the default version, $current, is newer than 0.1.0");
$node->safe_psql('postgres', 'CREATE DATABASE upd');
$node->safe_psql('upd', q{CREATE EXTENSION idempotency VERSION '0.1.0' CASCADE});
is($node->safe_psql('upd', q{SELECT extversion FROM pg_extension WHERE extname = 'idempotency'}),
	'0.1.0', 'the database starts at 0.1.0');

# --- a 0.1.0 database in use ----------------------------------------------------
$node->safe_psql('upd', q{
	INSERT INTO idempotency.policies (scope, mode, ttl, retain, cache_5xx) VALUES
		('merchant_shadow', 'shadow', NULL, NULL, NULL),
		('merchant_short', NULL, '2 hours', '3 hours', NULL),
		('merchant_5xx', NULL, NULL, NULL, true);
	DO $$
	BEGIN
		FOR n IN 1 .. 200 LOOP
			PERFORM idempotency.claim('merchant_' || (n % 4 + 1), 'key-' || n,
				idempotency.fingerprint('POST', '/v1/charges', jsonb_build_object('amount', n)));
			PERFORM idempotency.complete('merchant_' || (n % 4 + 1), 'key-' || n, 201,
				jsonb_build_object('id', 'ch_' || n), '{"Content-Type": "application/json"}');
			COMMIT;
		END LOOP;
		FOR n IN 1 .. 10 LOOP
			PERFORM idempotency.claim('merchant_' || (n % 4 + 1), 'late-' || n, '\x01');
			PERFORM idempotency.complete('merchant_' || (n % 4 + 1), 'late-' || n, 200);
			COMMIT;
			PERFORM idempotency.claim('merchant_shadow', 'sh-' || n, '\x01');
			PERFORM idempotency.complete('merchant_shadow', 'sh-' || n, 200);
			COMMIT;
			PERFORM idempotency.claim('merchant_short', 'short-' || n, '\x01');
			PERFORM idempotency.complete('merchant_short', 'short-' || n, 200);
			COMMIT;
		END LOOP;
		PERFORM idempotency.claim('merchant_5xx', 'flaky-1', '\x01');
		PERFORM idempotency.complete('merchant_5xx', 'flaky-1', 503);
		COMMIT;
		FOR n IN 1 .. 3 LOOP
			PERFORM idempotency.checkpoint('merchant_1', 'order-' || n, 'authorized',
				(idempotency.claim('merchant_1', 'order-' || n, '\x02', lease => '1 hour')).lease_token);
			COMMIT;
		END LOOP;
		PERFORM idempotency.claim('merchant_2', 'order-long', '\x02', lease => '20 days');
		COMMIT;
	END $$;
	-- tombstones: past the replay window, within retention
	UPDATE idempotency.keys
	   SET created_at = now() - interval '30 hours',
	       expires_at = now() - interval '6 hours',
	       retain_until = now() - interval '30 hours' + interval '7 days'
	 WHERE key LIKE 'late-%';
	-- as 0.1.0 left a long lease: retention 7 days from the claim, the lease 20
	UPDATE idempotency.keys SET retain_until = created_at + interval '7 days'
	 WHERE key = 'order-long';
});
$node->safe_psql('upd', q{
	SELECT outcome FROM idempotency.claim('merchant_1', 'key-4',
		idempotency.fingerprint('POST', '/v1/charges', '{"amount": 4}'::jsonb))});
$node->psql('upd', q{SELECT idempotency.claim('merchant_1', 'key-4', '\x09')});
is($node->safe_psql('upd', q{
	SELECT count(*) FILTER (WHERE lease_expires_at > retain_until) || ' ' ||
	       count(*) FILTER (WHERE state = 'in_progress') || ' ' || count(*)
	  FROM idempotency.keys}),
	'1 4 235', 'the 0.1.0 table: 235 keys, 4 durable claims, one lease outliving its retention');

# Every row as text, with the one documented change applied to the rows
# before the update.
sub rows
{
	my ($db, $moved) = @_;
	my $retain = $moved ? q{
		CASE WHEN state = 'in_progress'
		      AND lease_expires_at + (expires_at - created_at) > retain_until
		     THEN lease_expires_at + (expires_at - created_at)
		     ELSE retain_until END} : 'retain_until';
	return $node->safe_psql($db, qq{
		SELECT count(*) || ' ' || md5(string_agg(ROW(scope, key, fingerprint, state,
		           response_status, response_headers, response_body, recovery_point,
		           lease_token, lease_duration, lease_expires_at, created_at, expires_at,
		           $retain)::text, E'\\n' ORDER BY scope, key))
		  FROM idempotency.keys});
}
my $policies = q{SELECT count(*) || ' ' || md5(string_agg(p::text, E'\n' ORDER BY scope))
	FROM idempotency.policies p};
# (0.2.0 adds the column reaper_skipped_rows; the others must not change)
my $stats = q{SELECT to_jsonb(s) - 'reaper_skipped_rows' FROM idempotency.stats s
               WHERE database = current_database()};
my $long_before = $node->safe_psql('upd', q{
	SELECT lease_expires_at + (expires_at - created_at) FROM idempotency.keys WHERE key = 'order-long'});
my $rows_before = rows('upd', 1);
my $unmoved_before = rows('upd', 0);
my $policies_before = $node->safe_psql('upd', $policies);
my $stats_before = $node->safe_psql('upd', $stats);
is($node->safe_psql('upd', q{
	SELECT claims_new || ' ' || claims_replay || ' ' || errors_ik422
	  FROM idempotency.stats WHERE database = current_database()}),
	'235 1 1', 'the statistics have counted the traffic on 0.1.0');

# --- the update ------------------------------------------------------------------
$node->safe_psql('upd', 'ALTER EXTENSION idempotency UPDATE');
is($node->safe_psql('upd', q{SELECT extversion FROM pg_extension WHERE extname = 'idempotency'}),
	$current, "ALTER EXTENSION UPDATE takes 0.1.0 to $current");
my @to_validate = split /\n/, $node->safe_psql('upd', q{
	SELECT conname FROM pg_constraint
	 WHERE conrelid = 'idempotency.keys'::regclass AND contype = 'c' AND conname LIKE 'keys\_%'
	 ORDER BY conname});
ok(scalar @to_validate > 0, 'the update adds CHECK constraints to idempotency.keys');
$node->safe_psql('upd', "ALTER TABLE idempotency.keys VALIDATE CONSTRAINT $_") for @to_validate;

is(rows('upd', 0), $rows_before,
	'every key is kept, only the lease outliving its retention has its retention moved');
isnt($unmoved_before, $rows_before, '... which did change that row');
is($node->safe_psql('upd', q{SELECT retain_until FROM idempotency.keys WHERE key = 'order-long'}),
	$long_before, '... to lease_expires_at + (expires_at - created_at)');
is($node->safe_psql('upd', $policies), $policies_before, 'every policy is kept');
is($node->safe_psql('upd', $stats), $stats_before, 'the statistics are untouched');
is($node->safe_psql('upd', q{SELECT reaper_skipped_rows FROM idempotency.stats
                              WHERE database = current_database()}),
	'0', 'and the new reaper_skipped_rows counter starts at zero');
is($node->safe_psql('upd', q{
	SELECT outcome || ' ' || response_status || ' ' || (response_body->>'id')
	  FROM idempotency.claim('merchant_1', 'key-4',
		idempotency.fingerprint('POST', '/v1/charges', '{"amount": 4}'::jsonb))}),
	'replay 201 ch_4', 'after the update a completed key replays');
my ($ret, $out, $err) = $node->psql('upd',
	q{SELECT outcome FROM idempotency.claim('merchant_2', 'order-long', '\x02')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/IK409/, 'and the long lease still holds its key');

# --- the catalog equals a fresh install -----------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION idempotency CASCADE');

# The extension's catalog, as name => description, from queries over its
# member objects (pg_depend deptype 'e') and what belongs to them.
my $catalog_sql = <<'EOF';
WITH ext AS (SELECT * FROM pg_extension WHERE extname = 'idempotency'),
m AS (SELECT d.classid, d.objid FROM pg_depend d, ext
       WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid
         AND d.deptype = 'e'),
rels AS (SELECT c.* FROM pg_class c
           JOIN m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid),
catalog(name, description) AS (
SELECT 'member ' || pg_describe_object(classid, objid, 0), '' FROM m
UNION ALL
SELECT 'extension idempotency',
       format('relocatable=%s schema=%s owner=%s', extrelocatable,
              extnamespace::regnamespace, extowner::regrole) FROM ext
UNION ALL
SELECT 'extension requires ' || r.extname, ''
  FROM ext JOIN pg_depend d ON d.classid = 'pg_extension'::regclass AND d.objid = ext.oid
  JOIN pg_extension r ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = r.oid
UNION ALL
SELECT 'extconfig ' || cfg::regclass, format('condition=%L', cond)
  FROM ext, unnest(ext.extconfig, ext.extcondition) AS u(cfg, cond)
UNION ALL
SELECT 'schema ' || nspname,
       format('owner=%s acl=%s comment=%s', nspowner::regrole, nspacl,
              obj_description(n.oid, 'pg_namespace'))
  FROM pg_namespace n, ext WHERE n.oid = ext.extnamespace
UNION ALL
SELECT 'function ' || p.oid::regprocedure,
       format('volatile=%s parallel=%s secdef=%s strict=%s leakproof=%s cost=%s rows=%s owner=%s acl=%s config=%s comment=%s',
              provolatile, proparallel, prosecdef, proisstrict, proleakproof, procost, prorows,
              proowner::regrole, proacl, proconfig, obj_description(p.oid, 'pg_proc'))
       || E'\n' || pg_get_functiondef(p.oid)
  FROM pg_proc p JOIN m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
UNION ALL
SELECT 'type ' || t.oid::regtype,
       format('typtype=%s owner=%s acl=%s comment=%s', typtype, typowner::regrole, typacl,
              obj_description(t.oid, 'pg_type'))
       || coalesce((SELECT string_agg(format(E'\n  %s %s collate %s', a.attname,
                                             format_type(a.atttypid, a.atttypmod),
                                             a.attcollation::regcollation), '' ORDER BY a.attnum)
                      FROM pg_attribute a
                     WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '')
  FROM pg_type t JOIN m ON m.classid = 'pg_type'::regclass AND m.objid = t.oid
UNION ALL
SELECT 'relation ' || r.oid::regclass,
       format('kind=%s persistence=%s replident=%s rls=%s/%s options=%s owner=%s acl=%s comment=%s',
              relkind, relpersistence, relreplident, relrowsecurity, relforcerowsecurity,
              reloptions, relowner::regrole, relacl, obj_description(r.oid, 'pg_class'))
  FROM rels r
UNION ALL
SELECT format('column %s.%s', a.attrelid::regclass, a.attname),
       format('attnum=%s type=%s collation=%s notnull=%s default=%s identity=%s generated=%s acl=%s comment=%s',
              a.attnum, format_type(a.atttypid, a.atttypmod), a.attcollation::regcollation,
              a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid), a.attidentity, a.attgenerated,
              a.attacl, col_description(a.attrelid, a.attnum))
  FROM pg_attribute a JOIN rels r ON r.oid = a.attrelid
  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
 WHERE a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT format('constraint %s.%s', co.conrelid::regclass, co.conname),
       format('type=%s validated=%s deferrable=%s deferred=%s noinherit=%s comment=%s def=%s',
              co.contype, co.convalidated, co.condeferrable, co.condeferred, co.connoinherit,
              obj_description(co.oid, 'pg_constraint'), pg_get_constraintdef(co.oid))
  FROM pg_constraint co JOIN rels r ON r.oid = co.conrelid
UNION ALL
SELECT format('index %s', i.indexrelid::regclass),
       format('primary=%s unique=%s valid=%s comment=%s def=%s', i.indisprimary, i.indisunique,
              i.indisvalid, obj_description(i.indexrelid, 'pg_class'), pg_get_indexdef(i.indexrelid))
  FROM pg_index i JOIN rels r ON r.oid = i.indrelid
UNION ALL
SELECT format('trigger %s.%s', tg.tgrelid::regclass, tg.tgname),
       format('enabled=%s comment=%s def=%s', tg.tgenabled, obj_description(tg.oid, 'pg_trigger'),
              pg_get_triggerdef(tg.oid))
  FROM pg_trigger tg JOIN rels r ON r.oid = tg.tgrelid WHERE NOT tg.tgisinternal
UNION ALL
SELECT format('rule %s.%s', rw.ev_class::regclass, rw.rulename), pg_get_ruledef(rw.oid)
  FROM pg_rewrite rw JOIN rels r ON r.oid = rw.ev_class WHERE r.relkind <> 'v'
UNION ALL
SELECT format('row security policy %s.%s', po.polrelid::regclass, po.polname),
       format('cmd=%s permissive=%s roles=%s using=%s check=%s', po.polcmd, po.polpermissive,
              po.polroles::regrole[], pg_get_expr(po.polqual, po.polrelid),
              pg_get_expr(po.polwithcheck, po.polrelid))
  FROM pg_policy po JOIN rels r ON r.oid = po.polrelid
UNION ALL
SELECT format('view %s', r.oid::regclass), pg_get_viewdef(r.oid) FROM rels r WHERE r.relkind = 'v'
UNION ALL
SELECT 'initial privileges ' || pg_describe_object(ip.classoid, ip.objoid, ip.objsubid),
       format('privtype=%s privs=%s', ip.privtype, ip.initprivs)
  FROM pg_init_privs ip JOIN m ON m.classid = ip.classoid AND m.objid = ip.objoid)
SELECT string_agg(name || chr(31) || coalesce(description, '(null)'), chr(30) ORDER BY name)
  FROM catalog
EOF

sub catalog
{
	my ($db) = @_;
	my %catalog;
	for my $entry (split /\x1e/, $node->safe_psql($db, $catalog_sql))
	{
		my ($name, $description) = split /\x1f/, $entry, 2;
		$catalog{$name} .= "$description\n";    # a name seen twice differs from once
	}
	return \%catalog;
}

# What differs between two catalogs, one readable text per entry: entries
# only in one, and for an entry in both, the lines of each that the other
# lacks.
sub catalog_diff
{
	my ($a, $b, $a_name, $b_name) = @_;
	my @diff;
	for my $name (sort keys %{ { %$a, %$b } })
	{
		if (!exists $b->{$name})
		{
			push @diff, "only in $a_name: $name: $a->{$name}";
		}
		elsif (!exists $a->{$name})
		{
			push @diff, "only in $b_name: $name: $b->{$name}";
		}
		elsif ($a->{$name} ne $b->{$name})
		{
			my %in_a = map { $_ => 1 } split /\n/, $a->{$name};
			my %in_b = map { $_ => 1 } split /\n/, $b->{$name};
			my @lines = (
				(map { "  - $a_name: $_" } grep { !$in_b{$_} } split /\n/, $a->{$name}),
				(map { "  + $b_name: $_" } grep { !$in_a{$_} } split /\n/, $b->{$name}));
			@lines = ('  (the same lines, in another order or number)') unless @lines;
			push @diff, join "\n", "$name differs:", @lines;
		}
	}
	return @diff;
}

my $updated = catalog('upd');
my $fresh = catalog('fresh');
ok(scalar(grep { /^member / } keys %$fresh) >= 10 && exists $fresh->{'extconfig idempotency.keys'},
	'the catalog queries see the extension\'s objects');
my @diff = catalog_diff($updated, $fresh, "updated from 0.1.0", "fresh $current");
is(scalar @diff, 0, "the updated catalog equals a fresh $current install")
  or diag(join "\n", @diff);

# --- an update that meets a row breaking a new constraint ----------------------
$node->safe_psql('postgres', 'CREATE DATABASE broken');
$node->safe_psql('broken', q{
	CREATE EXTENSION idempotency VERSION '0.1.0' CASCADE;
	INSERT INTO idempotency.policies (scope, mode) VALUES ('merchant_shadow', 'shadow');
	BEGIN;
	SELECT outcome FROM idempotency.claim('merchant_1', 'good', '\x01');
	SELECT idempotency.complete('merchant_1', 'good', 201, '{"id": "ch_good"}');
	COMMIT;
	SELECT outcome FROM idempotency.claim('merchant_2', 'order-long', '\x02', lease => '20 days');
	UPDATE idempotency.keys SET retain_until = created_at + interval '7 days' WHERE key = 'order-long';
	-- possible under 0.1.0, which had no constraints
	INSERT INTO idempotency.keys (scope, key, fingerprint, state, response_status,
	                              created_at, expires_at, retain_until)
	VALUES ('merchant_9', 'no-status', '\x01', 'completed', NULL,
	        now(), now() + interval '1 day', now() + interval '7 days');
});
my $broken_catalog = catalog('broken');
my $broken_rows = rows('broken', 0);
my $broken_policies = $node->safe_psql('broken', $policies);
($ret, $out, $err) = $node->psql('broken', 'ALTER EXTENSION idempotency UPDATE',
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
isnt($ret, 0, 'the update of a table with a row breaking a new constraint fails');
like($err, qr/ERROR: .*"no-status".*"merchant_9"|ERROR: .*"merchant_9".*"no-status"/,
	'... with an error naming the key and scope of that row');
is($node->safe_psql('broken', q{SELECT extversion FROM pg_extension WHERE extname = 'idempotency'}),
	'0.1.0', '... and the extension stays at 0.1.0');
@diff = catalog_diff($broken_catalog, catalog('broken'), 'before', 'after');
is(scalar @diff, 0, '... with its catalog unchanged') or diag(join "\n", @diff);
is(rows('broken', 0), $broken_rows, '... and every key unchanged, the long lease\'s retention too');
is($node->safe_psql('broken', $policies), $broken_policies, '... and every policy unchanged');

$node->stop;
done_testing();

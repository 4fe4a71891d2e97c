# A row the reaper cannot delete does not stop the rest: a foreign key
# from the application's charges to the keys (immediate or deferred), or a
# trigger that refuses, makes the row skipped, logged once with its key
# and the reason, and counted in idempotency.stats; every other expired
# row is reaped, and the counters count only what committed.  A run that
# fails as a whole backs off instead of being retried at once.  0.1.0
# crash-looped about 27 times a second on one such row and reaped nothing
# else; with a deferred key it counted 327 rows reaped of 0 deleted.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = PostgreSQL::Test::Cluster->new('contain');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'idempotency'
idempotency.reaper_naptime = 1
idempotency.reaper_databases = 'postgres'
idempotency.reaper_batch_size = 1000
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION idempotency CASCADE;
	CREATE TABLE charges (id serial PRIMARY KEY, scope text COLLATE "C", key text COLLATE "C",
	    FOREIGN KEY (key, scope) REFERENCES idempotency.keys (key, scope));
	CREATE TABLE late_charges (id serial PRIMARY KEY, scope text COLLATE "C", key text COLLATE "C",
	    FOREIGN KEY (key, scope) REFERENCES idempotency.keys (key, scope)
	    DEFERRABLE INITIALLY DEFERRED);
	CREATE FUNCTION keep_vip() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
	    IF OLD.key LIKE 'vip-%' THEN
	        RAISE EXCEPTION 'key % is kept for audit', OLD.key;
	    END IF;
	    RETURN NULL;
	END $$;
	CREATE TRIGGER keep_vip AFTER DELETE ON idempotency.keys
	    FOR EACH ROW EXECUTE FUNCTION keep_vip();
});

sub expired_rows
{
	my ($scope, $prefix, $n) = @_;
	return qq{
		INSERT INTO idempotency.keys (scope, key, fingerprint, state, response_status,
		                              created_at, expires_at, retain_until)
		SELECT '$scope', '$prefix' || g, '\\x01', 'completed', 200, now() - interval '9 days',
		       now() - interval '8 days', now() - interval '1 day' + g * interval '1 microsecond'
		  FROM generate_series(1, $n) g;};
}

sub counter
{
	my ($column) = @_;
	return $node->safe_psql('postgres',
		"SELECT $column FROM idempotency.stats WHERE database = 'postgres'");
}

my $runs0 = counter('reaper_runs');
# 3000 expired rows, among them: 3 referenced by charges (immediate key),
# 2 by late charges (deferred key), 2 that a trigger keeps.
$node->safe_psql('postgres', expired_rows('m', 'k', 3000) . q{
	INSERT INTO charges (scope, key) VALUES ('m', 'k10'), ('m', 'k1500'), ('m', 'k2999');
	INSERT INTO late_charges (scope, key) VALUES ('m', 'k700'), ('m', 'k2000');
	UPDATE idempotency.keys SET key = 'vip-' || key WHERE scope = 'm' AND key IN ('k5', 'k2500');
});

ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 7 FROM idempotency.keys WHERE scope = 'm'}),
	'every expired row is reaped but the seven that cannot be deleted');
is($node->safe_psql('postgres', q{
	SELECT string_agg(key, ',' ORDER BY key) FROM idempotency.keys WHERE scope = 'm'}),
	'k10,k1500,k2000,k2999,k700,vip-k2500,vip-k5', 'and those are the seven');
ok($node->poll_query_until('postgres', q{
	SELECT reaper_skipped_rows = 7 FROM idempotency.stats WHERE database = 'postgres'}),
	'each is counted once in reaper_skipped_rows');
is(counter('reaped_rows'), '2993', 'reaped_rows counts only the rows deleted and committed');

# They stay skipped: no more work, no more log lines, no crash loop.
sleep 4;
my $log = slurp_file($node->logfile);
for my $key (qw(k10 k700 vip-k5))
{
	my @lines = ($log =~ /idempotency reaper: cannot delete key "\Q$key\E" of scope "m", past its retention/g);
	is(scalar @lines, 1, "key $key is logged once");
}
like($log, qr/cannot delete key "k10".*\n.*DETAIL:.*is still referenced from table "charges"/,
	'with the reason: the foreign key');
like($log, qr/cannot delete key "vip-k5".*\n.*DETAIL:  key vip-k5 is kept for audit/,
	'or the trigger');
is(counter('reaper_skipped_rows'), '7', 'and counted once');
unlike($log, qr/terminated by signal|exited with exit code/, 'no reaper crashed');
my $runs = counter('reaper_runs') - $runs0;
cmp_ok($runs, '<=', 12, "one run per naptime or so ($runs runs)");

# Once nothing refers to a row any more it is reaped on a later retry
# (after the hour it is skipped); meanwhile new expired rows are reaped.
$node->safe_psql('postgres', expired_rows('n', 'k', 500));
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM idempotency.keys WHERE scope = 'n'}),
	'new expired rows are reaped past the skipped ones');

# reap() contains the same errors in the caller's transaction (a deferred
# key would fail at the caller's commit: README.md says so).
$node->safe_psql('postgres', expired_rows('r', 'k', 200) . q{
	DELETE FROM late_charges;
	INSERT INTO charges (scope, key) VALUES ('r', 'k50');});
$node->append_conf('postgresql.conf', "idempotency.reaper_databases = ''");
$node->reload;
sleep 2;
is($node->safe_psql('postgres', q{SELECT idempotency.reap(100000)}), '201',
	'reap() deletes all it can and skips the referenced rows');

# A run that fails as a whole (the table changed under it) backs off: with
# a one-second naptime, about 2, 4, 8 s apart, not every second.
$node->append_conf('postgresql.conf', "idempotency.reaper_databases = 'postgres'");
$node->reload;
$node->safe_psql('postgres', 'ALTER TABLE idempotency.keys ALTER COLUMN response_body TYPE json');
my $offset = length(slurp_file($node->logfile));
sleep 10;
my $failures = () = (substr(slurp_file($node->logfile), $offset)
	=~ /ERROR:  table idempotency.keys does not have the shape this library needs/g);
ok($failures >= 1 && $failures <= 4, "failed runs back off ($failures in 10 s)");
$node->safe_psql('postgres',
	'ALTER TABLE idempotency.keys ALTER COLUMN response_body TYPE jsonb USING response_body::jsonb');

$node->stop;
done_testing();

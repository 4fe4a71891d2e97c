# The Citus baseline: what a charge alone costs through the coordinator,
# measured with pgbench on a real cluster (t/citus/CitusCluster.pm), so that
# the extension's cases there can be given as ratios to it (issue 15).  Run
# by scripts/bench-citus.sh (make bench-citus) as the postgres user.
#
# Cases, each one request of a random merchant out of 1000 (as text, the
# distribution column of charges), one round trip per statement:
#   local-txn        BEGIN; INSERT into a plain table on the coordinator; COMMIT
#                    (no Citus routing: what the coordinator does alone)
#   coord-txn        BEGIN; INSERT charge; COMMIT through the coordinator, which
#                    routes the INSERT to the worker holding the merchant
#   coord-function   SELECT bench_charge(merchant, key) through the coordinator,
#                    autocommit: a PL/pgSQL function distributed by merchant and
#                    delegated to that worker, where it inserts the charge
#   ext-txn          BEGIN; claim; INSERT charge; complete; COMMIT through the
#                    coordinator: a new key each time (ext-new), claim and
#                    complete delegated with force_delegation (one hop each)
#   ext-function     SELECT bench_pay(merchant, key): a distributed function
#                    that claims, charges and completes on the worker
# in interleaved rounds; the median tps of each case over the rounds, the
# cases as ratios to coord-txn measured in the same round, and each ext case
# as a ratio to its baseline (ext-txn to coord-txn, ext-function to
# coord-function).  The checks: every
# run succeeds, without failed transactions, and every charge lands.
#
# Environment: BENCH_CITUS_ROUNDS (default 3), BENCH_CITUS_SECONDS (10),
# BENCH_CITUS_CLIENTS (8), BENCH_CITUS_OUT (a file for the markdown table).
use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/../t/citus";
use CitusCluster;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;

my $rounds = $ENV{BENCH_CITUS_ROUNDS} // 3;
my $seconds = $ENV{BENCH_CITUS_SECONDS} // 10;
my $clients = $ENV{BENCH_CITUS_CLIENTS} // 8;

my $cluster = CitusCluster->new(workers => 2, shard_count => 32,
	conf => "synchronous_commit = off\nshared_buffers = 256MB\n");
my $coord = $cluster->coordinator;
$coord->safe_psql('postgres', q{
	CREATE TABLE charges (merchant text NOT NULL, id bigserial, key bigint NOT NULL, amount int NOT NULL,
						  PRIMARY KEY (merchant, id));
	SELECT create_distributed_table('charges', 'merchant');
	CREATE TABLE local_charges (merchant text NOT NULL, id bigserial, key bigint NOT NULL, amount int NOT NULL,
								PRIMARY KEY (merchant, id));
	CREATE FUNCTION bench_charge(merchant text, key bigint) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO charges (merchant, key, amount) VALUES (merchant, key, 1000);
	END $$;
	SELECT create_distributed_function('bench_charge(text, bigint)', 'merchant',
									   colocate_with => 'charges');
	SELECT idempotency.distribute('charges');
	CREATE FUNCTION bench_pay(merchant text, key bigint) RETURNS text LANGUAGE plpgsql AS $$
	DECLARE
		o text;
	BEGIN
		SELECT outcome INTO o FROM idempotency.claim(merchant, key::text, '\x01');
		IF o = 'new' THEN
			INSERT INTO charges (merchant, key, amount) VALUES (merchant, key, 1000);
			PERFORM idempotency.complete(merchant, key::text, 201);
		END IF;
		RETURN o;
	END $$;
	SELECT create_distributed_function('bench_pay(text, bigint)', 'merchant',
									   colocate_with => 'charges');});

my %scripts = (
	'local-txn' => q{
\set m random(1, 1000)
\set key random(0, 9223372036854775806)
BEGIN;
INSERT INTO local_charges (merchant, key, amount) VALUES (:m::text, :key, 1000);
COMMIT;
},
	'coord-txn' => q{
\set m random(1, 1000)
\set key random(0, 9223372036854775806)
BEGIN;
INSERT INTO charges (merchant, key, amount) VALUES (:m::text, :key, 1000);
COMMIT;
},
	'coord-function' => q{
\set m random(1, 1000)
\set key random(0, 9223372036854775806)
SELECT bench_charge(:m::text, :key);
},
	'ext-txn' => q{
\set m random(1, 1000)
\set key random(0, 9223372036854775806)
BEGIN;
SELECT outcome FROM idempotency.claim(:m::text, :key::text, '\x01');
INSERT INTO charges (merchant, key, amount) VALUES (:m::text, :key, 1000);
SELECT idempotency.complete(:m::text, :key::text, 201);
COMMIT;
},
	'ext-function' => q{
\set m random(1, 1000)
\set key random(0, 9223372036854775806)
SELECT bench_pay(:m::text, :key);
});
my @cases = ('local-txn', 'coord-txn', 'coord-function', 'ext-txn', 'ext-function');
my %baseline = ('ext-txn' => 'coord-txn', 'ext-function' => 'coord-function');

my $dir = PostgreSQL::Test::Utils::tempdir;
for my $case (@cases)
{
	open my $fh, '>', "$dir/$case.sql" or die $!;
	print $fh $scripts{$case};
	close $fh;
}

# One pgbench run: its tps, after checking that it went through.
sub run_case
{
	my ($case) = @_;
	my ($out, $err);
	my @cmd = (
		'pgbench', '-n', '-M', 'simple', '-c', $clients, '-j', $clients,
		'-T', $seconds, '-f', "$dir/$case.sql",
		'-h', $coord->host, '-p', $coord->port, 'postgres');
	my $ok = IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	ok($ok, "pgbench $case") or diag($err);
	my ($failed) = $out =~ /number of failed transactions: (\d+)/;
	is($failed // 0, 0, "$case: no failed transactions");
	my ($tps) = $out =~ /tps = ([\d.]+) \(without initial connection time\)/;
	ok(defined $tps, "$case: pgbench reported its tps") or diag($out);
	my ($processed) = $out =~ /number of transactions actually processed: (\d+)/;
	return ($tps // 0, $processed // 0);
}

my %tps;
my %ratio;
my %to_baseline;
my $keyed = 0;    # transactions of the ext cases
my $charged = 0;    # transactions of the cases that insert into charges
for my $round (1 .. $rounds)
{
	my %this;
	for my $case (@cases)
	{
		my $processed;
		($this{$case}, $processed) = run_case($case);
		$charged += $processed if $case ne 'local-txn';
		$keyed += $processed if $baseline{$case};
	}
	for my $case (@cases)
	{
		push @{ $tps{$case} }, $this{$case};
		push @{ $ratio{$case} }, $this{'coord-txn'} ? $this{$case} / $this{'coord-txn'} : 0;
		my $base = $baseline{$case} // $case;
		push @{ $to_baseline{$case} }, $this{$base} ? $this{$case} / $this{$base} : 0;
	}
}

# Every transaction that pgbench counted inserted one charge into a shard.
is($coord->safe_psql('postgres', 'SELECT count(*) FROM charges'), $charged,
	'every charge counted by pgbench is in the shards');
is($coord->safe_psql('postgres', q{SELECT count(*) FROM idempotency.keys WHERE state = 'completed'}),
	$keyed, 'every request of the ext cases has its completed key, in the shards');
is_deeply($cluster->shell_rows, { coordinator => 0, worker1 => 0, worker2 => 0 },
	'no shell of the keys has a row');

sub median
{
	my @v = sort { $a <=> $b } @_;
	return @v % 2 ? $v[$#v / 2] : ($v[@v / 2 - 1] + $v[@v / 2]) / 2;
}

my $version = $coord->safe_psql('postgres',
	q{SELECT version() || ', Citus ' || extversion FROM pg_extension WHERE extname = 'citus'});
my $table = "Citus baseline, $clients clients, $rounds rounds of ${seconds}s, medians; "
  . "coordinator + 2 workers on one machine; $version\n\n"
  . "| case | tps | ratio to coord-txn | ratio to its baseline | tps per round |\n"
  . "|---|---:|---:|---:|---|\n";
for my $case (@cases)
{
	$table .= sprintf("| %s | %.0f | %.2f | %s | %s |\n", $case, median(@{ $tps{$case} }),
		median(@{ $ratio{$case} }),
		$baseline{$case} ? sprintf('%.2f (to %s)', median(@{ $to_baseline{$case} }), $baseline{$case}) : '',
		join(' ', map { sprintf '%.0f', $_ } @{ $tps{$case} }));
}
diag($table);
if (defined $ENV{BENCH_CITUS_OUT})
{
	open my $fh, '>', $ENV{BENCH_CITUS_OUT} or die "$ENV{BENCH_CITUS_OUT}: $!";
	print $fh $table;
	close $fh;
}

done_testing();

# A short, fixed-seed pass of the API fuzzer (fuzz/*.c): random
# scopes, keys, intervals, statuses, tokens and JSON bodies fed to claim,
# complete, release, checkpoint, fingerprint and reap, on two connections.
# It checks that every bad argument is an IK400 and no good one is, that
# every other error is one the contract allows in that state, that claim's
# outcome is new/replay/resume (never NULL) and the one the contract says
# for the keys it models, and that bodies equal as jsonb fingerprint equal
# (and match the documented encoding).  Then: the server never crashed.
# `make fuzz` runs the same fuzzer for longer with a random seed, beside
# sqlsmith (docs/fuzzing.md).
use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# Fixed, so that the pass is the same every time; a failure names the
# iteration to replay (docs/fuzzing.md).
my $seed = 20250601;
my $iterations = 1500;
my $max_seconds = 90;

my $cc = `command -v cc 2>/dev/null`;
chomp $cc;
plan skip_all => 'no C compiler (cc) to build ikfuzz' unless $cc;

my $top = File::Spec->rel2abs(dirname(__FILE__) . '/..');
my $includedir = `pg_config --includedir`;
my $libdir = `pg_config --libdir`;
chomp($includedir, $libdir);
my $ikfuzz = "$PostgreSQL::Test::Utils::tmp_check/ikfuzz";
my ($cout, $cerr) = ('', '');
my $built = IPC::Run::run [
	$cc, '-O1', '-g', '-Wall', "-I$includedir", '-o', $ikfuzz,
	(sort glob("$top/fuzz/*.c")), "-L$libdir", '-lpq'
  ],
  '>', \$cout, '2>', \$cerr;
ok($built, 'ikfuzz builds from fuzz/*.c') or diag($cerr);

my $node = PostgreSQL::Test::Cluster->new('api_fuzz');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'idempotency'
idempotency.reaper_databases = 'fuzz'
idempotency.reaper_naptime = 1
restart_after_crash = off
log_line_prefix = '%m [%p] [%b] %e '
});
$node->start;
$node->safe_psql('postgres',
	q{CREATE DATABASE fuzz TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'});
$node->safe_psql('fuzz', 'CREATE EXTENSION idempotency CASCADE');

my ($out, $err) = ('', '');
my $ran = IPC::Run::run [
	$ikfuzz, '--seed', $seed, '--iterations', $iterations,
	'--seconds', $max_seconds, '--repro',
	"$PostgreSQL::Test::Utils::tmp_check/ikfuzz-repro.sql",
	$node->connstr('fuzz')
  ],
  '>', \$out, '2>', \$err,
  IPC::Run::timeout($max_seconds + 120);
note($out);
ok($ran, "ikfuzz --seed $seed --iterations $iterations: every check held")
  or diag(substr($err, 0, 20000));
like($out, qr/^ikfuzz: \d+ passed, 0 failed$/m, 'ikfuzz reports no failure');
my ($done) = $out =~ /^ikfuzz: (\d+) iterations/m;
ok(defined $done && $done >= 100, 'ikfuzz ran at least 100 iterations')
  or diag("iterations: " . ($done // 'none'));
like($out, qr/ IK400=\d+/, 'bad arguments were fed and refused with IK400');
like($out, qr/ IK409=\d+/, 'conflicts were provoked (IK409)');
like($out, qr/ IK422=\d+/, 'fingerprint mismatches were provoked (IK422)');

# Iterations that once failed (docs/fuzzing.md, "Findings"), each replayed
# alone with --only: its inputs depend on the seed and the iteration only.
# Each names the operation it must run, so that a change to the fuzzer's
# random streams shows here instead of silently replaying something else.
my @replays = (
	# op_args: a durable claim that checkpointed, then a 5xx complete():
	# the row stays in progress with its lease ended, so another token gets
	# IK409 (the model said IK428) and the next claim resumes.
	[ 1301794435, 4920, 'args' ],
);
for my $replay (@replays)
{
	my ($rseed, $only, $op) = @$replay;
	my ($rout, $rerr) = ('', '');
	my $rran = IPC::Run::run [
		$ikfuzz, '--seed', $rseed, '--only', $only,
		'--seconds', $max_seconds, $node->connstr('fuzz')
	  ],
	  '>', \$rout, '2>', \$rerr,
	  IPC::Run::timeout($max_seconds + 120);
	ok($rran, "ikfuzz --seed $rseed --only $only: every check held")
	  or diag(substr($rerr, 0, 20000));
	like($rout, qr/ $op=1\b/, "iteration $only of seed $rseed runs operation $op");
}

# The server answers, and its log has no crash, PANIC, assertion failure
# or sanitizer report.
is($node->safe_psql('fuzz', 'SELECT 1'), '1', 'the server still answers');
open(my $pf, '<', "$top/fuzz/crash-patterns.txt") or die "crash-patterns.txt: $!";
my @patterns = grep { !/^#/ && /\S/ } map { chomp; $_ } <$pf>;
close $pf;
my $crash = join('|', map { "(?:$_)" } @patterns);
my @hits = grep { /$crash/ } split /\n/, slurp_file($node->logfile);
is(scalar(@hits), 0, 'no crash, PANIC, assertion or sanitizer report in the server log')
  or diag(join("\n", @hits[ 0 .. ($#hits < 20 ? $#hits : 20) ]));

$node->stop;
done_testing();

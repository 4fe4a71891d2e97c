# Payments under load through the coordinator, on a real Citus cluster:
# 16 clients over 40 hot keys (20 merchants on two workers, two keys
# each, a new generation of keys every 2 s so that new claims race all the
# time), each request one explicit transaction (claim; if 'new', charge and
# complete; commit), for 20 s with a worker killed (-m immediate) and
# restarted in the middle; then again while one shard moves with
# block_writes and another with logical replication.  After each phase:
# no request was charged twice, every charge has its completed key and
# every completed key its charge, the retries replay, and no node has a
# row in its shell of idempotency.keys.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use CitusCluster;
use POSIX ();
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

my $clients = 16;
my $cluster = CitusCluster->new(workers => 2);
my $coord = $cluster->coordinator;
my ($worker1, $worker2) = $cluster->workers;
$cluster->create_charges;
$cluster->distribute('charges');
my $per_worker = $cluster->values_per_worker('charges', 10, 'm');
my @merchants = (@{ $per_worker->{worker1} }, @{ $per_worker->{worker2} });
my $dir = PostgreSQL::Test::Utils::tempdir;

# One request through a session on the coordinator: the outcome, or
# "error: ..." with the start of the error's message.
sub pay_in
{
	my ($psql, $m, $k) = @_;
	$psql->{stderr} = '';
	my ($out) = $psql->query(qq{
		\\set outcome error
		\\set is_new false
		BEGIN;
		SELECT outcome, outcome = 'new' AS is_new
		  FROM idempotency.claim('$m', '$k', '\\x01') \\gset
		\\if :is_new
		INSERT INTO charges (merchant, key, amount) VALUES ('$m', '$k', 100);
		SELECT idempotency.complete('$m', '$k', 201) \\gset
		\\endif
		COMMIT;
		\\echo :outcome});
	return $psql->{stderr} =~ /ERROR:  (.{0,60})/ ? "error: $1"
	  : $out =~ /^(new|replay)$/m ? $1 : "error: $out";
}

# Clients: forked processes, each with one session on the coordinator,
# paying random keys of the current generation until the deadline, one
# line per request in its file.  They leave with POSIX::_exit, so that the
# test's END blocks (which stop the nodes) run in this process only.
sub start_clients
{
	my ($phase, $seconds) = @_;
	my $start = time;
	my @pids;
	for my $i (1 .. $clients)
	{
		my $pid = fork // die "fork: $!";
		if ($pid == 0)
		{
			Test::More->builder->output('/dev/null');
			srand($$ ^ time);
			open my $log, '>', "$dir/$phase.$i" or POSIX::_exit(1);
			my $psql = $coord->background_psql('postgres', on_error_stop => 0);
			while (time < $start + $seconds)
			{
				my $m = $merchants[ int rand @merchants ];
				my $k = sprintf('%s%d-%d', $phase, int((time - $start) / 2), 1 + int rand 2);
				my $what = pay_in($psql, $m, $k);
				print $log "$m\t$k\t$what\n";
			}
			$psql->quit;
			close $log;
			POSIX::_exit(0);
		}
		push @pids, $pid;
	}
	return \@pids;
}

sub wait_clients
{
	my ($phase, $pids) = @_;
	waitpid($_, 0) for @$pids;
	my %seen;
	for my $i (1 .. $clients)
	{
		open my $log, '<', "$dir/$phase.$i" or die "$dir/$phase.$i: $!";
		while (my $line = <$log>)
		{
			chomp $line;
			my ($m, $k, $what) = split /\t/, $line;
			$seen{keys}{"$m\t$k"} = [ $m, $k ];
			$seen{ $what =~ /^error/ ? 'error' : $what }++;
			$seen{errors}{$what}++ if $what =~ /^error/;
		}
	}
	note("$phase: " . join(', ', map { "$_ $seen{$_}" } grep { !ref $seen{$_} } sort keys %seen));
	note("$phase: $_ x$seen{errors}{$_}") for sort keys %{ $seen{errors} // {} };
	return \%seen;
}

# The charges and completed keys, each as "merchant/key" => count.
sub ledger
{
	my %charges = map { split /\|/ }
	  split /\n/, $coord->safe_psql('postgres',
		q{SELECT merchant || '/' || key, count(*) FROM charges GROUP BY 1});
	my %keys = map { split /\|/ }
	  split /\n/, $coord->safe_psql('postgres',
		q{SELECT scope || '/' || key, count(*) FROM idempotency.keys WHERE state = 'completed' GROUP BY 1});
	return (\%charges, \%keys);
}

sub check_ledger
{
	my ($phase) = @_;
	my ($charges, $keys) = ledger();
	my @twice = grep { $charges->{$_} > 1 } sort keys %$charges;
	is(scalar(@twice), 0, "$phase: no request was charged twice")
	  or diag("charged twice: @twice");
	my @unkeyed = grep { !$keys->{$_} } sort keys %$charges;
	is(scalar(@unkeyed), 0, "$phase: every charge has its completed key")
	  or diag("charges without their key: @unkeyed");
	my @uncharged = grep { !$charges->{$_} } sort keys %$keys;
	is(scalar(@uncharged), 0, "$phase: every completed key has its charge")
	  or diag("keys without their charge: @uncharged");
	is_deeply($cluster->shell_rows, { coordinator => 0, worker1 => 0, worker2 => 0 },
		"$phase: no node has a row in its shell of idempotency.keys");
	return scalar(keys %$charges);
}

# Every key of the phase once more, one at a time: completed keys replay,
# the others are paid now; afterwards every key has exactly one charge.
sub check_retries
{
	my ($phase, $keys) = @_;
	my ($charges) = ledger();
	my $psql = $coord->background_psql('postgres', on_error_stop => 0);
	my @wrong;
	for my $mk (@$keys)
	{
		my ($m, $k) = @$mk;
		my $want = $charges->{"$m/$k"} ? 'replay' : 'new';
		my $got = pay_in($psql, $m, $k);
		push @wrong, "$m/$k: $got (wanted $want)" if $got ne $want;
	}
	$psql->quit;
	is(scalar(@wrong), 0, "$phase: each retry afterwards replays a charged key, or charges a key never charged")
	  or diag(join("\n", @wrong));
	($charges) = ledger();
	is(scalar(grep { ($charges->{"$_->[0]/$_->[1]"} // 0) != 1 } @$keys), 0,
		"$phase: every key is charged exactly once in the end");
}

# --- Phase 1: a worker killed and restarted in the middle of the load.
is(scalar(@merchants), 20, '20 merchants, 10 on each worker');
my $pids = start_clients('kill', 20);
sleep 7;
$worker1->stop('immediate');
note('worker1 killed');
sleep 2;
$worker1->start;
note('worker1 restarted');
my $seen = wait_clients('kill', $pids);
ok($seen->{new} && $seen->{replay}, 'the clients got both new and replayed requests');
ok($seen->{error}, 'and errors while worker1 was down (or the keys were in use)');
my $charged = check_ledger('worker killed');
cmp_ok($charged, '>', 0, 'some requests were charged');
my @hot = values %{ $seen->{keys} };
check_retries('worker killed', \@hot);

# --- Phase 2: shard moves in the middle of the load, one in each mode.
my ($m1, $m2) = ($per_worker->{worker1}[0], $per_worker->{worker2}[0]);
$pids = start_clients('move', 14);
my %move = (
	$m1 => [ $worker1, $worker2, 'block_writes', 3 ],
	$m2 => [ $worker2, $worker1, 'force_logical', 4 ]);
for my $m ($m1, $m2)
{
	my ($from, $to, $mode, $pause) = @{ $move{$m} };
	sleep $pause;
	my ($ret, $out, $err) = $coord->psql('postgres', sprintf(
		q{SELECT citus_move_shard_placement(%s, '127.0.0.1', %d, '127.0.0.1', %d, '%s')},
		$cluster->shard_for('charges', $m), $from->port, $to->port, $mode));
	is($ret, 0, "$m: its shard moves from " . $from->name . ' to ' . $to->name . " ($mode) under load")
	  or diag($err);
	is($cluster->node_for('idempotency.keys', $m)->name, $to->name,
		"$m: the keys' shard is on " . $to->name);
}
$seen = wait_clients('move', $pids);
ok($seen->{new} && $seen->{replay}, 'the clients got both new and replayed requests during the moves');
check_ledger('shards moved');
my @moving = values %{ $seen->{keys} };
check_retries('shards moved', \@moving);
check_retries('after both phases', [ @hot, @moving ]);

done_testing();

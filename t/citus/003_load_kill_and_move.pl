# Payments under load through the coordinator, on a real Citus cluster:
# 16 clients over 40 hot keys (20 merchants on two workers, two keys
# each), each request one explicit transaction (claim; if 'new', charge and
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
$coord->safe_psql('postgres', q{
	CREATE TABLE charges (merchant text NOT NULL, id bigserial, key text NOT NULL, amount int NOT NULL,
						  PRIMARY KEY (merchant, id));
	SELECT create_distributed_table('charges', 'merchant');});
$cluster->distribute('charges');
my $per_worker = $cluster->values_per_worker('charges', 10, 'm');
my @merchants = (@{ $per_worker->{worker1} }, @{ $per_worker->{worker2} });
my $dir = PostgreSQL::Test::Utils::tempdir;

# Clients: forked processes, each paying random keys of @$keys through the
# coordinator until the deadline, one line per request in its file.  They
# leave with POSIX::_exit, so that the test's END blocks (which stop the
# nodes) run in this process only.
sub start_clients
{
	my ($phase, $keys, $seconds) = @_;
	my $deadline = time + $seconds;
	my @pids;
	for my $i (1 .. $clients)
	{
		my $pid = fork // die "fork: $!";
		if ($pid == 0)
		{
			srand($$ ^ time);
			open my $log, '>', "$dir/$phase.$i" or POSIX::_exit(1);
			while (time < $deadline)
			{
				my ($m, $k) = @{ $keys->[ int rand @$keys ] };
				my $result = $cluster->pay($coord, $m, $k);
				my $what = $result =~ /^(new|replay)$/ ? $1
				  : $result =~ /ERROR:  (\w+:)?\s*(.{0,60})/ ? "error: $2"
				  : 'error: ' . substr($result =~ s/\s+/ /gr, 0, 60);
				print $log "$what\n";
			}
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
			$seen{ $line =~ /^error/ ? 'error' : $line }++;
			$seen{errors}{$line}++ if $line =~ /^error/;
		}
	}
	note("$phase: " . join(', ', map { "$_ $seen{$_}" } grep { $_ ne 'errors' } sort keys %seen));
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
	my @wrong;
	for my $mk (@$keys)
	{
		my ($m, $k) = @$mk;
		my $want = $charges->{"$m/$k"} ? 'replay' : 'new';
		my $got = $cluster->pay($coord, $m, $k);
		push @wrong, "$m/$k: $got (wanted $want)" if $got ne $want;
	}
	is(scalar(@wrong), 0, "$phase: each retry afterwards replays a charged key, or charges a key never charged")
	  or diag(join("\n", @wrong));
	($charges) = ledger();
	is(scalar(grep { ($charges->{"$_->[0]/$_->[1]"} // 0) != 1 } @$keys), 0,
		"$phase: every key is charged exactly once in the end");
}

# --- Phase 1: a worker killed and restarted in the middle of the load.
my @hot = map { my $m = $_; map { [ $m, "hot$_" ] } 1 .. 2 } @merchants;
is(scalar(@hot), 40, '40 hot keys over 20 merchants on both workers');
my $pids = start_clients('kill', \@hot, 20);
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
check_retries('worker killed', \@hot);

# --- Phase 2: shard moves in the middle of the load, one in each mode.
my @moving = map { my $m = $_; map { [ $m, "move$_" ] } 1 .. 2 } @merchants;
my ($m1, $m2) = ($per_worker->{worker1}[0], $per_worker->{worker2}[0]);
$pids = start_clients('move', \@moving, 14);
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
check_retries('shards moved', \@moving);
check_retries('after both phases', [ @hot, @moving ]);

done_testing();

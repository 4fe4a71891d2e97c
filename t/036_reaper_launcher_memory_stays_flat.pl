# The reaper launcher runs for the server's life and reads
# idempotency.reaper_databases and pg_database at every look (every 10 s,
# and at once after a reload).  What a look allocates must not outlive it:
# its TopMemoryContext stays the same size over a few hundred looks, as
# pg_log_backend_memory_contexts() reports it in the server log.  Before,
# each look left the parsed list of names behind there.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('launcher');
$node->init;
# A long list, so that a look allocates a good deal: twenty databases, all
# missing but the first (each reported once, then no more).
my $list = join(',', 'postgres', map { "db_missing_$_" } 1 .. 19);
$node->append_conf('postgresql.conf', qq{shared_preload_libraries = 'idempotency'
idempotency.reaper_databases = '$list'
idempotency.reaper_naptime = '1h'
});
$node->start;

my $pid;
$node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'idempotency reaper launcher'})
  or die 'no launcher';
$pid = $node->safe_psql('postgres', q{
	SELECT pid FROM pg_stat_activity
	 WHERE backend_type = 'idempotency reaper launcher'});

# The size of the launcher's TopMemoryContext, from the log line that
# pg_log_backend_memory_contexts() makes it write.
sub top_memory
{
	my $offset = -s $node->logfile;
	$node->safe_psql('postgres', "SELECT pg_log_backend_memory_contexts($pid)");
	$node->wait_for_log(qr/\[$pid\] LOG:  level: \d+; TopMemoryContext: \d+ total/, $offset);
	my $log = slurp_file($node->logfile, $offset);
	$log =~ /\[$pid\] LOG:  level: \d+; TopMemoryContext: (\d+) total/ or die 'no line';
	return $1;
}

# Let the first looks settle what stays (the reports of missing databases).
for (1 .. 5) { $node->safe_psql('postgres', 'SELECT pg_reload_conf()'); usleep(200_000); }
my $before = top_memory();

# Each reload makes the launcher look again at once.
for (1 .. 300)
{
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	usleep(20_000);
}
sleep 1;
my $after = top_memory();
note("launcher TopMemoryContext: $before bytes before, $after after 300 looks");
cmp_ok($after - $before, '<=', 8192,
	"the launcher's TopMemoryContext stays flat over 300 looks ($before -> $after bytes)");
is($node->safe_psql('postgres', qq{SELECT count(*) FROM pg_stat_activity WHERE pid = $pid}),
	'1', 'the same launcher ran throughout');

$node->stop;
done_testing();


=pod

=head1 NAME

CitusCluster - a Citus cluster on loopback for the idempotency TAP tests

=head1 SYNOPSIS

  use FindBin;
  use lib $FindBin::RealBin;
  use CitusCluster;

  my $cluster = CitusCluster->new(workers => 2, shard_count => 8);
  my $coord = $cluster->coordinator;
  $cluster->create_charges;            # charges, distributed by merchant
  $cluster->distribute('charges');      # SELECT idempotency.distribute('charges')
  my $node = $cluster->node_for('charges', 'merchant_1');   # holds its shard

=head1 DESCRIPTION

One coordinator and a number of workers, each a PostgreSQL::Test::Cluster
node with Citus and the idempotency library preloaded (citus first),
listening on 127.0.0.1 as well as on its socket, because the nodes reach
one another by TCP.  Every node gets metadata (Citus's default), so any
node can route queries.  CREATE EXTENSION idempotency and pgstattuple run
on the coordinator, which propagates them to the workers; pgstattuple
reads a table's heap without Citus's planner, which is how shell_rows()
sees what a node's shell relation holds.

The nodes stop when the test ends, as every PostgreSQL::Test::Cluster node
does.

=cut

package CitusCluster;

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;


=pod

=head1 METHODS

=over

=item CitusCluster->new(%params)

Starts the cluster and returns it.  Parameters: C<workers> (default 2),
C<shard_count> (citus.shard_count on the coordinator, default 8: small
clusters need few shards, and each shard costs time to create),
C<conf> (more postgresql.conf lines for every node).

=cut

sub new
{
	my ($class, %params) = @_;
	my $self = bless {
		workers => [],
		shard_count => $params{shard_count} // 8,
		conf => $params{conf},
	}, $class;
	my $nworkers = $params{workers} // 2;

	$self->{coordinator} = _make_node('coordinator', $params{conf});
	push @{ $self->{workers} }, _make_node("worker$_", $params{conf})
	  for 1 .. $nworkers;
	$self->{coordinator}->append_conf('postgresql.conf',
		"citus.shard_count = $self->{shard_count}");
	$_->start for $self->nodes;
	$_->safe_psql('postgres', 'CREATE EXTENSION citus') for $self->nodes;

	my $coord = $self->{coordinator};
	$coord->safe_psql('postgres',
		"SELECT citus_set_coordinator_host('127.0.0.1', " . $coord->port . ')');
	$coord->safe_psql('postgres',
		"SELECT citus_add_node('127.0.0.1', " . $_->port . ')')
	  for @{ $self->{workers} };
	$coord->safe_psql('postgres', q{
		CREATE EXTENSION idempotency CASCADE;
		CREATE EXTENSION pgstattuple;});
	return $self;
}

sub _make_node
{
	my ($name, $conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);

	$node->init;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'citus,idempotency'
listen_addresses = '127.0.0.1'
wal_level = logical
max_prepared_transactions = 20
max_connections = 100
max_wal_senders = 10
max_replication_slots = 10
fsync = off
# the reaper is not what these tests are about (see idempotency.reaper_databases)
idempotency.reaper_databases = ''
});
	$node->append_conf('postgresql.conf', $conf) if defined $conf;
	return $node;
}

=pod

=item $cluster->new_worker($name)

A further node, configured as the others, started and with the citus
extension, but not yet in the cluster: the caller prepares it, then
calls add_worker().

=item $cluster->add_worker($node)

C<citus_add_node()> on the coordinator for that node; returns psql's
exit code and stderr, and counts the node among the workers once it is in.

=cut

sub new_worker
{
	my ($self, $name) = @_;
	my $node = _make_node($name, $self->{conf});
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION citus');
	return $node;
}

sub add_worker
{
	my ($self, $node) = @_;
	my ($ret, $stdout, $stderr) = $self->{coordinator}->psql('postgres',
		"SELECT citus_add_node('127.0.0.1', " . $node->port . ')');
	push @{ $self->{workers} }, $node if $ret == 0;
	return ($ret, $stderr);
}

=pod

=item $cluster->coordinator, $cluster->workers, $cluster->nodes

The coordinator node, the list of worker nodes, and all of them
(coordinator first).

=cut

sub coordinator { return $_[0]->{coordinator}; }
sub workers { return @{ $_[0]->{workers} }; }
sub nodes { my $self = shift; return ($self->{coordinator}, $self->workers); }

=pod

=item $cluster->node_by_port($port)

The node listening on that port.

=cut

sub node_by_port
{
	my ($self, $port) = @_;
	my ($node) = grep { $_->port == $port } $self->nodes;
	die "no node on port $port" unless $node;
	return $node;
}

=pod

=item $cluster->shard_for($table, $value)

The shard id of C<$table> that holds distribution value C<$value> (text).

=cut

sub shard_for
{
	my ($self, $table, $value) = @_;
	return $self->{coordinator}->safe_psql('postgres',
		"SELECT get_shard_id_for_distribution_column('$table', '$value')");
}

=pod

=item $cluster->node_for($table, $value)

The node that holds the shard of C<$table> for C<$value>, as the
coordinator's metadata says now.

=cut

sub node_for
{
	my ($self, $table, $value) = @_;
	my $shard = $self->shard_for($table, $value);
	my $port = $self->{coordinator}->safe_psql('postgres', qq{
		SELECT n.nodeport FROM pg_dist_placement AS p
		  JOIN pg_dist_node AS n USING (groupid)
		 WHERE p.shardid = $shard});
	return $self->node_by_port($port);
}

=pod

=item $cluster->values_per_worker($table, $count, $prefix)

A hash from each worker's name to C<$count> distribution values
(C<$prefix> followed by a number) whose shards of C<$table> that worker
holds, so that a test can cover every worker.

=cut

sub values_per_worker
{
	my ($self, $table, $count, $prefix) = @_;
	my %ports = map { $_->port => $_->name } $self->workers;
	my %values;
	my $rows = $self->{coordinator}->safe_psql('postgres', qq{
		SELECT v, n.nodeport
		  FROM generate_series(1, 200) AS i,
			   LATERAL (SELECT '$prefix' || i AS v) AS s
		  JOIN pg_dist_placement AS p
			ON p.shardid = get_shard_id_for_distribution_column('$table', s.v)
		  JOIN pg_dist_node AS n USING (groupid)
		 ORDER BY i});
	for my $row (split /\n/, $rows)
	{
		my ($value, $port) = split /\|/, $row;
		my $name = $ports{$port} // next;
		push @{ $values{$name} }, $value
		  if @{ $values{$name} // [] } < $count;
	}
	for my $worker ($self->workers)
	{
		die "no value of $table lands on " . $worker->name
		  unless @{ $values{ $worker->name } // [] } == $count;
	}
	return \%values;
}

=pod

=item $cluster->load_distribute

Checks, once, that the extension on the coordinator has
idempotency.distribute() (the install and update scripts create it).

=item $cluster->distribute($table)

Runs C<SELECT idempotency.distribute('$table')> on the coordinator.
Returns psql's stderr (the notices); dies if it fails.

=cut

sub load_distribute
{
	my ($self) = @_;
	return if $self->{distribute_loaded};
	is( $self->{coordinator}->safe_psql('postgres',
			q{SELECT to_regprocedure('idempotency.distribute(regclass)') IS NOT NULL}),
		't', 'the extension has idempotency.distribute()');
	$self->{distribute_loaded} = 1;
	return;
}

sub distribute
{
	my ($self, $table) = @_;
	$self->load_distribute;
	my ($ret, $stdout, $stderr) = $self->{coordinator}->psql('postgres',
		"SELECT idempotency.distribute('$table')");
	die "idempotency.distribute('$table') failed: $stderr" if $ret != 0;
	return $stderr;
}

=pod

=item $cluster->shell_rows($table)

A hash from each node's name to the number of live rows in its own heap of
C<$table> (default C<idempotency.keys>): the shell relation of a
distributed table, which must stay empty.

=cut

sub shell_rows
{
	my ($self, $table) = @_;
	$table //= 'idempotency.keys';
	return {
		map {
			$_->name => $_->safe_psql('postgres',
				"SELECT tuple_count FROM pgstattuple('$table')")
		} $self->nodes
	};
}

=pod

=item $cluster->create_charges

Creates, on the coordinator, the tenants' table that pay() writes,
C<charges (merchant, id, key, amount)> with the primary key
C<(merchant, id)>, distributed by C<merchant>.

=cut

sub create_charges
{
	my ($self) = @_;
	$self->{coordinator}->safe_psql('postgres', q{
		CREATE TABLE charges (merchant text NOT NULL, id bigserial, key text NOT NULL,
							  amount int NOT NULL, PRIMARY KEY (merchant, id));
		SELECT create_distributed_table('charges', 'merchant');});
	return;
}

=pod

=item $cluster->pay($node, $merchant, $key, %params)

One payment request as an API sends it, through C<$node> (default the
coordinator), in one explicit transaction of separate statements: claim
the key; if the outcome is C<'new'>, insert a row into C<charges
(merchant, key, amount)> and complete the key with 201; commit.  The claim
uses the C<SELECT ... FROM idempotency.claim(...)> form, which Citus
delegates.  C<fingerprint> (default C<'\x01'>) and C<amount> (default 100)
can be given.  Returns the outcome, or the error text (psql's stderr) if
any statement failed.

=cut

sub pay
{
	my ($self, $node, $merchant, $key, %params) = @_;
	$node //= $self->{coordinator};
	my $fingerprint = $params{fingerprint} // '\x01';
	my $amount = $params{amount} // 100;
	my ($ret, $stdout, $stderr) = $node->psql('postgres', qq{
		BEGIN;
		SELECT outcome, outcome = 'new' AS is_new
		  FROM idempotency.claim('$merchant', '$key', '$fingerprint') \\gset
		\\if :is_new
		INSERT INTO charges (merchant, key, amount) VALUES ('$merchant', '$key', $amount);
		SELECT idempotency.complete('$merchant', '$key', 201,
									'{"amount": $amount}') \\gset
		\\endif
		COMMIT;
		\\echo :outcome});
	return $ret == 0 ? $stdout : $stderr;
}

=pod

=item $cluster->stop

Stops every node (fast shutdown).

=cut

sub stop
{
	my ($self) = @_;
	$_->stop('fast') for reverse $self->nodes;
	return;
}

=pod

=back

=cut

1;

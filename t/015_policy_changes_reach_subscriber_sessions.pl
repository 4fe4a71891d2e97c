# Policy changes reach a logical-replication subscriber's sessions.  The
# publisher publishes idempotency.policies; the subscriber subscribes with
# copy_data.  A session on the subscriber that has already claimed while
# the table was empty (so that its backend knows the policies to be empty
# and stops reading them) follows, at its next claim, every replicated
# change of the table: an INSERT of mode 'off', an UPDATE to 'shadow', a
# DELETE (back to enforce), and an INSERT after that.  The apply worker
# fires row triggers, not statement triggers, so only a row trigger on
# the table can tell the subscriber's backends.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $publisher = PostgreSQL::Test::Cluster->new('publisher');
$publisher->init(allows_streaming => 'logical');
$publisher->append_conf('postgresql.conf', "shared_preload_libraries = 'idempotency'\n");
$publisher->start;

# No autovacuum on the subscriber: an ANALYZE of the policies table would
# invalidate its relcache entry and tell the sessions by chance.
my $subscriber = PostgreSQL::Test::Cluster->new('subscriber');
$subscriber->init;
$subscriber->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'idempotency'
autovacuum = off
});
$subscriber->start;

$_->safe_psql('postgres', 'CREATE EXTENSION idempotency CASCADE') for $publisher, $subscriber;
$publisher->safe_psql('postgres', q{
	INSERT INTO idempotency.policies (scope, mode) VALUES ('merchant_copied', 'shadow');
	CREATE PUBLICATION policies FOR TABLE idempotency.policies;
});
my $connstr = $publisher->connstr . ' dbname=postgres';
$subscriber->safe_psql('postgres', qq{
	CREATE SUBSCRIPTION policies CONNECTION '$connstr' PUBLICATION policies WITH (copy_data = true)});
$subscriber->wait_for_subscription_sync($publisher, 'policies');

# A completed key per scope on the subscriber: a duplicate of it replays
# under enforce and is 'new' under shadow (counted as shadow_would_replay)
# and under off (not counted).
for my $scope (qw(merchant_1 merchant_copied))
{
	$subscriber->safe_psql('postgres', qq{
		BEGIN;
		SELECT outcome FROM idempotency.claim('$scope', 'done', '\\x01');
		SELECT idempotency.complete('$scope', 'done', 201);
		COMMIT;});
}

# The mode a claim in this session follows for the scope, seen from what
# a duplicate of the completed key gets.
sub mode_seen
{
	my ($session, $scope) = @_;
	my $counted = q{
		SELECT shadow_would_replay FROM idempotency.stats WHERE database = 'postgres';};
	my ($before, $outcome, $after) = split /\n/, $session->query_safe(qq{
		$counted
		BEGIN;
		SELECT outcome FROM idempotency.claim('$scope', 'done', '\\x01');
		ROLLBACK;
		$counted});
	return 'enforce' if $outcome eq 'replay';
	return 'shadow' if $outcome eq 'new' && $after == $before + 1;
	return 'off' if $outcome eq 'new' && $after == $before;
	return "unexpected: $outcome, shadow_would_replay $before -> $after";
}

my $check = $subscriber->background_psql('postgres');
is(mode_seen($check, 'merchant_copied'), 'shadow',
	'the initial copy brings a policy row, and it applies on the subscriber');
$check->quit;

# Apply a change on the publisher and wait until the subscriber shows it.
sub on_publisher
{
	my ($sql, $visible) = @_;
	$publisher->safe_psql('postgres', $sql);
	$publisher->wait_for_catchup('policies');
	$subscriber->poll_query_until('postgres', $visible)
	  or die "the change never reached the subscriber: $sql";
}

on_publisher(q{DELETE FROM idempotency.policies},
	q{SELECT count(*) = 0 FROM idempotency.policies});

# The session under test: it claims while the policies table is empty.
my $session = $subscriber->background_psql('postgres');
is(mode_seen($session, 'merchant_1'), 'enforce',
	'a subscriber session claims while there is no policy: enforce');
is(mode_seen($session, 'merchant_copied'), 'enforce',
	'... also for the scope whose row was deleted');

on_publisher(q{INSERT INTO idempotency.policies (scope, mode) VALUES ('merchant_1', 'off')},
	q{SELECT mode = 'off' FROM idempotency.policies WHERE scope = 'merchant_1'});
is(mode_seen($session, 'merchant_1'), 'off',
	'a replicated INSERT of mode off applies to the next claim of that session');

on_publisher(q{UPDATE idempotency.policies SET mode = 'shadow' WHERE scope = 'merchant_1'},
	q{SELECT mode = 'shadow' FROM idempotency.policies WHERE scope = 'merchant_1'});
is(mode_seen($session, 'merchant_1'), 'shadow',
	'a replicated UPDATE to shadow applies to the next claim of that session');

on_publisher(q{DELETE FROM idempotency.policies WHERE scope = 'merchant_1'},
	q{SELECT count(*) = 0 FROM idempotency.policies});
is(mode_seen($session, 'merchant_1'), 'enforce',
	'a replicated DELETE applies to the next claim of that session: enforce again');

on_publisher(q{INSERT INTO idempotency.policies (scope, mode) VALUES ('merchant_1', 'off')},
	q{SELECT mode = 'off' FROM idempotency.policies WHERE scope = 'merchant_1'});
is(mode_seen($session, 'merchant_1'), 'off',
	'and an INSERT after that applies too, once the session knew the table empty again');
$session->quit;

$subscriber->stop;
$publisher->stop;
done_testing();

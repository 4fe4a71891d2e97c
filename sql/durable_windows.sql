-- A durable claim's row is never answered 'new', replaced or reaped while
-- its lease is live, whatever its windows: a row in progress is kept at
-- least a replay window (ttl) past the end of its lease, and claim,
-- checkpoint and resume move retain_until with the lease.  With 0.1.0's
-- windows, a Stripe-like policy (retain = ttl) let a duplicate claim 'new'
-- over a live lease once retention passed, and the reaper delete it.
INSERT INTO idempotency.policies (scope, ttl, retain)
VALUES ('stripe-like', '1 second', '1 second'), ('stripe-like-5s', '5 seconds', '5 seconds');

BEGIN;
SELECT outcome, lease_token AS t
  FROM idempotency.claim('stripe-like', 'k1', '\x01', lease => '10 seconds') \gset
COMMIT;
SELECT retain_until >= lease_expires_at + interval '1 second' AS kept_past_lease,
       expires_at - created_at AS ttl
  FROM idempotency.keys WHERE scope = 'stripe-like' AND key = 'k1';

-- Past the policy's retention from the first claim, the lease still live.
SELECT pg_sleep(1.5);
SELECT outcome FROM idempotency.claim('stripe-like', 'k1', '\x01');
SELECT idempotency.reap() AS reaped_elsewhere \gset
SELECT count(*) AS still_there FROM idempotency.keys
 WHERE scope = 'stripe-like' AND key = 'k1';

-- checkpoint() renews the lease and moves the windows with it.
SELECT lease_expires_at AS lease_before, retain_until AS retain_before
  FROM idempotency.keys WHERE scope = 'stripe-like' AND key = 'k1' \gset
SELECT idempotency.checkpoint('stripe-like', 'k1', 'authorized', :'t');
SELECT lease_expires_at > :'lease_before' AS lease_renewed,
       retain_until > :'retain_before' AS retention_moved,
       retain_until >= lease_expires_at + interval '1 second' AS kept_past_lease
  FROM idempotency.keys WHERE scope = 'stripe-like' AND key = 'k1';

-- The holder finishes with its own token.
SELECT idempotency.complete('stripe-like', 'k1', 201, '{"id": "ch_1"}', lease_token => :'t');
SELECT state, response_status FROM idempotency.keys WHERE scope = 'stripe-like' AND key = 'k1';

-- A lease longer than the default retention (7 days) is accepted, and the
-- row is kept a replay window (1 day) past it.
BEGIN;
SELECT outcome FROM idempotency.claim('long-lease', 'k1', '\x01', lease => '20 days');
COMMIT;
SELECT lease_expires_at - created_at > interval '19 days' AS lease_20_days,
       retain_until - lease_expires_at >= interval '1 day' AS kept_a_day_past_it,
       expires_at - created_at AS ttl
  FROM idempotency.keys WHERE scope = 'long-lease';

-- A resume after a lapse moves the windows as well.
BEGIN;
SELECT outcome FROM idempotency.claim('stripe-like-5s', 'k2', '\x01', lease => '1 second');
COMMIT;
SELECT pg_sleep(1.2);
BEGIN;
SELECT outcome FROM idempotency.claim('stripe-like-5s', 'k2', '\x01', lease => '30 seconds');
COMMIT;
SELECT retain_until >= lease_expires_at + interval '5 seconds' AS kept_past_lease
  FROM idempotency.keys WHERE scope = 'stripe-like-5s' AND key = 'k2';

DELETE FROM idempotency.keys WHERE scope IN ('stripe-like', 'stripe-like-5s', 'long-lease');
DELETE FROM idempotency.policies WHERE scope IN ('stripe-like', 'stripe-like-5s');

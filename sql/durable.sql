-- Durable claims: a lease, checkpoints, completion in later transactions,
-- resume after the lease lapses, and fencing of the old token.
CREATE TABLE charges (id text PRIMARY KEY, amount int, processor_ref text);
\set VERBOSITY terse

-- Transaction 1: claim with a lease; the row is written in progress and
-- committed before the processor is called.  No commit guard applies.
BEGIN;
SELECT outcome, lease_token IS NOT NULL AS has_token, recovery_point
  FROM idempotency.claim('psp', 'order-1', '\x01', lease => '30 seconds') \gset
\echo :outcome :has_token
INSERT INTO charges VALUES ('ch_1', 1000, NULL);
COMMIT;
SELECT lease_token AS token1 FROM idempotency.keys
 WHERE scope = 'psp' AND key = 'order-1' \gset
SELECT state, recovery_point, lease_duration,
       lease_expires_at > now() + interval '25 seconds' AS lease_running
  FROM idempotency.keys WHERE scope = 'psp' AND key = 'order-1';

-- While the lease is live, a duplicate is IK409 (at once, or after its
-- wait runs out), and another body IK422.
SELECT outcome FROM idempotency.claim('psp', 'order-1', '\x01');
\echo :LAST_ERROR_SQLSTATE
SELECT outcome FROM idempotency.claim('psp', 'order-1', '\x01', wait => '50ms');
\echo :LAST_ERROR_SQLSTATE
SELECT outcome FROM idempotency.claim('psp', 'order-1', '\x02');
\echo :LAST_ERROR_SQLSTATE

-- Transaction 2: the processor authorized; record it.
SELECT idempotency.checkpoint('psp', 'order-1', 'authorized', :'token1');
SELECT recovery_point FROM idempotency.keys WHERE scope = 'psp' AND key = 'order-1';

-- Transaction 3: captured; complete with the token.
BEGIN;
UPDATE charges SET processor_ref = 'pi_123' WHERE id = 'ch_1';
SELECT idempotency.complete('psp', 'order-1', 201, '{"id": "ch_1"}', lease_token => :'token1');
COMMIT;
SELECT state, response_status, lease_token IS NULL AS lease_cleared, recovery_point
  FROM idempotency.keys WHERE scope = 'psp' AND key = 'order-1';
SELECT outcome, response_status, response_body, recovery_point, lease_token
  FROM idempotency.claim('psp', 'order-1', '\x01');
-- The token is spent: the claim is no longer in progress.
SELECT idempotency.checkpoint('psp', 'order-1', 'again', :'token1');
\echo :LAST_ERROR_SQLSTATE

-- A lease that lapses is resumed by the next claim of the same request,
-- with the last recovery point and a new token; the old token is fenced.
SELECT lease_token AS token2 FROM idempotency.claim('psp', 'order-2', '\x01', lease => '200ms') \gset
SELECT idempotency.checkpoint('psp', 'order-2', 'charge_created', :'token2');
SELECT pg_sleep(0.3);
-- another body is still IK422, lapsed or not
SELECT outcome FROM idempotency.claim('psp', 'order-2', '\x02');
\echo :LAST_ERROR_SQLSTATE
SELECT outcome, recovery_point, lease_token AS token3, lease_token <> :'token2' AS new_token,
       first_seen = (SELECT created_at FROM idempotency.keys WHERE key = 'order-2') AS first_seen_kept
  FROM idempotency.claim('psp', 'order-2', '\x01', lease => '1 minute') \gset
\echo :outcome :recovery_point :new_token :first_seen_kept
SELECT lease_duration FROM idempotency.keys WHERE key = 'order-2';
-- The presumed-dead worker wakes up: every call with its token is IK409.
SELECT idempotency.checkpoint('psp', 'order-2', 'captured', :'token2');
\echo :LAST_ERROR_SQLSTATE
SELECT idempotency.complete('psp', 'order-2', 201, '{"by": "old worker"}', lease_token => :'token2');
\echo :LAST_ERROR_SQLSTATE
SELECT idempotency.release('psp', 'order-2', :'token2');
\echo :LAST_ERROR_SQLSTATE
SELECT recovery_point, state FROM idempotency.keys WHERE key = 'order-2';
-- The new holder finishes.
SELECT idempotency.checkpoint('psp', 'order-2', 'captured', :'token3');
SELECT idempotency.complete('psp', 'order-2', 201, '{"by": "new worker"}', lease_token => :'token3');
SELECT outcome, response_body, recovery_point FROM idempotency.claim('psp', 'order-2', '\x01');

-- A resume without a lease keeps the original lease duration.
SELECT lease_token AS token4 FROM idempotency.claim('psp', 'order-3', '\x01', lease => '100ms') \gset
SELECT pg_sleep(0.2);
SELECT outcome, recovery_point IS NULL AS no_recovery_point
  FROM idempotency.claim('psp', 'order-3', '\x01');
SELECT lease_duration FROM idempotency.keys WHERE key = 'order-3';

-- release() with the token frees the key; complete() with a 5xx too.
SELECT lease_token AS token5 FROM idempotency.claim('psp', 'order-4', '\x01', lease => '1 minute') \gset
SELECT idempotency.release('psp', 'order-4', :'token5');
SELECT count(*) AS rows_left FROM idempotency.keys WHERE key = 'order-4';
SELECT lease_token AS token6 FROM idempotency.claim('psp', 'order-4', '\x01', lease => '1 minute') \gset
SELECT idempotency.complete('psp', 'order-4', 502, '{"error": "bad gateway"}', lease_token => :'token6');
SELECT count(*) AS rows_left FROM idempotency.keys WHERE key = 'order-4';

-- A durable claim is closed with its token: without it, IK428.
SELECT lease_token AS token7 FROM idempotency.claim('psp', 'order-5', '\x01', lease => '1 minute') \gset
SELECT idempotency.complete('psp', 'order-5', 201);
\echo :LAST_ERROR_SQLSTATE
SELECT idempotency.release('psp', 'order-5');
\echo :LAST_ERROR_SQLSTATE
-- Any token on a key with no durable claim: IK428.
SELECT idempotency.complete('psp', 'never-claimed', 201, lease_token => :'token7');
\echo :LAST_ERROR_SQLSTATE
SELECT idempotency.checkpoint('psp', 'never-claimed', 'x', :'token7');
\echo :LAST_ERROR_SQLSTATE
-- A random token on a claim in progress is somebody else's: IK409.
SELECT idempotency.checkpoint('psp', 'order-5', 'x', gen_random_uuid());
\echo :LAST_ERROR_SQLSTATE
SELECT idempotency.release('psp', 'order-5', :'token7');

-- A durable claim rolled back with its transaction never happened.
BEGIN;
SELECT outcome FROM idempotency.claim('psp', 'order-6', '\x01', lease => '1 minute');
ROLLBACK;
SELECT count(*) AS rows_left FROM idempotency.keys WHERE key = 'order-6';

-- A durable claim left past its retention is reported (server log) and the
-- key is new again.
SELECT lease_token AS token8 FROM idempotency.claim('psp', 'order-7', '\x01', lease => '1 minute') \gset
SELECT idempotency.checkpoint('psp', 'order-7', 'authorized', :'token8');
UPDATE idempotency.keys
   SET created_at = created_at - interval '8 days', expires_at = expires_at - interval '8 days',
       retain_until = retain_until - interval '8 days', lease_expires_at = now() - interval '8 days'
 WHERE key = 'order-7';
BEGIN;
SELECT outcome FROM idempotency.claim('psp', 'order-7', '\x01');
SELECT idempotency.complete('psp', 'order-7', 201);
COMMIT;
SELECT state, lease_token IS NULL AS lease_cleared FROM idempotency.keys WHERE key = 'order-7';

-- Bad arguments.
SELECT idempotency.claim('psp', 'order-8', '\x01', lease => '0');
\echo :LAST_ERROR_SQLSTATE
SELECT idempotency.checkpoint(NULL, 'k', 'x', gen_random_uuid());
\echo :LAST_ERROR_SQLSTATE
SELECT idempotency.checkpoint('psp', 'k', NULL, gen_random_uuid());
\echo :LAST_ERROR_SQLSTATE
SELECT idempotency.checkpoint('psp', 'k', '', gen_random_uuid());
\echo :LAST_ERROR_SQLSTATE
SELECT idempotency.checkpoint('psp', 'k', repeat('x', 1025), gen_random_uuid());
\echo :LAST_ERROR_SQLSTATE
SELECT idempotency.checkpoint('psp', 'k', 'x', NULL);
\echo :LAST_ERROR_SQLSTATE

DROP TABLE charges;

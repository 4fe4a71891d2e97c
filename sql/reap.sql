-- reap() deletes rows past retention, oldest first, at most max_rows, in
-- the caller's transaction; rows inside retention stay; an abandoned
-- durable claim is reported.
\set VERBOSITY terse
-- Start from no expired rows: earlier tests in this database leave some.
SELECT idempotency.reap(1000000) >= 0 AS cleared;
SET idempotency.reaper_batch_size = 3;

-- 10 completed keys past retention, 2 tombstones inside it, 2 live keys,
-- and a durable claim abandoned past retention.
INSERT INTO idempotency.keys (scope, key, fingerprint, state, response_status,
                              created_at, expires_at, retain_until)
SELECT 'reap', 'gone-' || g, '\x01', 'completed', 200,
       now() - interval '9 days', now() - interval '8 days', now() - interval '2 days' + g * interval '1 minute'
  FROM generate_series(1, 10) g;
INSERT INTO idempotency.keys (scope, key, fingerprint, state, response_status,
                              created_at, expires_at, retain_until)
SELECT 'reap', 'tombstone-' || g, '\x01', 'completed', 200,
       now() - interval '2 days', now() - interval '1 day', now() + interval '5 days'
  FROM generate_series(1, 2) g;
BEGIN;
SELECT outcome FROM idempotency.claim('reap', 'live-1', '\x01');
SELECT idempotency.complete('reap', 'live-1', 200);
SELECT outcome FROM idempotency.claim('reap', 'live-2', '\x01');
SELECT idempotency.complete('reap', 'live-2', 200);
COMMIT;
SELECT lease_token AS token FROM idempotency.claim('reap', 'abandoned', '\x01', lease => '1 minute') \gset
SELECT idempotency.checkpoint('reap', 'abandoned', 'authorized', :'token');
UPDATE idempotency.keys
   SET created_at = now() - interval '9 days', expires_at = now() - interval '8 days',
       retain_until = now() - interval '3 days', lease_expires_at = now() - interval '9 days'
 WHERE key = 'abandoned';

-- At most max_rows, the oldest first: the abandoned claim and gone-1..3,
-- in batches of 3; the abandoned claim is reported.
SET client_min_messages = log;
SELECT idempotency.reap(4) AS reaped;
RESET client_min_messages;
SELECT key FROM idempotency.keys WHERE scope = 'reap' ORDER BY retain_until, key;

-- Nothing is committed by reap() itself: a rollback brings the rows back.
BEGIN;
SELECT idempotency.reap() AS reaped;
ROLLBACK;
SELECT count(*) AS rows_after_rollback FROM idempotency.keys WHERE scope = 'reap';

-- The default takes the rest; tombstones and live keys stay, and behave.
SELECT idempotency.reap() AS reaped;
SELECT key FROM idempotency.keys WHERE scope = 'reap' ORDER BY key;
SELECT idempotency.reap() AS reaped_again;
SELECT outcome FROM idempotency.claim('reap', 'tombstone-1', '\x01');
\echo :LAST_ERROR_SQLSTATE
SELECT outcome FROM idempotency.claim('reap', 'live-1', '\x01');
-- A reaped key is new.
BEGIN;
SELECT outcome FROM idempotency.claim('reap', 'gone-5', '\x01');
SELECT idempotency.release('reap', 'gone-5');
COMMIT;

-- Bad arguments.
SELECT idempotency.reap(0);
\echo :LAST_ERROR_SQLSTATE
SELECT idempotency.reap(-5);
\echo :LAST_ERROR_SQLSTATE
SELECT idempotency.reap(NULL);
\echo :LAST_ERROR_SQLSTATE
RESET idempotency.reaper_batch_size;

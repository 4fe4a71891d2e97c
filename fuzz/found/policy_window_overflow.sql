-- Found by ikfuzz (fuzz/ikfuzz.c, operation policy_replay: "a key stored
-- a moment ago under ttl 0 mons 0 days 9223372036854775807 microseconds
-- ... does not replay"; seed 5, iteration 1498, on 0785d20).
-- Not a crash: a wrong answer, the one the extension exists to prevent.
-- Fixed by 12a82b7 (windows saturate at 'infinity'); sql/expiry.sql keeps
-- the case.  Kept here as the fuzzer's reproducer.
--
-- A policy row whose replay window (ttl) or retention (retain) ends past
-- the end of timestamptz's range made the stored row's expires_at /
-- retain_until overflow: created_at + window in microseconds wrapped
-- around int64 in TimestampTzPlusMilliseconds (src/claim.c,
-- store_response() and start_durable_claim()).  The wrapped times lay in
-- the past, so:
--   * a retry of the completed key got outcome 'new' instead of 'replay'
--     (a second charge), and reap() / the reaper deleted the row at once;
--   * SELECT * FROM idempotency.keys failed with "timestamp out of range".
-- The table's CHECK (ttl > '0', retain > '0', retain >= ttl) lets such a
-- row in.
--
-- Run in a database with the extension: psql -X -f fuzz/found/policy_window_overflow.sql
-- Expected now / before the fix, in the comments.
\set ON_ERROR_STOP 0
INSERT INTO idempotency.policies (scope, mode, ttl, retain)
VALUES ('overflow', 'enforce', '300000 years', '300000 years');

BEGIN;
SELECT outcome FROM idempotency.claim('overflow', 'k', '\x01');   -- new
SELECT idempotency.complete('overflow', 'k', 201, '{"id": 1}');    -- stored
COMMIT;

-- expected: t, t; before the fix: f, t (expires_at wrapped into the past)
SELECT created_at < expires_at AS expires_after_creation,
       expires_at <= retain_until AS retained_after_expiry
  FROM idempotency.keys WHERE scope = 'overflow';

-- expected: infinity; before the fix: ERROR:  timestamp out of range
SELECT expires_at FROM idempotency.keys WHERE scope = 'overflow';

-- expected: replay | 201 | {"id": 1}; before the fix: new (a second charge)
BEGIN;
SELECT outcome, response_status, response_body
  FROM idempotency.claim('overflow', 'k', '\x01');
ROLLBACK;

-- clean up
DELETE FROM idempotency.keys WHERE scope = 'overflow';
DELETE FROM idempotency.policies WHERE scope = 'overflow';

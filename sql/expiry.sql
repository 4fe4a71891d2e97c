-- Inside ttl a key replays; between ttl and retain a claim is IK410 with
-- the original time in its DETAIL; after retain the key is new again.
\set VERBOSITY terse
SHOW idempotency.ttl;
SHOW idempotency.retain;

BEGIN;
SELECT outcome FROM idempotency.claim('exp', 'k1', '\x01');
SELECT idempotency.complete('exp', 'k1', 201, '{"id": "ch_old"}');
COMMIT;

-- The windows are stored from the GUCs at the first claim.
SELECT expires_at - created_at AS ttl, retain_until - created_at AS retain
  FROM idempotency.keys WHERE scope = 'exp' AND key = 'k1';

-- Past the replay window: IK410, whether the body matches or not.
UPDATE idempotency.keys
   SET created_at = created_at - interval '2 days',
       expires_at = expires_at - interval '2 days',
       retain_until = retain_until - interval '2 days'
 WHERE scope = 'exp' AND key = 'k1';
SELECT outcome FROM idempotency.claim('exp', 'k1', '\x01');
\echo :LAST_ERROR_SQLSTATE
-- A different fingerprint is still a different request: IK422 first.
SELECT outcome FROM idempotency.claim('exp', 'k1', '\x02');
\echo :LAST_ERROR_SQLSTATE

-- The DETAIL gives the original time.
DO $$
DECLARE
    detail text;
    first_used timestamptz;
BEGIN
    SELECT created_at INTO first_used FROM idempotency.keys
     WHERE scope = 'exp' AND key = 'k1';
    PERFORM idempotency.claim('exp', 'k1', '\x01');
EXCEPTION WHEN SQLSTATE 'IK410' THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RAISE NOTICE 'detail names the first use: %',
        position(to_char(first_used, 'YYYY-MM-DD HH24:MI:SS') IN detail) > 0;
END $$;

-- Past retention the key is new, and completing it replaces the old row.
UPDATE idempotency.keys
   SET created_at = created_at - interval '7 days',
       expires_at = expires_at - interval '7 days',
       retain_until = retain_until - interval '7 days'
 WHERE scope = 'exp' AND key = 'k1';
BEGIN;
SELECT outcome FROM idempotency.claim('exp', 'k1', '\x02');
SELECT idempotency.complete('exp', 'k1', 201, '{"id": "ch_new"}');
COMMIT;
SELECT outcome, response_body FROM idempotency.claim('exp', 'k1', '\x02');
SELECT count(*) AS rows_for_key, bool_and(created_at = retain_until - interval '7 days') AS fresh_windows
  FROM idempotency.keys WHERE scope = 'exp' AND key = 'k1';

-- A key past retention that is released keeps its old row for the reaper.
UPDATE idempotency.keys
   SET created_at = now() - interval '2 seconds',
       expires_at = now() - interval '1 second',
       retain_until = now() - interval '1 second'
 WHERE scope = 'exp' AND key = 'k1';
BEGIN;
SELECT outcome FROM idempotency.claim('exp', 'k1', '\x03');
SELECT idempotency.release('exp', 'k1');
COMMIT;
SELECT response_body FROM idempotency.keys WHERE scope = 'exp' AND key = 'k1';

-- Real time: a one-second replay window with a three-second retention.
SET idempotency.ttl = '1s';
SET idempotency.retain = '3s';
BEGIN;
SELECT outcome FROM idempotency.claim('exp', 'k2', '\x01');
SELECT idempotency.complete('exp', 'k2', 200);
COMMIT;
SELECT outcome FROM idempotency.claim('exp', 'k2', '\x01');
SELECT pg_sleep(1.2);
SELECT outcome FROM idempotency.claim('exp', 'k2', '\x01');
\echo :LAST_ERROR_SQLSTATE
SELECT pg_sleep(2);
BEGIN;
SELECT outcome FROM idempotency.claim('exp', 'k2', '\x01');
SELECT idempotency.release('exp', 'k2');
COMMIT;

-- retain = ttl gives Stripe's behaviour: new as soon as the window ends.
SET idempotency.retain = '1s';
BEGIN;
SELECT outcome FROM idempotency.claim('exp', 'k3', '\x01');
SELECT idempotency.complete('exp', 'k3', 200);
COMMIT;
SELECT pg_sleep(1.2);
BEGIN;
SELECT outcome FROM idempotency.claim('exp', 'k3', '\x01');
SELECT idempotency.release('exp', 'k3');
COMMIT;

-- A retention shorter than the replay window is a configuration mistake:
-- it is raised to the window, with a WARNING (windows_never_fail_closed).
SET idempotency.ttl = '1h';
SET idempotency.retain = '1min';
BEGIN;
SELECT outcome FROM idempotency.claim('exp', 'k4', '\x01');
SELECT idempotency.release('exp', 'k4');
COMMIT;
RESET idempotency.ttl;
RESET idempotency.retain;

-- The GUCs take units and reject nonsense.
SET idempotency.ttl = '0';
SET idempotency.ttl = 'forever';
SET idempotency.ttl = '2d';
SHOW idempotency.ttl;
RESET idempotency.ttl;

-- A window that ends past the last representable timestamp never ends; it
-- must not wrap around into the past (found by the API fuzzer).
INSERT INTO idempotency.policies (scope, ttl, retain)
VALUES ('forever', '300000 years', '300000 years');
BEGIN;
SELECT outcome FROM idempotency.claim('forever', 'k', '\x01');
SELECT idempotency.complete('forever', 'k', 201, '{"id": 1}');
COMMIT;
SELECT expires_at, retain_until FROM idempotency.keys WHERE scope = 'forever';
SELECT outcome, response_body FROM idempotency.claim('forever', 'k', '\x01');
SELECT lease_token IS NOT NULL AS has_token
  FROM idempotency.claim('forever', 'durable', '\x01', lease => '1 minute');
SELECT expires_at, retain_until FROM idempotency.keys WHERE scope = 'forever' AND key = 'durable';
SELECT idempotency.reap() >= 0 AS reaped;
SELECT count(*) AS kept FROM idempotency.keys WHERE scope = 'forever';
DELETE FROM idempotency.keys WHERE scope = 'forever';
DELETE FROM idempotency.policies WHERE scope = 'forever';

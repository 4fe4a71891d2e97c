-- One transaction holds at most idempotency.max_key_locks key locks (by
-- default half of max_locks_per_transaction): each takes an entry of the
-- lock table all sessions share, and 0.1.0 let one transaction of about
-- 13,000 claims lock every new connection out ("out of shared memory").
-- Past the limit a claim is SQLSTATE 53400 naming the limit; complete()
-- keeps its key's lock, so locks are counted, not open claims; a rolled
-- back savepoint gives its locks back.
SHOW max_locks_per_transaction;
CREATE FUNCTION pg_temp.claim_many(n int, first int DEFAULT 1) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    detail text;
BEGIN
    FOR i IN first .. first + n - 1 LOOP
        PERFORM idempotency.claim('locks', 'k' || i, '\x01');
        PERFORM idempotency.complete('locks', 'k' || i, 201);
    END LOOP;
    RETURN 'claimed ' || n;
EXCEPTION WHEN configuration_limit_exceeded THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ': ' || SQLERRM || ' / ' || detail;
END $$;

BEGIN;
SELECT pg_temp.claim_many(32);
SELECT pg_temp.claim_many(1, 33);
ROLLBACK;

-- replays take no lock, and a key claimed twice holds one lock
BEGIN;
SELECT pg_temp.claim_many(31);
SELECT outcome FROM idempotency.claim('locks', 'k1', '\x01');
SELECT pg_temp.claim_many(1, 32);
SELECT pg_temp.claim_many(1, 33);
COMMIT;
BEGIN;
SELECT count(*) AS replays FROM generate_series(1, 32) i,
       idempotency.claim('locks', 'k' || i, '\x01') c WHERE c.outcome = 'replay';
SELECT pg_temp.claim_many(32, 100);
ROLLBACK;

-- a savepoint rolled back gives its locks back
BEGIN;
SAVEPOINT s;
SELECT pg_temp.claim_many(32, 200);
ROLLBACK TO SAVEPOINT s;
SELECT pg_temp.claim_many(32, 300);
ROLLBACK;

-- the limit is a superuser's setting
BEGIN;
SET LOCAL idempotency.max_key_locks = 40;
SELECT pg_temp.claim_many(40, 400);
SELECT pg_temp.claim_many(1, 440);
ROLLBACK;

DELETE FROM idempotency.keys WHERE scope = 'locks';

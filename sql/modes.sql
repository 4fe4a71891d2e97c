-- Rollout: idempotency.mode, idempotency.enforce_percent and per-scope
-- rows of idempotency.policies; shadow mode counts what enforce would do.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.counters() RETURNS TABLE (counter text, value bigint)
LANGUAGE sql AS $$
    SELECT c.key, c.value::bigint
      FROM idempotency.stats s, jsonb_each_text(to_jsonb(s)) c
     WHERE s.database = current_database()
       AND (c.key LIKE 'claims_%' OR c.key LIKE 'shadow_%' OR c.key LIKE 'errors_%'
            OR c.key IN ('completions', 'releases', 'releases_5xx'))
$$;
CREATE TEMP TABLE before AS SELECT * FROM pg_temp.counters();
-- What changed since the last call, and start again.
CREATE FUNCTION pg_temp.delta() RETURNS TABLE (counter text, delta bigint)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
        SELECT n.counter, n.value - coalesce(b.value, 0) FROM pg_temp.counters() n
          LEFT JOIN before b USING (counter)
         WHERE n.value <> coalesce(b.value, 0) ORDER BY 1;
    TRUNCATE before;
    INSERT INTO before SELECT * FROM pg_temp.counters();
END $$;

SHOW idempotency.mode;
SHOW idempotency.enforce_percent;

-- A key completed under enforce.
BEGIN;
SELECT outcome FROM idempotency.claim('shop', 'k1', '\x01');
SELECT idempotency.complete('shop', 'k1', 201, '{"id": 1}');
COMMIT;
SELECT * FROM pg_temp.delta();

-- off: claim says 'new' and records nothing; no lock, no guard, no row.
SET idempotency.mode = 'off';
BEGIN;
SELECT outcome, response_body FROM idempotency.claim('shop', 'k1', '\x01');
SELECT count(*) AS idempotency_locks FROM pg_locks
 WHERE locktype = 'advisory' AND objsubid = 18763 AND pid = pg_backend_pid();
SELECT idempotency.complete('shop', 'k1', 201, '{"id": 2}');
SELECT outcome FROM idempotency.claim('shop', 'off-key', '\x01');
COMMIT;
SELECT count(*) AS off_rows FROM idempotency.keys WHERE scope = 'shop' AND key = 'off-key';
SELECT lease_token IS NOT NULL AS has_token FROM idempotency.claim('shop', 'off-lease', '\x01', lease => '1 minute');
SELECT count(*) AS off_rows FROM idempotency.keys WHERE scope = 'shop' AND key = 'off-lease';
SELECT * FROM pg_temp.delta();

-- shadow: always 'new', never an error or a wait, but counted.
SET idempotency.mode = 'shadow';
BEGIN;
SELECT outcome, response_body FROM idempotency.claim('shop', 'k1', '\x01');   -- would replay
SELECT idempotency.complete('shop', 'k1', 201, '{"id": 3}');
COMMIT;
SELECT response_body FROM idempotency.keys WHERE scope = 'shop' AND key = 'k1';   -- the first response is kept
BEGIN;
SELECT outcome FROM idempotency.claim('shop', 'k1', '\x02');   -- would be IK422
SELECT idempotency.release('shop', 'k1');
COMMIT;
UPDATE idempotency.keys SET created_at = now() - interval '2 seconds', expires_at = now() - interval '1 second' WHERE scope = 'shop' AND key = 'k1';
SELECT outcome FROM idempotency.claim('shop', 'k1', '\x01');   -- would be IK410; no guard
BEGIN;
SELECT outcome FROM idempotency.claim('shop', 'k2', '\x01');
SELECT outcome FROM idempotency.claim('shop', 'k2', '\x01');   -- would conflict
SELECT idempotency.complete('shop', 'k2', 503);                 -- not recorded
COMMIT;
BEGIN;
SELECT outcome FROM idempotency.claim('shop', 'k3', '\x01');
SELECT idempotency.complete('shop', 'k3', 200, '{"shadow": true}');   -- recorded
COMMIT;
SELECT key, response_body FROM idempotency.keys WHERE scope = 'shop' AND key IN ('k2', 'k3') ORDER BY key;
SELECT * FROM pg_temp.delta();

-- enforce again: what shadow recorded is enforced.
SET idempotency.mode = 'enforce';
SELECT outcome, response_body FROM idempotency.claim('shop', 'k3', '\x01');
SELECT outcome FROM idempotency.claim('shop', 'k3', '\x02');
SELECT * FROM pg_temp.delta();

-- A policy row overrides the mode for its scope, and takes effect at the
-- next claim.
SET idempotency.mode = 'shadow';
INSERT INTO idempotency.policies (scope, mode) VALUES ('shop', 'enforce');
SELECT outcome FROM idempotency.claim('shop', 'k3', '\x02');
\echo :LAST_ERROR_SQLSTATE
UPDATE idempotency.policies SET mode = 'off' WHERE scope = 'shop';
SELECT outcome FROM idempotency.claim('shop', 'k3', '\x02');
-- NULL mode keeps the default (shadow here).
UPDATE idempotency.policies SET mode = NULL WHERE scope = 'shop';
SELECT outcome FROM idempotency.claim('shop', 'k3', '\x02');
RESET idempotency.mode;

-- Per-scope windows and the 5xx rule.
INSERT INTO idempotency.policies (scope, ttl, retain, cache_5xx)
VALUES ('strict', '1 hour', '2 hours', true);
BEGIN;
SELECT outcome FROM idempotency.claim('strict', 'k', '\x01');
SELECT idempotency.complete('strict', 'k', 503, '{"error": "declined upstream"}');
COMMIT;
SELECT response_status, expires_at - created_at AS ttl, retain_until - created_at AS retain
  FROM idempotency.keys WHERE scope = 'strict';
SELECT outcome, response_status FROM idempotency.claim('strict', 'k', '\x01');

-- Bad policies are refused.
INSERT INTO idempotency.policies (scope, mode) VALUES ('bad', 'sometimes');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO idempotency.policies (scope, ttl) VALUES ('bad', '-1 hour');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO idempotency.policies (scope, ttl, retain) VALUES ('bad', '2 days', '1 day');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO idempotency.policies (scope) VALUES ('');
\echo :LAST_ERROR_SQLSTATE
-- A retention that ends up shorter than the window, with the defaults, is
-- raised to the window with a WARNING (windows_never_fail_closed).
INSERT INTO idempotency.policies (scope, ttl) VALUES ('bad', '30 days');
BEGIN;
SELECT outcome FROM idempotency.claim('bad', 'k', '\x01');
SELECT idempotency.release('bad', 'k');
COMMIT;
SET idempotency.mode = 'bogus';
SET idempotency.enforce_percent = 101;

-- enforce_percent: a stable, hash-chosen share of the scopes without a
-- policy row is enforced, the rest shadowed; a larger share only adds.
-- The transaction below claims hundreds of keys (see every_byte.sql).
SET idempotency.max_key_locks = 1000;
CREATE FUNCTION pg_temp.enforced(percent int) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    s text;
BEGIN
    PERFORM set_config('idempotency.enforce_percent', percent::text, true);
    FOR s IN SELECT 'tenant-' || g FROM generate_series(1, 400) g LOOP
        -- under enforce a second claim in one transaction is IK409
        BEGIN
            PERFORM idempotency.claim(s, 'probe', '\x01');
            PERFORM idempotency.claim(s, 'probe', '\x01');
        EXCEPTION WHEN SQLSTATE 'IK409' THEN
            RETURN NEXT s;
        END;
    END LOOP;
END $$;
BEGIN;
CREATE TEMP TABLE at10 AS SELECT pg_temp.enforced(10) AS scope;
CREATE TEMP TABLE at50 AS SELECT pg_temp.enforced(50) AS scope;
CREATE TEMP TABLE at50again AS SELECT pg_temp.enforced(50) AS scope;
SELECT (SELECT count(*) FROM pg_temp.enforced(0)) AS at_0,
       (SELECT count(*) FROM at10) AS at_10,
       (SELECT count(*) FROM at50) AS at_50,
       (SELECT count(*) FROM pg_temp.enforced(100)) AS at_100;
SELECT count(*) AS at10_not_at50 FROM (SELECT scope FROM at10 EXCEPT SELECT scope FROM at50) x;
SELECT count(*) AS unstable FROM (SELECT scope FROM at50 EXCEPT SELECT scope FROM at50again) x;
ROLLBACK;

DELETE FROM idempotency.policies;

-- Who can do what, for every function and table of the extension: the
-- superuser; the owner of the database (which grants nothing here); an
-- application role with the documented grants; a monitoring role with the
-- documented grants; and a role with none.  Each call is tried for real
-- and rolled back: "ok" means the privilege check passed (the call may
-- still have failed for another reason), "denied" means SQLSTATE 42501.
SET client_min_messages = warning;
DROP ROLE IF EXISTS idem_dbowner;
DROP ROLE IF EXISTS idem_app;
DROP ROLE IF EXISTS idem_monitor;
DROP ROLE IF EXISTS idem_nobody;
RESET client_min_messages;
CREATE ROLE idem_dbowner;
CREATE ROLE idem_app;
CREATE ROLE idem_monitor;
CREATE ROLE idem_nobody;
SELECT current_user AS superuser \gset
DO $$ BEGIN EXECUTE format('ALTER DATABASE %I OWNER TO idem_dbowner', current_database()); END $$;

-- The application role, as README.md documents.
GRANT USAGE ON SCHEMA idempotency TO idem_app;
GRANT EXECUTE ON FUNCTION
    idempotency.claim(text, text, bytea, interval, interval),
    idempotency.complete(text, text, integer, jsonb, jsonb, uuid),
    idempotency.release(text, text, uuid),
    idempotency.checkpoint(text, text, text, uuid),
    idempotency.fingerprint(text, text, jsonb),
    idempotency.fingerprint(text, text, text),
    idempotency.fingerprint(bytea)
  TO idem_app;
-- The monitoring role, as README.md documents.
GRANT USAGE ON SCHEMA idempotency TO idem_monitor;
GRANT SELECT ON idempotency.stats TO idem_monitor;
GRANT EXECUTE ON FUNCTION idempotency.read_stats() TO idem_monitor;
GRANT SELECT (state, retain_until, lease_expires_at) ON idempotency.keys TO idem_monitor;

CREATE FUNCTION pg_temp.try_as(r text, q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        EXECUTE format('SET LOCAL ROLE %I', r);
        EXECUTE q;
        RAISE EXCEPTION 'roll back';
    EXCEPTION
        WHEN insufficient_privilege THEN
            RETURN 'denied';
        WHEN OTHERS THEN
            RETURN 'ok';
    END;
END $$;

SELECT op,
       pg_temp.try_as(:'superuser', q) AS superuser,
       pg_temp.try_as('idem_dbowner', q) AS db_owner,
       pg_temp.try_as('idem_app', q) AS app,
       pg_temp.try_as('idem_monitor', q) AS monitor,
       pg_temp.try_as('idem_nobody', q) AS nobody
  FROM (VALUES
    ('claim', $$SELECT idempotency.claim('p', 'k', '\x01')$$),
    ('claim durable', $$SELECT idempotency.claim('p', 'k', '\x01', lease => '1 minute')$$),
    ('complete', $$SELECT idempotency.complete('p', 'k', 200)$$),
    ('release', $$SELECT idempotency.release('p', 'k')$$),
    ('checkpoint', $$SELECT idempotency.checkpoint('p', 'k', 'x', gen_random_uuid())$$),
    ('fingerprint jsonb', $$SELECT idempotency.fingerprint('POST', '/p', '{}'::jsonb)$$),
    ('fingerprint text', $$SELECT idempotency.fingerprint('POST', '/p', '{}'::text)$$),
    ('fingerprint bytea', $$SELECT idempotency.fingerprint('\x00'::bytea)$$),
    ('reap', $$SELECT idempotency.reap()$$),
    ('stats view', $$SELECT * FROM idempotency.stats$$),
    ('read_stats', $$SELECT * FROM idempotency.read_stats()$$),
    ('stats_reset', $$SELECT idempotency.stats_reset()$$),
    ('keys: select all', $$SELECT * FROM idempotency.keys$$),
    ('keys: select gauges', $$SELECT state, retain_until, lease_expires_at FROM idempotency.keys$$),
    ('keys: insert', $$INSERT INTO idempotency.keys (scope, key, fingerprint, state, created_at, expires_at, retain_until) VALUES ('p', 'forged', '\x01', 'completed', now(), now(), now())$$),
    ('keys: update', $$UPDATE idempotency.keys SET response_body = '{}'$$),
    ('keys: delete', $$DELETE FROM idempotency.keys$$),
    ('policies: select', $$SELECT * FROM idempotency.policies$$),
    ('policies: insert', $$INSERT INTO idempotency.policies (scope, mode) VALUES ('p', 'off')$$),
    ('set mode', $$SET LOCAL idempotency.mode = 'off'$$),
    ('set enforce_percent', $$SET LOCAL idempotency.enforce_percent = 0$$),
    ('set secret', $$SET LOCAL idempotency.fingerprint_secret = 'guess'$$),
    ('set ttl', $$SET LOCAL idempotency.ttl = '1h'$$),
    ('set reaper_batch_size', $$SET LOCAL idempotency.reaper_batch_size = 5$$)
  ) AS ops(op, q);

-- Clean up.
DO $$ BEGIN EXECUTE format('ALTER DATABASE %I OWNER TO %I', current_database(), session_user); END $$;
REVOKE ALL ON SCHEMA idempotency FROM idem_app, idem_monitor;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA idempotency FROM idem_app, idem_monitor;
REVOKE ALL ON ALL TABLES IN SCHEMA idempotency FROM idem_monitor;
REVOKE ALL ON idempotency.stats FROM idem_monitor;
DROP ROLE idem_dbowner;
DROP ROLE idem_app;
DROP ROLE idem_monitor;
DROP ROLE idem_nobody;

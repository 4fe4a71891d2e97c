-- Every setting of the extension, tried by an application role in every
-- way a role can set one: SET, SET LOCAL, a function's SET clause,
-- set_config(), and ALTER ROLE ... SET on itself.  A setting that could
-- weaken a guarantee is the superuser's alone: the windows (ttl, retain),
-- the rollout (mode, enforce_percent), the fingerprint secrets, the key-lock
-- limit, the TRUNCATE permit and the reaper's batch.  Only lock_timeout,
-- which makes a claim wait longer, is the application's.  The reaper's
-- databases and naptime are set in the server's configuration alone.
-- 0.1.0 let any role shorten the windows, so that a retry was charged
-- again.
SET client_min_messages = warning;
DROP ROLE IF EXISTS idem_guc_app;
RESET client_min_messages;
CREATE ROLE idem_guc_app;
GRANT USAGE ON SCHEMA idempotency TO idem_guc_app;
GRANT EXECUTE ON FUNCTION idempotency.claim(text, text, bytea, interval, interval),
    idempotency.complete(text, text, integer, jsonb, jsonb, uuid)
  TO idem_guc_app;

-- a value each setting accepts; the secrets are hidden from pg_settings
CREATE TEMP TABLE guc_value (name text PRIMARY KEY, value text);
INSERT INTO guc_value
SELECT name, CASE name
        WHEN 'idempotency.reaper_databases' THEN 'postgres'
        WHEN 'idempotency.mode' THEN 'off'
        WHEN 'idempotency.allow_truncate' THEN 'on'
        ELSE reset_val END
  FROM pg_settings WHERE name LIKE 'idempotency.%'
UNION ALL
VALUES ('idempotency.fingerprint_secret', 'guess'),
       ('idempotency.fingerprint_secret_previous', 'guess'),
       ('idempotency.downstream_secret', 'guess');
GRANT SELECT ON guc_value TO idem_guc_app;

CREATE FUNCTION pg_temp.try_as(r text, q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        EXECUTE format('SET LOCAL ROLE %I', r);
        EXECUTE q;
        RAISE EXCEPTION 'roll back';
    EXCEPTION
        WHEN insufficient_privilege THEN
            RETURN 'denied';
        WHEN cant_change_runtime_param THEN
            RETURN 'config only';
        WHEN raise_exception THEN
            RETURN 'ok';
        WHEN OTHERS THEN
            RETURN SQLSTATE || ' ' || SQLERRM;
    END;
END $$;

SELECT g.name, coalesce(s.context, 'superuser, hidden') AS context,
       pg_temp.try_as('idem_guc_app', format('SET %s = %L', g.name, g.value)) AS "SET",
       pg_temp.try_as('idem_guc_app', format('SET LOCAL %s = %L', g.name, g.value)) AS "SET LOCAL",
       pg_temp.try_as('idem_guc_app', format('SELECT set_config(%L, %L, false)', g.name, g.value)) AS set_config,
       pg_temp.try_as('idem_guc_app', format(
           'CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql SET %s = %L AS ''SELECT 1''',
           g.name, g.value)) AS "function SET",
       pg_temp.try_as('idem_guc_app', format('ALTER ROLE idem_guc_app SET %s = %L', g.name, g.value)) AS "ALTER ROLE SET",
       pg_temp.try_as(current_user, format('SET LOCAL %s = %L', g.name, g.value)) AS superuser
  FROM guc_value g LEFT JOIN pg_settings s USING (name)
 ORDER BY g.name;

-- The repro of 0.1.0's hole: an application role shortens both windows,
-- and the retry after them is 'new' again (charged twice).  Now refused.
SET ROLE idem_guc_app;
SET idempotency.ttl = '1s';
SET idempotency.retain = '1s';
SHOW idempotency.retain;
RESET ROLE;

DROP FUNCTION pg_temp.try_as(text, text);
DROP TABLE guc_value;
REVOKE ALL ON SCHEMA idempotency FROM idem_guc_app;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA idempotency FROM idem_guc_app;
DROP ROLE idem_guc_app;

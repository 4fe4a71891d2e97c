-- Scopes are tenant names: the per-scope statistics and the rollout report
-- are readable only by the roles README.md names, with the grants it
-- shows (a monitoring role, a rollout owner), and reset only by a
-- superuser.  The database owner, the application role with its
-- documented grants, and a role with none are refused.  "ok" means the
-- privilege check passed, "denied" SQLSTATE 42501.
SET client_min_messages = warning;
DROP ROLE IF EXISTS idem_ss_dbowner;
DROP ROLE IF EXISTS idem_ss_app;
DROP ROLE IF EXISTS idem_ss_monitor;
DROP ROLE IF EXISTS idem_ss_rollout;
DROP ROLE IF EXISTS idem_ss_nobody;
RESET client_min_messages;
CREATE ROLE idem_ss_dbowner;
CREATE ROLE idem_ss_app;
CREATE ROLE idem_ss_monitor;
CREATE ROLE idem_ss_rollout;
CREATE ROLE idem_ss_nobody;
SELECT current_user AS superuser \gset
DO $$ BEGIN EXECUTE format('ALTER DATABASE %I OWNER TO idem_ss_dbowner', current_database()); END $$;

-- The application role, as README.md documents.
GRANT USAGE ON SCHEMA idempotency TO idem_ss_app;
GRANT EXECUTE ON FUNCTION
    idempotency.claim(text, text, bytea, interval, interval),
    idempotency.complete(text, text, integer, jsonb, jsonb, uuid),
    idempotency.release(text, text, uuid),
    idempotency.checkpoint(text, text, text, uuid),
    idempotency.fingerprint(text, text, jsonb),
    idempotency.fingerprint(text, text, text),
    idempotency.fingerprint(bytea)
  TO idem_ss_app;
-- The monitoring role's grants for the per-scope statistics.
GRANT USAGE ON SCHEMA idempotency TO idem_ss_monitor;
GRANT SELECT ON idempotency.scope_stats, idempotency.scope_stats_info TO idem_ss_monitor;
GRANT EXECUTE ON FUNCTION idempotency.read_scope_stats(),
    idempotency.read_scope_stats_info() TO idem_ss_monitor;
-- The rollout owner: the same, and the report.
GRANT USAGE ON SCHEMA idempotency TO idem_ss_rollout;
GRANT SELECT ON idempotency.scope_stats, idempotency.scope_stats_info TO idem_ss_rollout;
GRANT EXECUTE ON FUNCTION idempotency.read_scope_stats(),
    idempotency.read_scope_stats_info(),
    idempotency.rollout_report(timestamptz) TO idem_ss_rollout;

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
       pg_temp.try_as('idem_ss_dbowner', q) AS db_owner,
       pg_temp.try_as('idem_ss_app', q) AS app,
       pg_temp.try_as('idem_ss_monitor', q) AS monitor,
       pg_temp.try_as('idem_ss_rollout', q) AS rollout,
       pg_temp.try_as('idem_ss_nobody', q) AS nobody
  FROM (VALUES
    ('scope_stats view', $$SELECT * FROM idempotency.scope_stats$$),
    ('read_scope_stats', $$SELECT * FROM idempotency.read_scope_stats()$$),
    ('scope_stats_info view', $$SELECT * FROM idempotency.scope_stats_info$$),
    ('read_scope_stats_info', $$SELECT * FROM idempotency.read_scope_stats_info()$$),
    ('rollout_report', $$SELECT * FROM idempotency.rollout_report(now() - interval '1 day')$$),
    ('scope_stats_reset one', $$SELECT idempotency.scope_stats_reset('p')$$),
    ('scope_stats_reset all', $$SELECT idempotency.scope_stats_reset()$$)
  ) AS ops(op, q);

-- Clean up.
DO $$ BEGIN EXECUTE format('ALTER DATABASE %I OWNER TO %I', current_database(), session_user); END $$;
REVOKE ALL ON SCHEMA idempotency FROM idem_ss_app, idem_ss_monitor, idem_ss_rollout;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA idempotency FROM idem_ss_app, idem_ss_monitor, idem_ss_rollout;
REVOKE ALL ON ALL TABLES IN SCHEMA idempotency FROM idem_ss_monitor, idem_ss_rollout;
DROP ROLE idem_ss_dbowner;
DROP ROLE idem_ss_app;
DROP ROLE idem_ss_monitor;
DROP ROLE idem_ss_rollout;
DROP ROLE idem_ss_nobody;

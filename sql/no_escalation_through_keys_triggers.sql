-- What a DBA attaches to idempotency.keys runs as the table's owner (a
-- superuser here) inside the SECURITY DEFINER functions, yet nothing the
-- caller controls changes what it runs: not the caller's search_path, and
-- not a temporary table that shadows a table a trigger writes by an
-- unqualified name, carrying a trigger of its own.
\set VERBOSITY terse
SET client_min_messages = warning;
DROP ROLE IF EXISTS idem_mallory;
RESET client_min_messages;
CREATE ROLE idem_mallory;
GRANT USAGE ON SCHEMA idempotency TO idem_mallory;
GRANT EXECUTE ON FUNCTION
    idempotency.claim(text, text, bytea, interval, interval),
    idempotency.complete(text, text, integer, jsonb, jsonb, uuid)
  TO idem_mallory;

-- The DBA's audit trigger names its table without a schema, relying on
-- the search_path: the trap.
CREATE TABLE public.audit_log (scope text, key text, who name, path text);
CREATE FUNCTION public.audit_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_log VALUES (NEW.scope, NEW.key, current_user,
                                  current_setting('search_path'));
    RETURN NULL;
END $$;
CREATE TRIGGER keys_audit AFTER INSERT ON idempotency.keys
    FOR EACH ROW EXECUTE FUNCTION public.audit_keys();

-- The application role, with only EXECUTE and the TEMP that every role
-- has, shadows audit_log with a temporary table whose trigger makes it a
-- superuser when it runs as one.
SET ROLE idem_mallory;
CREATE TEMP TABLE audit_log (scope text, key text, who name, path text);
CREATE FUNCTION pg_temp.grab() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    ALTER ROLE idem_mallory SUPERUSER;
    RETURN NULL;
END $$;
CREATE TRIGGER grab AFTER INSERT ON pg_temp.audit_log
    FOR EACH ROW EXECUTE FUNCTION pg_temp.grab();
BEGIN;
SELECT outcome FROM idempotency.claim('esc', 'k1', '\x01');
SELECT idempotency.complete('esc', 'k1', 201, '{"id": "ch_1"}');
COMMIT;
RESET ROLE;
SELECT rolsuper AS mallory_became_superuser FROM pg_roles
 WHERE rolname = 'idem_mallory';
SELECT count(*) AS keys_stored FROM idempotency.keys WHERE scope = 'esc';

-- Without temporary objects the same trigger runs as the owner, under
-- search_path pg_catalog, pg_temp whatever the caller's is, so that its
-- unqualified name is not found: the DBA learns at the first write.
SET ROLE idem_mallory;
DISCARD TEMP;
SET search_path = public;
BEGIN;
SELECT outcome FROM idempotency.claim('esc', 'k2', '\x01');
SELECT idempotency.complete('esc', 'k2', 201, '{"id": "ch_2"}');
ROLLBACK;
RESET ROLE;
RESET search_path;

-- Written as PostgreSQL asks of code that maintenance runs (names
-- qualified), it works, and a caller's search_path changes nothing.
CREATE OR REPLACE FUNCTION public.audit_keys() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.audit_log VALUES (NEW.scope, NEW.key, current_user,
                                         current_setting('search_path'));
    RETURN NULL;
END $$;
SET ROLE idem_mallory;
SET search_path = public, idempotency;
BEGIN;
SELECT outcome FROM idempotency.claim('esc', 'k3', '\x01');
SELECT idempotency.complete('esc', 'k3', 201, '{"id": "ch_3"}');
COMMIT;
RESET search_path;
-- ... but not while the session holds temporary objects.
CREATE TEMP TABLE scratch (x int);
BEGIN;
SELECT outcome FROM idempotency.claim('esc', 'k4', '\x01');
SELECT idempotency.complete('esc', 'k4', 201, '{"id": "ch_4"}');
ROLLBACK;
DROP TABLE scratch;
RESET ROLE;
SELECT scope, key, who = (SELECT relowner::regrole::name FROM pg_class
                           WHERE oid = 'idempotency.keys'::regclass) AS as_owner,
       path
  FROM public.audit_log ORDER BY key;

-- A default a DBA gives an extra column runs the same way.
DROP TRIGGER keys_audit ON idempotency.keys;
CREATE FUNCTION public.who_wrote() RETURNS text LANGUAGE sql STABLE
    AS $$ SELECT current_user || ' ' || current_setting('search_path') $$;
REVOKE EXECUTE ON FUNCTION public.who_wrote() FROM PUBLIC;
ALTER TABLE idempotency.keys ADD COLUMN written_by text DEFAULT public.who_wrote();
-- The table's cache is built as its owner, whoever opens it first: here
-- downstream_key(), which is not SECURITY DEFINER, in a new session.
GRANT EXECUTE ON FUNCTION idempotency.downstream_key(text, text, bytea, text)
  TO idem_mallory;
\c -
\set VERBOSITY terse
SET idempotency.downstream_secret = 'never-rotated';
SET ROLE idem_mallory;
SELECT length(idempotency.downstream_key('esc', 'k5', '\x01', 'authorize'));
SET search_path = public;
BEGIN;
SELECT outcome FROM idempotency.claim('esc', 'k5', '\x01');
SELECT idempotency.complete('esc', 'k5', 201, '{"id": "ch_5"}');
COMMIT;
RESET search_path;
RESET ROLE;
RESET idempotency.downstream_secret;
SELECT written_by = (SELECT relowner::regrole::name FROM pg_class
                      WHERE oid = 'idempotency.keys'::regclass)
                    || ' pg_catalog, pg_temp' AS default_as_owner_with_safe_path
  FROM idempotency.keys WHERE scope = 'esc' AND key = 'k5';

-- Clean up.
ALTER TABLE idempotency.keys DROP COLUMN written_by;
DROP FUNCTION public.who_wrote();
DROP FUNCTION public.audit_keys();
DROP TABLE public.audit_log;
DELETE FROM idempotency.keys WHERE scope = 'esc';
REVOKE ALL ON SCHEMA idempotency FROM idem_mallory;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA idempotency FROM idem_mallory;
ALTER ROLE idem_mallory NOSUPERUSER;
DROP ROLE idem_mallory;

-- Who may do what: nothing is granted to PUBLIC, an application role with
-- the documented grants runs the whole flow, a role without them can do
-- nothing, the table is written only by the extension's functions, and
-- the fingerprint secret cannot be read back.
\set VERBOSITY terse

-- Nothing in the extension is granted to PUBLIC.
SELECT count(*) AS public_grants
  FROM (SELECT (aclexplode(p.proacl)).grantee FROM pg_proc p
         WHERE p.pronamespace = 'idempotency'::regnamespace
        UNION ALL
        SELECT (aclexplode(c.relacl)).grantee FROM pg_class c
         WHERE c.relnamespace = 'idempotency'::regnamespace
        UNION ALL
        SELECT (aclexplode(n.nspacl)).grantee FROM pg_namespace n
         WHERE n.nspname = 'idempotency') AS acl
 WHERE grantee = 0;
SELECT p.proname, p.proacl IS NOT NULL AS has_explicit_acl
  FROM pg_proc p WHERE p.pronamespace = 'idempotency'::regnamespace
 ORDER BY p.oid;

SET client_min_messages = warning;
DROP ROLE IF EXISTS idem_app;
DROP ROLE IF EXISTS idem_nobody;
DROP ROLE IF EXISTS idem_monitor;
RESET client_min_messages;
CREATE ROLE idem_app;
CREATE ROLE idem_nobody;
CREATE ROLE idem_monitor IN ROLE pg_read_all_settings;

CREATE TABLE charges (id text PRIMARY KEY, amount int);
GRANT INSERT, SELECT ON charges TO idem_app, idem_nobody;

-- The grants the README documents for an application role.
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

-- The application role runs the whole flow.
SET ROLE idem_app;
BEGIN;
SELECT outcome FROM idempotency.claim('sec', 'k1',
       idempotency.fingerprint('POST', '/v1/charges', '{"amount": 1}'::jsonb));
INSERT INTO charges VALUES ('ch_1', 1);
SELECT idempotency.complete('sec', 'k1', 201, '{"id": "ch_1"}');
COMMIT;
SELECT outcome, response_body FROM idempotency.claim('sec', 'k1',
       idempotency.fingerprint('POST', '/v1/charges', '{"amount": 1}'::jsonb));
BEGIN;
SELECT outcome FROM idempotency.claim('sec', 'k2', idempotency.fingerprint('\x00'::bytea));
SELECT idempotency.release('sec', 'k2');
COMMIT;
-- ... durable claims included.
SELECT lease_token AS token FROM idempotency.claim('sec', 'k4', '\x01', lease => '1 minute') \gset
SELECT idempotency.checkpoint('sec', 'k4', 'authorized', :'token');
SELECT idempotency.complete('sec', 'k4', 201, '{"id": "ch_4"}', lease_token => :'token');
-- ... but cannot read or write the table behind the functions' back.
SELECT count(*) FROM idempotency.keys;
INSERT INTO idempotency.keys (scope, key, fingerprint, state, created_at, expires_at, retain_until)
VALUES ('sec', 'forged', '\x01', 'completed', now(), now(), now());
UPDATE idempotency.keys SET response_body = '{"id": "forged"}';
DELETE FROM idempotency.keys;
-- ... nor reap, which is for operators.
SELECT idempotency.reap();
-- ... nor set the secret.
SET idempotency.fingerprint_secret = 'guess';
RESET ROLE;

-- A role without the grants can neither call the functions nor read keys.
SET ROLE idem_nobody;
SELECT outcome FROM idempotency.claim('sec', 'k3', '\x01');
SELECT idempotency.fingerprint('\x00'::bytea);
SELECT count(*) FROM idempotency.keys;
RESET ROLE;
-- Not even with USAGE on the schema: EXECUTE is needed too.
GRANT USAGE ON SCHEMA idempotency TO idem_nobody;
SET ROLE idem_nobody;
SELECT outcome FROM idempotency.claim('sec', 'k3', '\x01');
SELECT idempotency.complete('sec', 'k3', 200);
SELECT idempotency.release('sec', 'k3');
SELECT idempotency.checkpoint('sec', 'k4', 'x', gen_random_uuid());
SELECT idempotency.reap();
SELECT idempotency.fingerprint('POST', '/p', '{}'::jsonb);
SELECT count(*) FROM idempotency.keys;
RESET ROLE;
REVOKE USAGE ON SCHEMA idempotency FROM idem_nobody;

-- The fingerprint secret: set by a superuser, used for everyone's
-- fingerprints, readable by nobody.
SET idempotency.fingerprint_secret = 'top-secret-value';
SELECT idempotency.fingerprint('abc'::bytea) AS keyed \gset
SHOW idempotency.fingerprint_secret;
SELECT current_setting('idempotency.fingerprint_secret');
SET ROLE idem_app;
SELECT idempotency.fingerprint('abc'::bytea) = :'keyed' AS app_fingerprints_with_secret;
SHOW idempotency.fingerprint_secret;
SELECT current_setting('idempotency.fingerprint_secret');
SELECT current_setting('idempotency.fingerprint_secret', true);
SELECT count(*) AS visible_in_pg_settings FROM pg_settings
 WHERE name = 'idempotency.fingerprint_secret';
SELECT count(*) AS secret_in_pg_settings FROM pg_settings
 WHERE setting LIKE '%top-secret%' OR reset_val LIKE '%top-secret%'
    OR boot_val LIKE '%top-secret%';
RESET ROLE;
-- pg_read_all_settings, which monitoring roles usually get, sees a mask.
SET ROLE idem_monitor;
SHOW idempotency.fingerprint_secret;
SELECT current_setting('idempotency.fingerprint_secret');
SELECT count(*) AS secret_in_pg_settings FROM pg_settings
 WHERE setting LIKE '%top-secret%' OR reset_val LIKE '%top-secret%'
    OR boot_val LIKE '%top-secret%';
RESET ROLE;
SELECT count(*) AS secret_in_show_all FROM pg_show_all_settings()
 WHERE setting LIKE '%top-secret%';
RESET idempotency.fingerprint_secret;

-- No error carries a stored fingerprint, or another scope's response.
BEGIN;
SELECT outcome FROM idempotency.claim('sec-a', 'shared', '\xdeadbeefcafe');
SELECT idempotency.complete('sec-a', 'shared', 201, '{"card": "card-secret-pan"}');
COMMIT;
DO $$
DECLARE
    msg text;
    detail text;
    hint text;
BEGIN
    PERFORM idempotency.claim('sec-a', 'shared', '\x0102');
EXCEPTION WHEN SQLSTATE 'IK422' THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL,
                            hint = PG_EXCEPTION_HINT;
    RAISE NOTICE 'leaks fingerprint: %, leaks response: %',
        concat(msg, detail, hint) ~* '(deadbeef|0102)',
        concat(msg, detail, hint) ~ 'secret-pan';
END $$;
-- The same key in another scope learns nothing of the first.
BEGIN;
SELECT outcome, response_body FROM idempotency.claim('sec-b', 'shared', '\x0102');
ROLLBACK;

-- Clean up.
DROP TABLE charges;
REVOKE ALL ON SCHEMA idempotency FROM idem_app;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA idempotency FROM idem_app;
DROP ROLE idem_app;
DROP ROLE idem_nobody;
DROP ROLE idem_monitor;

-- Only the edition's owner reads the secrets or changes the windows: an
-- application role with the grants README.md shows runs the protocol and
-- nothing else.  Nothing it sets (idempotency.* settings, which without C
-- are mere placeholders, or a hostile search_path) changes what runs as
-- the owner.
\set VERBOSITY terse
CREATE ROLE trusted_app;
GRANT USAGE ON SCHEMA idempotency TO trusted_app;
GRANT EXECUTE ON FUNCTION
    idempotency.claim(text, text, bytea, interval, interval),
    idempotency.complete(text, text, integer, jsonb, jsonb, uuid),
    idempotency.release(text, text, uuid),
    idempotency.checkpoint(text, text, text, uuid),
    idempotency.fingerprint(text, text, jsonb),
    idempotency.fingerprint(text, text, text),
    idempotency.fingerprint(bytea),
    idempotency.downstream_key(text, text, bytea, text)
  TO trusted_app;
CREATE SCHEMA trusted_app_schema AUTHORIZATION trusted_app;
UPDATE idempotency.settings SET fingerprint_secret = 'owner-only', ttl = '1 hour', retain = '1 day';
SET ROLE trusted_app;
-- The secrets, the windows, the keys, the open claims: none readable or writable.
SELECT fingerprint_secret FROM idempotency.settings;
UPDATE idempotency.settings SET ttl = '1 second';
INSERT INTO idempotency.policies (scope, ttl, retain) VALUES ('own', '1 second', '1 second');
SELECT count(*) FROM idempotency.keys;
DELETE FROM idempotency.open_claims;
TRUNCATE idempotency.keys;
-- Nor the helpers the public functions call.
SELECT idempotency._hash('\x00', 'guess');
SELECT idempotency._policy('own');
-- Settings named like the C edition's are placeholders here: no effect.
SET idempotency.ttl = '1s';
SET idempotency.retain = '1s';
SET idempotency.mode = 'off';
-- A hostile path: an always-true "=" for text and bytea and a now() in the
-- past come first.
CREATE FUNCTION trusted_app_schema.eq(text, text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE OPERATOR trusted_app_schema.= (LEFTARG = text, RIGHTARG = text, FUNCTION = trusted_app_schema.eq);
CREATE FUNCTION trusted_app_schema.beq(bytea, bytea) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE OPERATOR trusted_app_schema.= (LEFTARG = bytea, RIGHTARG = bytea, FUNCTION = trusted_app_schema.beq);
CREATE FUNCTION trusted_app_schema.now() RETURNS timestamptz LANGUAGE sql AS $$SELECT '2000-01-01'::timestamptz$$;
CREATE FUNCTION trusted_app_schema.digest(bytea, text) RETURNS bytea LANGUAGE sql AS $$SELECT '\x00'::bytea$$;
CREATE FUNCTION trusted_app_schema.hmac(bytea, bytea, text) RETURNS bytea LANGUAGE sql AS $$SELECT '\x00'::bytea$$;
SET search_path = trusted_app_schema, pg_catalog, public;
SELECT 'a'::text = 'b'::text AS trap_is_live;
-- The protocol, as the application runs it.
BEGIN;
SELECT outcome FROM idempotency.claim('own', 'k1', idempotency.fingerprint('POST', '/c', '{"a": 1}'));
SELECT idempotency.complete('own', 'k1', 201, '{"id": "ch_1"}');
COMMIT;
SELECT outcome, response_body FROM idempotency.claim('own', 'k1', idempotency.fingerprint('POST', '/c', '{"a": 1.0}'));
SELECT outcome FROM idempotency.claim('own', 'k1', idempotency.fingerprint('POST', '/c', '{"a": 2}'));
\echo :LAST_ERROR_SQLSTATE
SELECT outcome FROM idempotency.claim('own', 'k2', idempotency.fingerprint('POST', '/c', '{"a": 1}'));
\echo :LAST_ERROR_SQLSTATE
RESET search_path;
RESET idempotency.ttl;
RESET idempotency.retain;
RESET idempotency.mode;
RESET ROLE;
-- Under the owner's windows and secret, not the placeholders'.
SELECT expires_at - created_at AS ttl, retain_until - created_at AS retain,
       fingerprint = hmac(convert_to('IKv1', 'UTF8') || '\x6d00000004'::bytea || convert_to('POST', 'UTF8')
                          || '\x7000000002'::bytea || convert_to('/c', 'UTF8')
                          || '\x7b7300000001'::bytea || convert_to('a', 'UTF8') || '\x6e0000000131'::bytea
                          || '\x7d'::bytea, 'owner-only'::bytea, 'sha256') AS hmac_of_the_encoding
  FROM idempotency.keys WHERE scope = 'own';
UPDATE idempotency.settings SET fingerprint_secret = DEFAULT, ttl = DEFAULT, retain = DEFAULT;
DELETE FROM idempotency.keys WHERE scope = 'own';
DROP SCHEMA trusted_app_schema CASCADE;
DROP OWNED BY trusted_app;
DROP ROLE trusted_app;

-- A hostile search_path changes nothing: a public "=" for text and bytea
-- that is always true, and a table that shadows idempotency.keys, come
-- first in the path before this session's first claim, so the extension
-- prepares its plans under that path.
CREATE FUNCTION public.evil_texteq(text, text) RETURNS boolean
    LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text,
                          FUNCTION = public.evil_texteq);
CREATE FUNCTION public.evil_byteaeq(bytea, bytea) RETURNS boolean
    LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE OPERATOR public.= (LEFTARG = bytea, RIGHTARG = bytea,
                          FUNCTION = public.evil_byteaeq);
CREATE TABLE public.keys (scope text, key text, fingerprint bytea);
CREATE TEMP TABLE keys (scope text, key text, fingerprint bytea);
SET search_path = public, pg_catalog, idempotency;
\set VERBOSITY terse

-- The trap is live for unqualified SQL.
SELECT 'x'::text = 'y'::text AS evil_text_eq, '\x01'::bytea = '\x02'::bytea AS evil_bytea_eq;

BEGIN;
SELECT outcome FROM idempotency.claim('hostile', 'k-a', '\x01');
SELECT idempotency.complete('hostile', 'k-a', 201, '{"id": "a"}');
COMMIT;
-- Another key is new, not a replay of k-a.
BEGIN;
SELECT outcome, response_body FROM idempotency.claim('hostile', 'k-b', '\x01');
SELECT idempotency.complete('hostile', 'k-b', 201, '{"id": "b"}');
COMMIT;
-- Another fingerprint is IK422, not a replay.
SELECT outcome FROM idempotency.claim('hostile', 'k-a', '\x02');
\echo :LAST_ERROR_SQLSTATE
-- Each key replays its own response.
SELECT outcome, response_body FROM idempotency.claim('hostile', 'k-a', '\x01');
SELECT outcome, response_body FROM idempotency.claim('hostile', 'k-b', '\x01');
-- A key past retention is overwritten through SQL: only that key.
UPDATE idempotency.keys SET created_at = now() - interval '3 seconds',
                            expires_at = now() - interval '2 seconds',
                            retain_until = now() - interval '1 second'
 WHERE scope OPERATOR(pg_catalog.=) 'hostile' AND key OPERATOR(pg_catalog.=) 'k-a';
BEGIN;
SELECT outcome FROM idempotency.claim('hostile', 'k-a', '\x03');
SELECT idempotency.complete('hostile', 'k-a', 201, '{"id": "a2"}');
COMMIT;
SELECT outcome, response_body FROM idempotency.claim('hostile', 'k-a', '\x03');
SELECT outcome, response_body FROM idempotency.claim('hostile', 'k-b', '\x01');
-- The decoys were never touched; the real table has both keys.
SELECT (SELECT count(*) FROM public.keys) + (SELECT count(*) FROM pg_temp.keys) AS decoy_rows;
SELECT key, response_body FROM idempotency.keys WHERE scope OPERATOR(pg_catalog.=) 'hostile'
 ORDER BY key;

RESET search_path;
DROP TABLE public.keys;
DROP OPERATOR public.= (text, text);
DROP OPERATOR public.= (bytea, bytea);
DROP FUNCTION public.evil_texteq(text, text);
DROP FUNCTION public.evil_byteaeq(bytea, bytea);

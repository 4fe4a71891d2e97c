-- Rotating idempotency.fingerprint_secret as the README says (the new one
-- set, the old one kept as idempotency.fingerprint_secret_previous) keeps
-- every retry of a request claimed under the old secret the same request:
-- a replay, or a resume, never IK422, and a resume sends the processor the
-- downstream key the first attempt sent.  Before 0.3.0 there was no
-- previous secret, and such a retry was IK422 ("your request was wrong").
\set VERBOSITY terse
SET idempotency.fingerprint_secret = 'old-secret';
BEGIN;
SELECT outcome FROM idempotency.claim('rot', 'k1',
       idempotency.fingerprint('POST', '/v1/charges', '{"amount": 1000}'::jsonb));
SELECT idempotency.complete('rot', 'k1', 201, '{"id": "ch_1"}');
COMMIT;
BEGIN;
SELECT outcome FROM idempotency.claim('rot', 'k2', idempotency.fingerprint('\x0102'::bytea));
SELECT idempotency.complete('rot', 'k2', 201, '{"id": "ch_2"}');
COMMIT;
BEGIN;
SELECT outcome FROM idempotency.claim('rot', 'k5', idempotency.fingerprint('\x05'::bytea));
SELECT idempotency.complete('rot', 'k5', 201, '{"id": "ch_5"}');
COMMIT;
-- a durable claim whose worker dies during the rotation, after it sent
-- the processor its downstream key
SET idempotency.downstream_secret = 'never-rotated';
SELECT c.outcome,
       idempotency.downstream_key('rot', 'k3', f.fp, 'authorize') AS authorize_key
  FROM (SELECT idempotency.fingerprint('POST', '/v1/charges', '{"amount": 3}'::jsonb) AS fp) f,
       LATERAL idempotency.claim('rot', 'k3', f.fp, lease => '50 milliseconds') c \gset
\echo :outcome

-- The new secret alone: the retry is IK422.
SET idempotency.fingerprint_secret = 'new-secret';
SELECT outcome FROM idempotency.claim('rot', 'k1',
       idempotency.fingerprint('POST', '/v1/charges', '{"amount": 1000}'::jsonb));

-- With the old one as previous, it is the same request.
SET idempotency.fingerprint_secret_previous = 'old-secret';
SHOW idempotency.fingerprint_secret_previous;
SELECT outcome, response_body FROM idempotency.claim('rot', 'k1',
       idempotency.fingerprint('POST', '/v1/charges', '{"amount": 1000}'::jsonb));
SELECT outcome, response_body FROM idempotency.claim('rot', 'k2',
       idempotency.fingerprint('\x0102'::bytea));
SELECT pg_sleep(0.1);
-- The resumer sends the processor the same downstream key.
BEGIN;
SELECT c.outcome,
       idempotency.downstream_key('rot', 'k3', f.fp, 'authorize') = :'authorize_key'
           AS same_downstream_key
  FROM (SELECT idempotency.fingerprint('POST', '/v1/charges', '{"amount": 3}'::jsonb) AS fp) f,
       LATERAL idempotency.claim('rot', 'k3', f.fp, lease => '1 minute') c;
ROLLBACK;
RESET idempotency.downstream_secret;
-- Another request under the key is still IK422, under either secret.
SELECT outcome FROM idempotency.claim('rot', 'k1',
       idempotency.fingerprint('POST', '/v1/charges', '{"amount": 2000}'::jsonb));
SELECT outcome FROM idempotency.claim('rot', 'k2', idempotency.fingerprint('\x0103'::bytea));
-- A fingerprint this session did not compute is not known here: it
-- matches only itself (IK422, never a false replay) ...
SELECT outcome FROM idempotency.claim('rot', 'k5',
       hmac('\x05'::bytea, 'new-secret', 'sha256'));
-- ... until this session computes it.
SELECT outcome, response_body FROM idempotency.claim('rot', 'k5',
       idempotency.fingerprint('\x05'::bytea));
-- A key first claimed during the rotation is stored under the new secret,
-- and replays once the previous secret is dropped.
BEGIN;
SELECT outcome FROM idempotency.claim('rot', 'k4', idempotency.fingerprint('\x04'::bytea));
SELECT idempotency.complete('rot', 'k4', 201, '{"id": "ch_4"}');
COMMIT;
RESET idempotency.fingerprint_secret_previous;
SHOW idempotency.fingerprint_secret_previous;
SELECT outcome, response_body FROM idempotency.claim('rot', 'k4',
       idempotency.fingerprint('\x04'::bytea));
-- Dropped too early, a retry of an old key is IK422 again.
SELECT outcome FROM idempotency.claim('rot', 'k2', idempotency.fingerprint('\x0102'::bytea));
RESET idempotency.fingerprint_secret;

-- Only a superuser sets it, and nobody reads it back.
SET client_min_messages = warning;
DROP ROLE IF EXISTS idem_rot_app;
RESET client_min_messages;
CREATE ROLE idem_rot_app;
SET idempotency.fingerprint_secret_previous = 'old-secret';
SET ROLE idem_rot_app;
SET idempotency.fingerprint_secret_previous = 'guess';
SELECT count(*) FROM pg_settings WHERE name LIKE 'idempotency.fingerprint_secret%';
RESET ROLE;
SELECT count(*) AS secret_shown FROM pg_settings
 WHERE setting LIKE '%old-secret%' OR reset_val LIKE '%old-secret%';
RESET idempotency.fingerprint_secret_previous;
DROP ROLE idem_rot_app;
DELETE FROM idempotency.keys WHERE scope = 'rot';

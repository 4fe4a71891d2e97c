-- A completed key replays its stored response exactly, without a lock and
-- without a write, and keys never cross scopes.
CREATE TABLE charges (id text PRIMARY KEY, scope text, amount int);

BEGIN;
SELECT outcome, response_status, response_headers, response_body,
       recovery_point, first_seen = now() AS first_seen_is_now, lease_token
  FROM idempotency.claim('merchant_42', 'a1b2-key',
       idempotency.fingerprint('POST', '/v1/charges',
                               '{"amount": 1000, "currency": "eur"}'));
INSERT INTO charges VALUES ('ch_1', 'merchant_42', 1000);
SELECT idempotency.complete('merchant_42', 'a1b2-key', 201,
       '{"id": "ch_1", "amount": 1000, "nested": {"a": [1, 2.50, null]}}',
       '{"Content-Type": "application/json", "X-Request-Id": "r-1"}');
COMMIT;

-- The replay returns status, headers and body as stored.
SELECT outcome, response_status, response_headers, response_body,
       recovery_point, lease_token
  FROM idempotency.claim('merchant_42', 'a1b2-key',
       idempotency.fingerprint('POST', '/v1/charges',
                               '{"currency": "eur", "amount": 1000}'));

-- first_seen is the first claim's time, the row's created_at.
SELECT c.first_seen = k.created_at AS first_seen_is_created_at
  FROM idempotency.claim('merchant_42', 'a1b2-key',
       idempotency.fingerprint('POST', '/v1/charges',
                               '{"amount": 1000, "currency": "eur"}')) c,
       idempotency.keys k
 WHERE k.scope = 'merchant_42' AND k.key = 'a1b2-key';

-- A replay takes no lock and writes nothing: no transaction id is assigned,
-- the row version is unchanged, and no idempotency lock is left behind.
SELECT xmin AS row_version_before FROM idempotency.keys
 WHERE scope = 'merchant_42' AND key = 'a1b2-key' \gset
BEGIN;
SELECT outcome FROM idempotency.claim('merchant_42', 'a1b2-key',
       idempotency.fingerprint('POST', '/v1/charges',
                               '{"amount": 1000, "currency": "eur"}'));
SELECT pg_current_xact_id_if_assigned() IS NULL AS no_xid_assigned;
SELECT count(*) AS idempotency_locks FROM pg_locks
 WHERE locktype = 'advisory' AND objsubid = 18763
   AND pid = pg_backend_pid();
COMMIT;
SELECT xmin = :'row_version_before' AS row_unchanged FROM idempotency.keys
 WHERE scope = 'merchant_42' AND key = 'a1b2-key';

-- A 'new' claim holds the key's lock until the transaction ends.
BEGIN;
SELECT outcome FROM idempotency.claim('merchant_42', 'other-key', '\x01');
SELECT count(*) AS idempotency_locks FROM pg_locks
 WHERE locktype = 'advisory' AND objsubid = 18763
   AND pid = pg_backend_pid();
SELECT idempotency.release('merchant_42', 'other-key');
COMMIT;

-- The same key in another scope is another key: new, and its own response.
BEGIN;
SELECT outcome, response_body
  FROM idempotency.claim('merchant_43', 'a1b2-key',
       idempotency.fingerprint('POST', '/v1/charges', '{"amount": 5}'));
INSERT INTO charges VALUES ('ch_2', 'merchant_43', 5);
SELECT idempotency.complete('merchant_43', 'a1b2-key', 201, '{"id": "ch_2"}');
COMMIT;
SELECT outcome, response_body
  FROM idempotency.claim('merchant_43', 'a1b2-key',
       idempotency.fingerprint('POST', '/v1/charges', '{"amount": 5}'));
SELECT outcome, response_body
  FROM idempotency.claim('merchant_42', 'a1b2-key',
       idempotency.fingerprint('POST', '/v1/charges',
                               '{"amount": 1000, "currency": "eur"}'));

-- A different request under a used key is IK422.
\set VERBOSITY terse
SELECT outcome FROM idempotency.claim('merchant_42', 'a1b2-key',
       idempotency.fingerprint('POST', '/v1/charges', '{"amount": 2000}'));
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default

-- Headers and body are optional; NULLs replay as NULLs.
BEGIN;
SELECT outcome FROM idempotency.claim('merchant_42', 'no-body', '\x02');
SELECT idempotency.complete('merchant_42', 'no-body', 204);
COMMIT;
SELECT outcome, response_status, response_headers IS NULL AS no_headers,
       response_body IS NULL AS no_body
  FROM idempotency.claim('merchant_42', 'no-body', '\x02');

-- A key completed earlier in the same transaction replays there too.
BEGIN;
SELECT outcome FROM idempotency.claim('merchant_44', 'k', '\x03');
SELECT idempotency.complete('merchant_44', 'k', 200, '{"ok": true}');
SELECT outcome, response_body FROM idempotency.claim('merchant_44', 'k', '\x03');
COMMIT;

-- A large response is stored out of line (TOAST) and replays intact.
BEGIN;
SELECT outcome FROM idempotency.claim('merchant_44', 'big', '\x04');
SELECT idempotency.complete('merchant_44', 'big', 200,
       jsonb_build_object('blob', repeat('x', 2000000), 'n', 1));
COMMIT;
SELECT outcome, length(response_body->>'blob') AS blob_length, response_body->'n' AS n
  FROM idempotency.claim('merchant_44', 'big', '\x04');

-- One row per completed key, nothing for released or replayed ones.
SELECT scope, key, state, response_status FROM idempotency.keys
 WHERE scope LIKE 'merchant%' ORDER BY scope, key;

DROP TABLE charges;

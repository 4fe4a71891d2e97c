-- demo/payment_flow.sql: the idempotency extension in a payment API's flow.
-- Run by `make demo` (scripts/demo.sh) as a superuser in a throwaway cluster with
-- shared_preload_libraries = 'idempotency' and the extensions pgcrypto and idempotency
-- created.  Several steps end in an error on purpose: the SQLSTATE (IKxxx) is shown.
\set ON_ERROR_STOP 0
\set VERBOSITY verbose
\set SHOW_CONTEXT never
\set QUIET 1
\pset null '(null)'
\set QUIET 0

CREATE TABLE charges (
    id         text PRIMARY KEY,
    merchant   text,
    amount     int,
    created_at timestamptz DEFAULT now()
);

\echo
\echo '=== 1. New request: claim -> charge -> complete -> COMMIT (outcome new) ==='
BEGIN;
SELECT outcome, response_status, lease_token
  FROM idempotency.claim('merchant_42', 'key-1',
         idempotency.fingerprint('POST', '/v1/charges', '{"amount": 1000, "currency": "eur"}'));
INSERT INTO charges (id, merchant, amount) VALUES ('ch_1', 'merchant_42', 1000);
SELECT idempotency.complete('merchant_42', 'key-1', 201,
         '{"id": "ch_1", "amount": 1000}', '{"Content-Type": "application/json"}');
COMMIT;

\echo
\echo '=== 2. Retry of the same request (keys reordered, 1000.0): replay of the stored response, no new charge ==='
SELECT outcome, response_status, response_headers, response_body
  FROM idempotency.claim('merchant_42', 'key-1',
         idempotency.fingerprint('post', '/v1/charges', '{"currency": "eur", "amount": 1000.0}'));
SELECT count(*) AS charges_for_key_1 FROM charges WHERE merchant = 'merchant_42';

\echo
\echo '=== 3. Same key, different body: IK422 ==='
SELECT outcome
  FROM idempotency.claim('merchant_42', 'key-1',
         idempotency.fingerprint('POST', '/v1/charges', '{"amount": 9999, "currency": "eur"}'));

\echo
\echo '=== 4. A concurrent duplicate while the first request is in flight: IK409 ==='
BEGIN;
SELECT outcome
  FROM idempotency.claim('merchant_42', 'key-2',
         idempotency.fingerprint('POST', '/v1/charges', '{"amount": 2000, "currency": "eur"}'));
INSERT INTO charges (id, merchant, amount) VALUES ('ch_2', 'merchant_42', 2000);
\echo '--- a second connection sends the same request now (default wait = 0):'
\! psql -X -e -v VERBOSITY=verbose -v SHOW_CONTEXT=never -c "SELECT outcome FROM idempotency.claim('merchant_42', 'key-2', idempotency.fingerprint('POST', '/v1/charges', jsonb_build_object('amount', 2000, 'currency', 'eur')))"
\echo '--- the first request finishes; the duplicate, retried, now replays:'
SELECT idempotency.complete('merchant_42', 'key-2', 201, '{"id": "ch_2", "amount": 2000}');
COMMIT;
\! psql -X -e -v VERBOSITY=verbose -v SHOW_CONTEXT=never -c "SELECT outcome, response_status, response_body FROM idempotency.claim('merchant_42', 'key-2', idempotency.fingerprint('POST', '/v1/charges', jsonb_build_object('amount', 2000, 'currency', 'eur')))"

\echo
\echo '=== 5. A retry after the replay window (ttl): the key is a tombstone, IK410 ==='
\echo '--- (as superuser, pretend 25 hours have passed since key-1 was first used; ttl is 24 hours)'
UPDATE idempotency.keys
   SET created_at   = created_at   - interval '25 hours',
       expires_at   = expires_at   - interval '25 hours',
       retain_until = retain_until - interval '25 hours'
 WHERE scope = 'merchant_42' AND key = 'key-1';
SELECT outcome
  FROM idempotency.claim('merchant_42', 'key-1',
         idempotency.fingerprint('POST', '/v1/charges', '{"amount": 1000, "currency": "eur"}'));
SELECT count(*) AS charges_for_key_1 FROM charges WHERE id = 'ch_1';

\echo
\echo '=== 6. A 5xx completion is not stored: the key is released and the retry is new ==='
BEGIN;
SELECT outcome
  FROM idempotency.claim('merchant_42', 'key-3',
         idempotency.fingerprint('POST', '/v1/charges', '{"amount": 3000, "currency": "eur"}'));
SELECT idempotency.complete('merchant_42', 'key-3', 503, '{"error": "processor unavailable"}');
COMMIT;
\echo '--- the client retries:'
BEGIN;
SELECT outcome
  FROM idempotency.claim('merchant_42', 'key-3',
         idempotency.fingerprint('POST', '/v1/charges', '{"amount": 3000, "currency": "eur"}'));
INSERT INTO charges (id, merchant, amount) VALUES ('ch_3', 'merchant_42', 3000);
SELECT idempotency.complete('merchant_42', 'key-3', 201, '{"id": "ch_3", "amount": 3000}');
COMMIT;
SELECT outcome, response_status, response_body
  FROM idempotency.claim('merchant_42', 'key-3',
         idempotency.fingerprint('POST', '/v1/charges', '{"amount": 3000, "currency": "eur"}'));

\echo
\echo '=== 7. Commit guard: COMMIT with a claim neither completed nor released fails with IK428 ==='
BEGIN;
SELECT outcome
  FROM idempotency.claim('merchant_42', 'key-4',
         idempotency.fingerprint('POST', '/v1/charges', '{"amount": 4000, "currency": "eur"}'));
INSERT INTO charges (id, merchant, amount) VALUES ('ch_4', 'merchant_42', 4000);
COMMIT;
\echo '--- the charge rolled back with it, and so did the key:'
SELECT count(*) AS charges_ch_4 FROM charges WHERE id = 'ch_4';
SELECT count(*) AS keys_key_4 FROM idempotency.keys WHERE scope = 'merchant_42' AND key = 'key-4';

\echo
\echo '=== Final state: one charge per request that completed, and its key ==='
SELECT id, merchant, amount FROM charges ORDER BY id;
SELECT scope, key, response_status, response_body->>'id' AS charge
  FROM idempotency.keys ORDER BY scope, key;

\echo
\echo '=== What the operators see: the counters of this database (idempotency.stats) ==='
\x on
SELECT claims_new, claims_replay, errors_ik409, errors_ik410, errors_ik422,
       errors_ik428, completions, releases_5xx, claim_latency_seconds_count
  FROM idempotency.stats WHERE database = current_database();
\x off

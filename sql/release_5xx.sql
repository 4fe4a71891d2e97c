-- A 5xx response is never stored: the key is released and the retry runs
-- again.  release() does the same, and completing or releasing a key this
-- transaction has not claimed is a protocol violation (IK428).
CREATE TABLE charges (id text PRIMARY KEY, amount int);
\set VERBOSITY terse

-- 503 from the processor: complete() releases, and the key is new for the
-- retry (a transaction that wrote a charge could not commit: see
-- freed_key_never_commits_a_charge).
BEGIN;
SELECT outcome FROM idempotency.claim('pay', 'k-5xx', '\x01');
SELECT idempotency.complete('pay', 'k-5xx', 503, '{"error": "upstream timeout"}');
COMMIT;
SELECT count(*) AS keys_stored FROM idempotency.keys WHERE key = 'k-5xx';
BEGIN;
SELECT outcome FROM idempotency.claim('pay', 'k-5xx', '\x01');
INSERT INTO charges VALUES ('ch_retry', 100);
SELECT idempotency.complete('pay', 'k-5xx', 201, '{"id": "ch_retry"}');
COMMIT;
SELECT outcome, response_status, response_body FROM idempotency.claim('pay', 'k-5xx', '\x01');

-- Every status from 500 to 599 releases; 499 and 600 do not count as 5xx.
-- (A transaction that frees a key commits no writes, stored responses of
-- other keys included: the 499 is stored in a transaction of its own.)
SELECT s AS status, (SELECT idempotency.complete('pay', 'k-' || s, s)
                       FROM idempotency.claim('pay', 'k-' || s, '\x01')) AS result
  FROM unnest(ARRAY[499]) AS s;
SELECT s AS status, (SELECT idempotency.complete('pay', 'k-' || s, s)
                       FROM idempotency.claim('pay', 'k-' || s, '\x01')) AS result
  FROM unnest(ARRAY[500, 502, 504, 599]) AS s;
SELECT key, response_status FROM idempotency.keys WHERE key LIKE 'k-4%' OR key LIKE 'k-5%'
 ORDER BY key;

-- 4xx replies are stored: a validation error is the request's answer.
SELECT outcome, response_status FROM idempotency.claim('pay', 'k-499', '\x01');

-- release(): the key is new again, and nothing was stored.
BEGIN;
SELECT outcome FROM idempotency.claim('pay', 'k-release', '\x01');
SELECT idempotency.release('pay', 'k-release');
COMMIT;
SELECT count(*) AS keys_stored FROM idempotency.keys WHERE key = 'k-release';
BEGIN;
SELECT outcome FROM idempotency.claim('pay', 'k-release', '\x02');
SELECT idempotency.release('pay', 'k-release');
COMMIT;

-- complete() and release() without a claim in this transaction: IK428.
SELECT idempotency.complete('pay', 'never-claimed', 200);
\echo :LAST_ERROR_SQLSTATE
SELECT idempotency.release('pay', 'never-claimed');
\echo :LAST_ERROR_SQLSTATE
-- A key claimed and completed by an earlier transaction is not this one's.
SELECT idempotency.complete('pay', 'k-5xx', 200);
\echo :LAST_ERROR_SQLSTATE
-- Twice in one transaction: the second finds no open claim.
BEGIN;
SELECT outcome FROM idempotency.claim('pay', 'k-twice', '\x01');
SELECT idempotency.complete('pay', 'k-twice', 200);
SELECT idempotency.complete('pay', 'k-twice', 200);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT outcome FROM idempotency.claim('pay', 'k-twice', '\x01');
SELECT idempotency.release('pay', 'k-twice');
SELECT idempotency.release('pay', 'k-twice');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- The same key in another scope is not the claimed one.
BEGIN;
SELECT outcome FROM idempotency.claim('pay', 'k-scope', '\x01');
SELECT idempotency.complete('other', 'k-scope', 200);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

DROP TABLE charges;

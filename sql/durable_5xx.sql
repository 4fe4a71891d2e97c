-- A processor's 502 or 504 is an unknown outcome: it may have charged.
-- complete() with a 5xx for a durable claim that recorded a recovery
-- point therefore ends its lease but keeps its row, so that the retry
-- resumes from that point (and asks the processor) instead of charging
-- again; one that recorded nothing frees the key, as a 5xx always did.
-- 0.1.0 deleted the row and its recovery point: the retry was 'new'.
BEGIN;
SELECT outcome, lease_token AS t FROM idempotency.claim('p5xx', 'k1', '\x01', lease => '1 minute') \gset
COMMIT;
SELECT idempotency.checkpoint('p5xx', 'k1', 'authorized', :'t');
SELECT idempotency.complete('p5xx', 'k1', 504, '{"error": "gateway timeout"}', lease_token => :'t');
SELECT state, recovery_point, response_status, lease_expires_at <= now() AS lease_ended
  FROM idempotency.keys WHERE scope = 'p5xx' AND key = 'k1';
-- the retry resumes at once, from where the first attempt got to
BEGIN;
SELECT outcome, recovery_point, lease_token IS NOT NULL AS new_token
  FROM idempotency.claim('p5xx', 'k1', '\x01', lease => '1 minute');
COMMIT;
-- the old token is fenced off
SELECT idempotency.complete('p5xx', 'k1', 201, '{"id": "ch_1"}', lease_token => :'t');

-- Without a recovery point the key is freed: the retry is 'new'.
BEGIN;
SELECT outcome, lease_token AS t FROM idempotency.claim('p5xx', 'k2', '\x01', lease => '1 minute') \gset
COMMIT;
SELECT idempotency.complete('p5xx', 'k2', 502, lease_token => :'t');
SELECT count(*) AS rows_left FROM idempotency.keys WHERE scope = 'p5xx' AND key = 'k2';
BEGIN;
SELECT outcome FROM idempotency.claim('p5xx', 'k2', '\x01', lease => '1 minute');
COMMIT;

-- A policy that keeps 5xx replies stores it, as for any response.
INSERT INTO idempotency.policies (scope, cache_5xx) VALUES ('p5xx-kept', true);
BEGIN;
SELECT outcome, lease_token AS t FROM idempotency.claim('p5xx-kept', 'k1', '\x01', lease => '1 minute') \gset
COMMIT;
SELECT idempotency.checkpoint('p5xx-kept', 'k1', 'authorized', :'t');
SELECT idempotency.complete('p5xx-kept', 'k1', 502, lease_token => :'t');
SELECT outcome, response_status FROM idempotency.claim('p5xx-kept', 'k1', '\x01');

DELETE FROM idempotency.keys WHERE scope IN ('p5xx', 'p5xx-kept');
DELETE FROM idempotency.policies WHERE scope = 'p5xx-kept';

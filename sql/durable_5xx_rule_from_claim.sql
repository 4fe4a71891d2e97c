-- A durable claim is completed under the 5xx rule it was claimed under:
-- a scope's cache_5xx changed after the claim does not change what the
-- claim's 502 does.  Before 0.3.0 complete() read the scope's rule at
-- completion, so a processor 502 was stored and replayed for good.
\set VERBOSITY terse

-- claimed while 5xx are not kept, completed after the scope keeps them
BEGIN;
SELECT lease_token AS t FROM idempotency.claim('rule5', 'k1', '\x01', lease => '1 minute') \gset
COMMIT;
INSERT INTO idempotency.policies (scope, cache_5xx) VALUES ('rule5', true);
SELECT idempotency.complete('rule5', 'k1', 502, '{"error": "bad gateway"}', lease_token => :'t');
SELECT count(*) AS rows_for_k1 FROM idempotency.keys WHERE scope = 'rule5' AND key = 'k1';

-- claimed while 5xx are kept, completed after the scope no longer keeps them
BEGIN;
SELECT lease_token AS t FROM idempotency.claim('rule5', 'k2', '\x01', lease => '1 minute') \gset
COMMIT;
UPDATE idempotency.policies SET cache_5xx = false WHERE scope = 'rule5';
SELECT idempotency.complete('rule5', 'k2', 502, '{"error": "bad gateway"}', lease_token => :'t');
SELECT state, response_status FROM idempotency.keys WHERE scope = 'rule5' AND key = 'k2';

-- a resume keeps the rule of the claim it resumes
UPDATE idempotency.policies SET cache_5xx = true WHERE scope = 'rule5';
BEGIN;
SELECT lease_token AS t FROM idempotency.claim('rule5', 'k3', '\x01', lease => '1 minute') \gset
COMMIT;
SELECT idempotency.checkpoint('rule5', 'k3', 'authorized', :'t');
UPDATE idempotency.keys SET lease_expires_at = now() - interval '1 second'
 WHERE scope = 'rule5' AND key = 'k3';
UPDATE idempotency.policies SET cache_5xx = false WHERE scope = 'rule5';
BEGIN;
SELECT outcome, lease_token AS t FROM idempotency.claim('rule5', 'k3', '\x01', lease => '1 minute') \gset
COMMIT;
SELECT :'outcome' AS outcome;
SELECT idempotency.complete('rule5', 'k3', 504, lease_token => :'t');
SELECT state, response_status FROM idempotency.keys WHERE scope = 'rule5' AND key = 'k3';

-- a token recorded before 0.3.0 (version 4) kept no rule: the scope's
-- current one applies, as it always did
BEGIN;
SELECT lease_token AS t FROM idempotency.claim('rule5', 'k4', '\x01', lease => '1 minute') \gset
COMMIT;
SELECT overlay(:'t' placing '4' from 15 for 1)::uuid AS legacy \gset
UPDATE idempotency.keys SET lease_token = :'legacy' WHERE scope = 'rule5' AND key = 'k4';
UPDATE idempotency.policies SET cache_5xx = true WHERE scope = 'rule5';
SELECT idempotency.complete('rule5', 'k4', 502, lease_token => :'legacy');
SELECT state, response_status FROM idempotency.keys WHERE scope = 'rule5' AND key = 'k4';

DELETE FROM idempotency.keys WHERE scope = 'rule5';
DELETE FROM idempotency.policies WHERE scope = 'rule5';

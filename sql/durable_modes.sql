-- A durable claim is finished under the rules it was made under, whatever
-- the scope's mode becomes: a claim made under 'enforce' (it has a row) is
-- checkpointed, completed and released by its token in every mode; one
-- made under 'off' or 'shadow' recorded nothing, and finishing it stays a
-- no-op even once the scope is enforced.  0.1.0 followed the current mode:
-- after the rollback playbook (a scope set to shadow or off) complete()
-- returned 'skipped' and left the payment in progress, for the reaper to
-- report as abandoned and a re-enforced retry to resume.
BEGIN;
SELECT outcome, lease_token AS t FROM idempotency.claim('dm', 'k1', '\x01', lease => '1 minute') \gset
COMMIT;
INSERT INTO idempotency.policies (scope, mode) VALUES ('dm', 'shadow');
SELECT idempotency.checkpoint('dm', 'k1', 'authorized', :'t');
SELECT recovery_point FROM idempotency.keys WHERE scope = 'dm' AND key = 'k1';
UPDATE idempotency.policies SET mode = 'off' WHERE scope = 'dm';
SELECT idempotency.complete('dm', 'k1', 201, '{"id": "ch_1"}', lease_token => :'t');
SELECT state, response_status FROM idempotency.keys WHERE scope = 'dm' AND key = 'k1';
UPDATE idempotency.policies SET mode = 'enforce' WHERE scope = 'dm';
SELECT outcome, response_body FROM idempotency.claim('dm', 'k1', '\x01');

-- a token that does not hold a claim in progress is fenced off in 'off'
-- mode too
BEGIN;
SELECT outcome FROM idempotency.claim('dm', 'k6', '\x01', lease => '1 minute');
COMMIT;
UPDATE idempotency.policies SET mode = 'off' WHERE scope = 'dm';
SELECT idempotency.checkpoint('dm', 'k6', 'authorized', gen_random_uuid());
UPDATE idempotency.policies SET mode = 'enforce' WHERE scope = 'dm';

-- release() by token in shadow mode deletes the claim it was made for.
BEGIN;
SELECT outcome, lease_token AS t FROM idempotency.claim('dm', 'k2', '\x01', lease => '1 minute') \gset
COMMIT;
UPDATE idempotency.policies SET mode = 'shadow' WHERE scope = 'dm';
SELECT idempotency.release('dm', 'k2', :'t');
SELECT count(*) AS rows_left FROM idempotency.keys WHERE scope = 'dm' AND key = 'k2';

-- A durable claim made in shadow mode records nothing; its token is a
-- version 8 UUID, and finishing it is a no-op once the scope is enforced.
BEGIN;
SELECT outcome, lease_token AS t, substr(lease_token::text, 15, 1) AS uuid_version
  FROM idempotency.claim('dm', 'k3', '\x01', lease => '1 minute') \gset
COMMIT;
SELECT :'uuid_version' AS shadow_token_version;
UPDATE idempotency.policies SET mode = 'enforce' WHERE scope = 'dm';
SELECT idempotency.checkpoint('dm', 'k3', 'authorized', :'t');
SELECT idempotency.complete('dm', 'k3', 201, lease_token => :'t');
SELECT idempotency.release('dm', 'k3', :'t');
SELECT count(*) AS rows_for_k3 FROM idempotency.keys WHERE scope = 'dm' AND key = 'k3';
-- an enforced claim's token is a version 7 UUID, and a token that holds
-- nothing in an enforced scope is still IK428
BEGIN;
SELECT substr(lease_token::text, 15, 1) AS enforced_token_version
  FROM idempotency.claim('dm', 'k4', '\x01', lease => '1 minute');
COMMIT;
SELECT idempotency.complete('dm', 'k5', 201, lease_token => '6f1f0e51-9c0a-4b7e-9d1e-2f0b6c2c9a11');

DELETE FROM idempotency.keys WHERE scope = 'dm';
DELETE FROM idempotency.policies WHERE scope = 'dm';

-- A committed charge never loses its key.  A key freed by release() or
-- by a 5xx complete() is free for the retry once its transaction commits,
-- so a transaction that freed the key of its claim and wrote data cannot
-- commit: IK428, and the charge rolls back with it.  A transaction that
-- wrote nothing commits; a savepoint rolled back gives up the claim and
-- the charge.  release() of a durable claim keeps a recovery point.
CREATE TABLE charges (id text PRIMARY KEY, amount int);
\set VERBOSITY terse

-- claim, charge, the processor's 502, commit: refused, nothing kept
BEGIN;
SELECT outcome FROM idempotency.claim('fk', 'k1', '\x01');
INSERT INTO charges VALUES ('ch_1', 100);
SELECT idempotency.complete('fk', 'k1', 502);
COMMIT;
SELECT count(*) AS charges FROM charges;
-- the retry is new, and charges once
BEGIN;
SELECT outcome FROM idempotency.claim('fk', 'k1', '\x01');
INSERT INTO charges VALUES ('ch_1', 100);
SELECT idempotency.complete('fk', 'k1', 201);
COMMIT;
SELECT count(*) AS charges FROM charges;

-- the same with release(), and with the write after the release
BEGIN;
SELECT outcome FROM idempotency.claim('fk', 'k2', '\x01');
INSERT INTO charges VALUES ('ch_2', 100);
SELECT idempotency.release('fk', 'k2');
COMMIT;
BEGIN;
SELECT outcome FROM idempotency.claim('fk', 'k2', '\x01');
SELECT idempotency.release('fk', 'k2');
INSERT INTO charges VALUES ('ch_2', 100);
COMMIT;
-- and when the write came before the claim
BEGIN;
INSERT INTO charges VALUES ('ch_2', 100);
SELECT outcome FROM idempotency.claim('fk', 'k2', '\x01');
SELECT idempotency.complete('fk', 'k2', 503);
COMMIT;
-- PREPARE TRANSACTION is refused the same way
BEGIN;
SELECT outcome FROM idempotency.claim('fk', 'k2', '\x01');
INSERT INTO charges VALUES ('ch_2', 100);
SELECT idempotency.release('fk', 'k2');
PREPARE TRANSACTION 'fk';
SELECT count(*) AS charges, count(*) FILTER (WHERE id = 'ch_2') AS ch_2 FROM charges;

-- nothing written: the 5xx and the release commit, and free the key
BEGIN;
SELECT outcome FROM idempotency.claim('fk', 'k3', '\x01');
SELECT idempotency.complete('fk', 'k3', 502);
COMMIT;
BEGIN;
SELECT outcome FROM idempotency.claim('fk', 'k3', '\x01');
SELECT idempotency.release('fk', 'k3');
COMMIT;
-- a savepoint rolled back gives up the charge with the claim
BEGIN;
SAVEPOINT attempt;
SELECT outcome FROM idempotency.claim('fk', 'k3', '\x01');
INSERT INTO charges VALUES ('ch_3', 100);
ROLLBACK TO SAVEPOINT attempt;
COMMIT;
-- a key released, then claimed again and stored, keeps its charge
BEGIN;
SELECT outcome FROM idempotency.claim('fk', 'k3', '\x01');
SELECT idempotency.release('fk', 'k3');
SELECT outcome FROM idempotency.claim('fk', 'k3', '\x01');
INSERT INTO charges VALUES ('ch_3', 100);
SELECT idempotency.complete('fk', 'k3', 201);
COMMIT;
SELECT id FROM charges ORDER BY id;

-- A durable claim's row is its key, freed by a 5xx or release() only when
-- the claim recorded no recovery point: the caller's word that nothing
-- durable happened.  So a transaction that frees it may write, as the
-- reference API deletes its pending charge with the 5xx.
BEGIN;
SELECT lease_token AS t FROM idempotency.claim('fk', 'd1', '\x01', lease => '1 minute') \gset
INSERT INTO charges VALUES ('pending_d1', 100);
COMMIT;
BEGIN;
DELETE FROM charges WHERE id = 'pending_d1';
SELECT idempotency.complete('fk', 'd1', 502, lease_token => :'t');
COMMIT;
SELECT count(*) AS rows_for_d1 FROM idempotency.keys WHERE scope = 'fk' AND key = 'd1';

-- release() of a durable claim that recorded a recovery point keeps it,
-- as a 5xx does: the lease ends, and the retry resumes from that point.
BEGIN;
SELECT lease_token AS t FROM idempotency.claim('fk', 'd2', '\x01', lease => '1 minute') \gset
COMMIT;
SELECT idempotency.checkpoint('fk', 'd2', 'authorized', :'t');
SELECT idempotency.release('fk', 'd2', :'t');
SELECT state, recovery_point, lease_expires_at <= now() AS lease_ended
  FROM idempotency.keys WHERE scope = 'fk' AND key = 'd2';
BEGIN;
SELECT outcome, recovery_point FROM idempotency.claim('fk', 'd2', '\x01', lease => '1 minute');
COMMIT;

SELECT count(*) AS charges FROM charges;
DELETE FROM idempotency.keys WHERE scope = 'fk';
DROP TABLE charges;

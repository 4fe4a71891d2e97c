-- A claim must be closed in its transaction: COMMIT or PREPARE with an open
-- claim fails with IK428 and takes the charge down with it.  Savepoints
-- that roll back undo claims and completions made inside them.
CREATE TABLE charges (id text PRIMARY KEY, amount int);
\set VERBOSITY terse

-- COMMIT with an open claim: IK428, and the charge is gone.
BEGIN;
SELECT outcome FROM idempotency.claim('guard', 'forgot-complete', '\x01');
INSERT INTO charges VALUES ('ch_forgot', 100);
COMMIT;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS charges_committed FROM charges WHERE id = 'ch_forgot';
-- The key was not stored and is free again.
BEGIN;
SELECT outcome FROM idempotency.claim('guard', 'forgot-complete', '\x01');
SELECT idempotency.release('guard', 'forgot-complete');
COMMIT;

-- An autocommit claim is a transaction of its own, so it fails the same way.
SELECT outcome FROM idempotency.claim('guard', 'autocommit', '\x01');
\echo :LAST_ERROR_SQLSTATE

-- PREPARE TRANSACTION with an open claim: IK428 before anything is prepared.
BEGIN;
SELECT outcome FROM idempotency.claim('guard', 'prepared', '\x01');
INSERT INTO charges VALUES ('ch_prepared', 100);
PREPARE TRANSACTION 'idempotency_guard';
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid = 'idempotency_guard';
SELECT count(*) AS charges_committed FROM charges WHERE id = 'ch_prepared';

-- A claim in a savepoint that is rolled back is forgotten: commit succeeds
-- and nothing is stored.
BEGIN;
SAVEPOINT s1;
SELECT outcome FROM idempotency.claim('guard', 'in-savepoint', '\x01');
ROLLBACK TO SAVEPOINT s1;
INSERT INTO charges VALUES ('ch_after_savepoint', 100);
COMMIT;
SELECT count(*) AS charges_committed FROM charges WHERE id = 'ch_after_savepoint';
SELECT count(*) AS keys_stored FROM idempotency.keys WHERE key = 'in-savepoint';

-- ... and so is its lock: another session could claim the key now.
BEGIN;
SAVEPOINT s1;
SELECT outcome FROM idempotency.claim('guard', 'lock-in-savepoint', '\x01');
ROLLBACK TO SAVEPOINT s1;
SELECT count(*) AS idempotency_locks FROM pg_locks
 WHERE locktype = 'advisory' AND objsubid = 18763 AND pid = pg_backend_pid();
COMMIT;

-- A claim in a savepoint that is released stays: it must still be closed.
BEGIN;
SAVEPOINT s1;
SELECT outcome FROM idempotency.claim('guard', 'released-savepoint', '\x01');
RELEASE SAVEPOINT s1;
COMMIT;
\echo :LAST_ERROR_SQLSTATE

-- A completion rolled back with its savepoint reopens the claim.
BEGIN;
SELECT outcome FROM idempotency.claim('guard', 'complete-undone', '\x01');
SAVEPOINT s1;
SELECT idempotency.complete('guard', 'complete-undone', 201, '{"id": 1}');
ROLLBACK TO SAVEPOINT s1;
COMMIT;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS keys_stored FROM idempotency.keys WHERE key = 'complete-undone';

-- ... and can be completed again after the rollback.
BEGIN;
SELECT outcome FROM idempotency.claim('guard', 'complete-redone', '\x01');
SAVEPOINT s1;
SELECT idempotency.complete('guard', 'complete-redone', 201, '{"try": 1}');
ROLLBACK TO SAVEPOINT s1;
SELECT idempotency.complete('guard', 'complete-redone', 201, '{"try": 2}');
COMMIT;
SELECT outcome, response_body FROM idempotency.claim('guard', 'complete-redone', '\x01');

-- Nested savepoints: a claim made two levels down and committed up to the
-- top level is guarded like any other.
BEGIN;
SAVEPOINT a;
SAVEPOINT b;
SELECT outcome FROM idempotency.claim('guard', 'nested', '\x01');
RELEASE SAVEPOINT b;
RELEASE SAVEPOINT a;
COMMIT;
\echo :LAST_ERROR_SQLSTATE

-- Rolling back the outer savepoint forgets a claim made in an inner one.
BEGIN;
SAVEPOINT a;
SAVEPOINT b;
SELECT outcome FROM idempotency.claim('guard', 'nested', '\x01');
RELEASE SAVEPOINT b;
ROLLBACK TO SAVEPOINT a;
COMMIT;

-- A PL/pgSQL exception block is a savepoint too.
DO $$
BEGIN
    PERFORM idempotency.claim('guard', 'plpgsql', '\x01');
    RAISE EXCEPTION 'charge failed';
EXCEPTION WHEN raise_exception THEN
    NULL;
END $$;

-- Several claims in one transaction: each must be closed.
BEGIN;
SELECT outcome FROM idempotency.claim('guard', 'multi-1', '\x01');
SELECT outcome FROM idempotency.claim('guard', 'multi-2', '\x01');
SELECT idempotency.complete('guard', 'multi-1', 200);
COMMIT;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS keys_stored FROM idempotency.keys WHERE key LIKE 'multi-%';

-- An open claim of this very transaction is in progress: IK409.
BEGIN;
SELECT outcome FROM idempotency.claim('guard', 'twice', '\x01');
SELECT outcome FROM idempotency.claim('guard', 'twice', '\x01');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- Released and claimed again in one transaction: new again, and guarded.
BEGIN;
SELECT outcome FROM idempotency.claim('guard', 'again', '\x01');
SELECT idempotency.release('guard', 'again');
SELECT outcome FROM idempotency.claim('guard', 'again', '\x01');
COMMIT;
\echo :LAST_ERROR_SQLSTATE

DROP TABLE charges;

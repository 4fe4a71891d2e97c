-- A row of idempotency.keys that breaks its invariants is refused twice
-- over: the table's CHECK constraints refuse the hand edit that would make
-- it, and where a row slipped past them (a table from before 0.2.0, whose
-- constraints are not validated, or a DBA who dropped one) a claim of its
-- key is an IK503 naming the key, never a crash.  0.1.0 read the lease of
-- such a row without a NULL check and took the whole server down.

CREATE FUNCTION pg_temp.claim(k text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    o text;
    detail text;
BEGIN
    SELECT outcome INTO o FROM idempotency.claim('broken', k, '\x01');
    RETURN o;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ': ' || SQLERRM || ' / ' || detail;
END $$;

BEGIN;
SELECT outcome FROM idempotency.claim('broken', 'k-edit', '\x01');
SELECT idempotency.complete('broken', 'k-edit', 201, '{"id": "ch_1"}');
COMMIT;

-- The constraints refuse the edits (the DETAIL, which shows the row to its
-- superuser, is left out here: it holds the times).
\set VERBOSITY terse
UPDATE idempotency.keys SET state = 'in_progress' WHERE scope = 'broken' AND key = 'k-edit';
UPDATE idempotency.keys SET state = 'done' WHERE scope = 'broken' AND key = 'k-edit';
UPDATE idempotency.keys SET response_status = 99 WHERE scope = 'broken' AND key = 'k-edit';
UPDATE idempotency.keys SET response_headers = '[]' WHERE scope = 'broken' AND key = 'k-edit';
UPDATE idempotency.keys SET retain_until = created_at - interval '1 day'
 WHERE scope = 'broken' AND key = 'k-edit';
UPDATE idempotency.keys SET fingerprint = '' WHERE scope = 'broken' AND key = 'k-edit';
\set VERBOSITY default

-- Without the constraints, each edit gets past the table; the claim of the
-- key refuses to use the row and says what is wrong with it.
BEGIN;
ALTER TABLE idempotency.keys DROP CONSTRAINT keys_completed_columns,
    DROP CONSTRAINT keys_in_progress_columns, DROP CONSTRAINT keys_state_domain,
    DROP CONSTRAINT keys_status_range, DROP CONSTRAINT keys_headers_object,
    DROP CONSTRAINT keys_windows_in_order;
UPDATE idempotency.keys SET state = 'in_progress' WHERE scope = 'broken' AND key = 'k-edit';
SELECT pg_temp.claim('k-edit');
UPDATE idempotency.keys SET state = 'done' WHERE scope = 'broken' AND key = 'k-edit';
SELECT pg_temp.claim('k-edit');
UPDATE idempotency.keys SET state = 'completed', response_status = NULL
 WHERE scope = 'broken' AND key = 'k-edit';
SELECT pg_temp.claim('k-edit');
UPDATE idempotency.keys SET response_status = 99 WHERE scope = 'broken' AND key = 'k-edit';
SELECT pg_temp.claim('k-edit');
UPDATE idempotency.keys SET response_status = 201, response_headers = '[]'
 WHERE scope = 'broken' AND key = 'k-edit';
SELECT pg_temp.claim('k-edit');
UPDATE idempotency.keys SET response_headers = NULL, lease_token = gen_random_uuid()
 WHERE scope = 'broken' AND key = 'k-edit';
SELECT pg_temp.claim('k-edit');
UPDATE idempotency.keys SET lease_token = NULL, retain_until = created_at - interval '1 day'
 WHERE scope = 'broken' AND key = 'k-edit';
SELECT pg_temp.claim('k-edit');
-- the same for a durable claim in progress that lost its lease's end
UPDATE idempotency.keys SET retain_until = created_at + interval '7 days',
       state = 'in_progress', response_status = NULL, response_body = NULL,
       lease_token = gen_random_uuid(),
       lease_duration = '1 minute', lease_expires_at = NULL
 WHERE scope = 'broken' AND key = 'k-edit';
SELECT pg_temp.claim('k-edit');
-- other keys are served as ever
SELECT pg_temp.claim('k-other');
ROLLBACK;

-- The SQLSTATE, for an API's error mapping: 503, an operator must act.
BEGIN;
ALTER TABLE idempotency.keys DROP CONSTRAINT keys_state_domain;
UPDATE idempotency.keys SET state = 'done' WHERE scope = 'broken' AND key = 'k-edit';
SELECT split_part(pg_temp.claim('k-edit'), ':', 1) AS sqlstate;
ROLLBACK;

SELECT outcome, response_body FROM idempotency.claim('broken', 'k-edit', '\x01');
DELETE FROM idempotency.keys WHERE scope = 'broken';

-- What a DBA adds to idempotency.keys applies to every write of the
-- extension, on every path, as for any INSERT, UPDATE or DELETE: a partial
-- index on the leases in progress, an expression index on the charge id
-- in the stored response, an AFTER row trigger that audits, and a CHECK
-- constraint added later.  0.1.0 refused every complete() once such an
-- index existed, and applied triggers and constraints on some paths only.
-- A constraint's error names the key and the constraint, never the row
-- (which would show the stored fingerprint and response).

CREATE INDEX keys_live_leases ON idempotency.keys (lease_expires_at)
    WHERE state = 'in_progress';
CREATE INDEX keys_charge_id ON idempotency.keys ((response_body->>'id'));

CREATE TABLE public.keys_audit (
    n serial,
    op text,
    scope text,
    key text,
    state text,
    recovery_point text
);
CREATE FUNCTION public.audit_keys() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r idempotency.keys;
BEGIN
    r := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    INSERT INTO public.keys_audit (op, scope, key, state, recovery_point)
    VALUES (TG_OP, r.scope, r.key, r.state, r.recovery_point);
    RETURN NULL;
END $$;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON idempotency.keys
    FOR EACH ROW EXECUTE FUNCTION public.audit_keys();

-- A completed key: one insert.
BEGIN;
SELECT outcome FROM idempotency.claim('dba', 'k1', '\x01');
SELECT idempotency.complete('dba', 'k1', 201, '{"id": "ch_1"}');
COMMIT;

-- A durable claim: insert, checkpoint (update), complete (update).
BEGIN;
SELECT outcome, lease_token AS t FROM idempotency.claim('dba', 'k2', '\x01', lease => '1 minute') \gset
COMMIT;
SELECT idempotency.checkpoint('dba', 'k2', 'authorized', :'t');
SELECT idempotency.complete('dba', 'k2', 201, '{"id": "ch_2"}', lease_token => :'t');

-- A durable claim released (delete), and one still in progress.
BEGIN;
SELECT outcome, lease_token AS t FROM idempotency.claim('dba', 'k3', '\x01', lease => '1 minute') \gset
COMMIT;
SELECT idempotency.release('dba', 'k3', :'t');
BEGIN;
SELECT outcome FROM idempotency.claim('dba', 'k4', '\x01', lease => '1 minute');
COMMIT;

-- A row past retention reaped (delete).
UPDATE idempotency.keys SET created_at = now() - interval '9 days',
       expires_at = now() - interval '8 days', retain_until = now() - interval '1 day'
 WHERE scope = 'dba' AND key = 'k1';
SELECT idempotency.reap() >= 1 AS reaped;

SELECT op, key, state, recovery_point FROM public.keys_audit WHERE scope = 'dba' ORDER BY n;

-- The indexes hold what the table holds, and serve their queries.
SET enable_seqscan = off;
EXPLAIN (COSTS OFF)
SELECT key FROM idempotency.keys WHERE state = 'in_progress' AND lease_expires_at > now();
SELECT key FROM idempotency.keys
 WHERE scope = 'dba' AND state = 'in_progress' AND lease_expires_at > now();
EXPLAIN (COSTS OFF)
SELECT key FROM idempotency.keys WHERE response_body->>'id' = 'ch_2';
SELECT key FROM idempotency.keys WHERE response_body->>'id' = 'ch_2';
RESET enable_seqscan;

-- A CHECK constraint added later applies to both ways of completing.
INSERT INTO idempotency.policies (scope, cache_5xx) VALUES ('dba', true);
ALTER TABLE idempotency.keys ADD CONSTRAINT no_stored_5xx CHECK (response_status < 500);
BEGIN;
SELECT outcome FROM idempotency.claim('dba', 'k5', '\x01');
SELECT idempotency.complete('dba', 'k5', 503, '{"secret": "stored response"}');
ROLLBACK;
DO $$
DECLARE
    detail text;
    constraint_name text;
BEGIN
    PERFORM idempotency.claim('dba', 'k5', '\x01');
    PERFORM idempotency.complete('dba', 'k5', 503, '{"secret": "stored response"}');
EXCEPTION WHEN check_violation THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL,
                            constraint_name = CONSTRAINT_NAME;
    RAISE NOTICE 'SQLSTATE %, constraint %, detail "%"', SQLSTATE, constraint_name, detail;
END $$;
BEGIN;
SELECT outcome, lease_token AS t FROM idempotency.claim('dba', 'k6', '\x01', lease => '1 minute') \gset
COMMIT;
SELECT idempotency.complete('dba', 'k6', 503, '{"secret": "stored response"}', lease_token => :'t');
SELECT idempotency.complete('dba', 'k6', 201, '{"id": "ch_6"}', lease_token => :'t');

ALTER TABLE idempotency.keys DROP CONSTRAINT no_stored_5xx;
DELETE FROM idempotency.policies WHERE scope = 'dba';
DROP TRIGGER audit ON idempotency.keys;
DROP FUNCTION public.audit_keys();
DROP TABLE public.keys_audit;
DROP INDEX idempotency.keys_live_leases, idempotency.keys_charge_id;
DELETE FROM idempotency.keys WHERE scope = 'dba';

-- TRUNCATE of idempotency.keys forgets every request, so every retry in
-- flight would be charged again: it is refused unless a superuser allows
-- it for the session, and session_replication_role does not switch the
-- guard off.  0.1.0 had no guard: 10 hot keys charged twice each.
BEGIN;
SELECT outcome FROM idempotency.claim('tg', 'k1', '\x01');
SELECT idempotency.complete('tg', 'k1', 201);
COMMIT;
TRUNCATE idempotency.keys;
SET session_replication_role = replica;
TRUNCATE idempotency.keys;
RESET session_replication_role;
-- so is a TRUNCATE that cascades to the keys, from a table they reference
BEGIN;
CREATE TABLE public.tg_merchants (scope text COLLATE "C" PRIMARY KEY);
INSERT INTO public.tg_merchants SELECT DISTINCT scope FROM idempotency.keys;
ALTER TABLE idempotency.keys ADD CONSTRAINT tg_merchant
    FOREIGN KEY (scope) REFERENCES public.tg_merchants;
TRUNCATE public.tg_merchants CASCADE;
ROLLBACK;
-- an application role cannot allow it
SET client_min_messages = warning;
DROP ROLE IF EXISTS idem_tg_app;
RESET client_min_messages;
CREATE ROLE idem_tg_app;
SET ROLE idem_tg_app;
SET idempotency.allow_truncate = on;
RESET ROLE;
DROP ROLE idem_tg_app;
SELECT outcome FROM idempotency.claim('tg', 'k1', '\x01');
-- a superuser can, for the session, on purpose
BEGIN;
SET LOCAL idempotency.allow_truncate = on;
TRUNCATE idempotency.keys;
SELECT count(*) AS rows_left FROM idempotency.keys;
ROLLBACK;
SELECT outcome FROM idempotency.claim('tg', 'k1', '\x01');
DELETE FROM idempotency.keys WHERE scope = 'tg';

-- A DBA's CHECK constraint or column default on idempotency.keys that
-- calls an SQL function follows CREATE OR REPLACE FUNCTION in a session
-- that already wrote the table, as a plain INSERT in the same session
-- does.  The extension keeps the table's compiled expressions across
-- transactions, and an SQL function's body is inlined into them; before
-- 0.3.0 a warm session kept applying the old body (a tightened CHECK was
-- not applied on the extension's path).

CREATE FUNCTION public.max_status() RETURNS int
LANGUAGE sql IMMUTABLE AS 'SELECT 599';
CREATE FUNCTION public.charge_note() RETURNS text
LANGUAGE sql IMMUTABLE AS $$SELECT 'first'$$;
ALTER TABLE idempotency.keys
    ADD COLUMN charge_note text DEFAULT public.charge_note(),
    ADD CONSTRAINT status_allowed CHECK (response_status <= public.max_status());

-- A warm session: the compiled constraint and default are cached.
BEGIN;
SELECT outcome FROM idempotency.claim('replaced', 'k1', '\x01');
SELECT idempotency.complete('replaced', 'k1', 402, '{"error": "declined"}');
COMMIT;

-- The DBA tightens the CHECK and changes the default.
CREATE OR REPLACE FUNCTION public.max_status() RETURNS int
LANGUAGE sql IMMUTABLE AS 'SELECT 399';
CREATE OR REPLACE FUNCTION public.charge_note() RETURNS text
LANGUAGE sql IMMUTABLE AS $$SELECT 'second'$$;

-- The same session applies the new bodies.
BEGIN;
SELECT outcome FROM idempotency.claim('replaced', 'k2', '\x01');
SELECT idempotency.complete('replaced', 'k2', 402, '{"error": "declined"}');
ROLLBACK;
BEGIN;
SELECT outcome FROM idempotency.claim('replaced', 'k3', '\x01');
SELECT idempotency.complete('replaced', 'k3', 201, '{"id": "ch_3"}');
COMMIT;
SELECT key, response_status, charge_note FROM idempotency.keys
 WHERE scope = 'replaced' ORDER BY key;

DELETE FROM idempotency.keys WHERE scope = 'replaced';
ALTER TABLE idempotency.keys
    DROP COLUMN charge_note, DROP CONSTRAINT status_allowed;
DROP FUNCTION public.max_status(), public.charge_note();

-- A changed shape of idempotency.keys is one clear error, IK503, that
-- says what differs, never a crash or garbage: a column of another type,
-- a NOT NULL dropped, a column renamed, the primary key dropped, UNLOGGED,
-- a BEFORE row trigger (even disabled), a rule, a DBA's NOT NULL column
-- without a default, a copy renamed into the table's place, the TRUNCATE
-- guard dropped or weakened.
-- What a DBA may do keeps working: a column added and dropped again, an
-- extra nullable column, or one with a default, which inserts fill.
-- Each change is made in a transaction that is rolled back, except where
-- a committed change is the point.

CREATE FUNCTION pg_temp.payment(k text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    o text;
    detail text;
BEGIN
    SELECT outcome INTO o FROM idempotency.claim('drift', k, '\x01');
    IF o = 'new' THEN
        PERFORM idempotency.complete('drift', k, 201, '{"id": "ch_drift"}');
    END IF;
    RETURN o;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ': ' || SQLERRM || ' / ' || detail;
END $$;

SELECT pg_temp.payment('k-before');

-- Columns of another type, or another nullability.
BEGIN;
ALTER TABLE idempotency.keys ALTER COLUMN response_status TYPE bigint;
SELECT pg_temp.payment('k1');
ROLLBACK;
BEGIN;
ALTER TABLE idempotency.keys ALTER COLUMN response_body TYPE json;
SELECT pg_temp.payment('k1');
ROLLBACK;
BEGIN;
ALTER TABLE idempotency.keys ALTER COLUMN fingerprint DROP NOT NULL;
SELECT pg_temp.payment('k1');
ROLLBACK;
BEGIN;
ALTER TABLE idempotency.keys RENAME COLUMN recovery_point TO progress;
SELECT pg_temp.payment('k1');
ROLLBACK;

-- The index rows are looked up by.
BEGIN;
ALTER TABLE idempotency.keys DROP CONSTRAINT keys_pkey;
SELECT pg_temp.payment('k1');
ROLLBACK;

-- Persistence: unlogged rows would vanish in a crash, the charges not.
BEGIN;
ALTER TABLE idempotency.keys SET UNLOGGED;
SELECT pg_temp.payment('k1');
ROLLBACK;

-- What could change a row behind the library's back, or be bypassed.
CREATE FUNCTION pg_temp.rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.retain_until := NEW.created_at;
    RETURN NEW;
END $$;
BEGIN;
CREATE TRIGGER shorten BEFORE INSERT ON idempotency.keys
    FOR EACH ROW EXECUTE FUNCTION pg_temp.rewrite();
SELECT pg_temp.payment('k1');
ROLLBACK;
BEGIN;
CREATE TRIGGER shorten BEFORE UPDATE ON idempotency.keys
    FOR EACH ROW EXECUTE FUNCTION pg_temp.rewrite();
ALTER TABLE idempotency.keys DISABLE TRIGGER shorten;
SELECT pg_temp.payment('k1');
ROLLBACK;
BEGIN;
CREATE RULE no_deletes AS ON DELETE TO idempotency.keys DO INSTEAD NOTHING;
SELECT pg_temp.payment('k1');
ROLLBACK;

-- A DBA's column that inserts cannot fill.
BEGIN;
ALTER TABLE idempotency.keys ADD COLUMN ticket int NOT NULL DEFAULT 0;
ALTER TABLE idempotency.keys ALTER COLUMN ticket DROP DEFAULT;
SELECT pg_temp.payment('k1');
ROLLBACK;

-- A copy renamed into its place: same shape, but not the extension's
-- member (pg_dump would not dump its rows as the extension's data) and
-- without the TRUNCATE guard.  The session has used the table before.
BEGIN;
CREATE TABLE idempotency.keys_new (LIKE idempotency.keys INCLUDING ALL);
INSERT INTO idempotency.keys_new SELECT * FROM idempotency.keys;
ALTER TABLE idempotency.keys RENAME TO keys_old;
ALTER TABLE idempotency.keys_new RENAME TO keys;
SELECT pg_temp.payment('k-before');
SELECT pg_temp.payment('k1');
ROLLBACK;
SELECT pg_temp.payment('k-before');

-- The TRUNCATE guard dropped, disabled, or no longer ALWAYS (a replica
-- role would pass it).
BEGIN;
DROP TRIGGER keys_truncate_guard ON idempotency.keys;
SELECT pg_temp.payment('k-before');
ROLLBACK;
BEGIN;
ALTER TABLE idempotency.keys DISABLE TRIGGER keys_truncate_guard;
SELECT pg_temp.payment('k-before');
ROLLBACK;
BEGIN;
ALTER TABLE idempotency.keys ENABLE TRIGGER keys_truncate_guard;
SELECT pg_temp.payment('k-before');
ROLLBACK;

-- Nothing of the above was stored; the table works as before.
SELECT count(*) AS rows_stored FROM idempotency.keys WHERE scope = 'drift';
SELECT pg_temp.payment('k1');

-- A column added and dropped again, committed (0.1.0 counted columns, so
-- this broke every claim for good): claims go on.
ALTER TABLE idempotency.keys ADD COLUMN scratch int;
ALTER TABLE idempotency.keys DROP COLUMN scratch;
SELECT pg_temp.payment('k2');
SELECT pg_temp.payment('k2');

-- Extra columns, committed: nullable, or with a default that inserts fill.
ALTER TABLE idempotency.keys ADD COLUMN note text;
ALTER TABLE idempotency.keys ADD COLUMN stored_by text NOT NULL DEFAULT current_user;
SELECT pg_temp.payment('k3');
SELECT key, note, stored_by = current_user AS default_filled
  FROM idempotency.keys WHERE scope = 'drift' AND key = 'k3';
ALTER TABLE idempotency.keys DROP COLUMN note, DROP COLUMN stored_by;
SELECT pg_temp.payment('k3');

-- The SQLSTATE, for an API's error mapping: 503, an operator must act.
BEGIN;
ALTER TABLE idempotency.keys SET UNLOGGED;
SELECT split_part(pg_temp.payment('k4'), ':', 1) AS sqlstate;
ROLLBACK;

DELETE FROM idempotency.keys WHERE scope = 'drift';

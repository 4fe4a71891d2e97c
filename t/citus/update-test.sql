-- A test-only update of the extension, from 0.3.0 to 0.3.0citustest, that
-- scripts/test-citus.sh installs in its private mount namespace only, for
-- t/citus/005: a table change and a new function, as a real update makes
-- them, to run the update procedure of a distributed install against.
ALTER TABLE idempotency.keys ADD COLUMN note text;
CREATE FUNCTION idempotency.citus_update_test() RETURNS text
LANGUAGE sql AS $$SELECT 'updated'$$;

/* idempotency--0.1.0--0.2.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION idempotency UPDATE TO '0.2.0'" to load this file. \quit

-- Keys and policies are data, not schema: pg_dump and pg_upgrade keep them.
SELECT pg_catalog.pg_extension_config_dump('idempotency.keys', '');
SELECT pg_catalog.pg_extension_config_dump('idempotency.policies', '');

-- A durable claim whose lease outlived its retention (0.1.0 let a lease be
-- longer than the windows) keeps its row a replay window past the lease,
-- the rule that claim(), checkpoint() and resume keep from now on.
UPDATE idempotency.keys
   SET retain_until = lease_expires_at + (expires_at - created_at)
 WHERE state = 'in_progress'
   AND lease_expires_at IS NOT NULL
   AND expires_at <> 'infinity'
   AND lease_expires_at + (expires_at - created_at) > retain_until;

-- The invariants of a row, as CHECK constraints.  Each row is checked
-- first, holding only a share lock, so that a row that breaks one stops
-- the update with a message naming it, before anything has changed.  The
-- constraints are then added NOT VALID, which holds the table's exclusive
-- lock only for a moment; README.md ("Upgrading") has the VALIDATE
-- statement, which scans the table again without blocking claims.
DO $$
DECLARE
	invariants CONSTANT text[][] := ARRAY[
		['keys_names_size',
		 $c$octet_length(scope) BETWEEN 1 AND 255
			   AND octet_length(key) BETWEEN 1 AND 255$c$],
		['keys_fingerprint_size',
		 $c$octet_length(fingerprint) BETWEEN 1 AND 255$c$],
		['keys_state_domain',
		 $c$state IN ('completed', 'in_progress')$c$],
		['keys_completed_columns',
		 $c$state <> 'completed'
			   OR (response_status IS NOT NULL AND lease_token IS NULL
				   AND lease_duration IS NULL AND lease_expires_at IS NULL)$c$],
		['keys_in_progress_columns',
		 $c$state <> 'in_progress'
			   OR (response_status IS NULL AND response_headers IS NULL
				   AND response_body IS NULL AND lease_token IS NOT NULL
				   AND lease_duration IS NOT NULL
				   AND lease_duration > interval '0'
				   AND lease_expires_at IS NOT NULL)$c$],
		['keys_status_range',
		 $c$response_status BETWEEN 100 AND 599$c$],
		['keys_headers_object',
		 $c$jsonb_typeof(response_headers) = 'object'$c$],
		['keys_windows_in_order',
		 $c$created_at <= expires_at AND expires_at <= retain_until$c$],
		['keys_lease_within_retention',
		 $c$lease_expires_at <= retain_until$c$]];
	broken_by text := '';
	bad record;
BEGIN
	-- one scan: the first constraint that a row breaks (is false for)
	FOR i IN 1 .. array_length(invariants, 1) LOOP
		broken_by := broken_by || format(' WHEN (%s) IS FALSE THEN %L',
										 invariants[i][2], invariants[i][1]);
	END LOOP;
	EXECUTE format('SELECT scope, key, broken FROM (SELECT scope, key, CASE%s END AS broken'
				   ' FROM idempotency.keys) AS k WHERE broken IS NOT NULL LIMIT 1',
				   broken_by)
	   INTO bad;
	IF bad.broken IS NOT NULL THEN
		RAISE EXCEPTION 'row of idempotency key "%" in scope "%" breaks constraint %',
						bad.key, bad.scope, bad.broken
			USING ERRCODE = 'IK503',
				  DETAIL = 'Version 0.2.0 adds CHECK constraints to idempotency.keys; nothing was changed.',
				  HINT = 'Correct or delete the row, then run ALTER EXTENSION idempotency UPDATE again.';
	END IF;
	FOR i IN 1 .. array_length(invariants, 1) LOOP
		EXECUTE format('ALTER TABLE idempotency.keys ADD CONSTRAINT %I CHECK (%s) NOT VALID',
					   invariants[i][1], invariants[i][2]);
	END LOOP;
END
$$;

-- TRUNCATE would forget every key, so that every retry charged again; it
-- is refused unless a superuser allows it for the session.
CREATE FUNCTION idempotency.keys_truncate_guard()
RETURNS trigger
AS 'MODULE_PATHNAME', 'idempotency_keys_truncate_guard'
LANGUAGE C;
REVOKE ALL ON FUNCTION idempotency.keys_truncate_guard() FROM PUBLIC;

CREATE TRIGGER keys_truncate_guard
	BEFORE TRUNCATE ON idempotency.keys
	FOR EACH STATEMENT EXECUTE FUNCTION idempotency.keys_truncate_guard();
ALTER TABLE idempotency.keys ENABLE ALWAYS TRIGGER keys_truncate_guard;

-- Policy changes reach every backend through a row trigger, which logical
-- replication's apply worker fires (it fires no statement triggers), and a
-- statement trigger for TRUNCATE.
DROP TRIGGER policies_changed ON idempotency.policies;
CREATE TRIGGER policies_changed
	AFTER INSERT OR UPDATE OR DELETE ON idempotency.policies
	FOR EACH ROW EXECUTE FUNCTION idempotency.policies_changed();
ALTER TABLE idempotency.policies ENABLE ALWAYS TRIGGER policies_changed;

CREATE TRIGGER policies_truncated
	AFTER TRUNCATE ON idempotency.policies
	FOR EACH STATEMENT EXECUTE FUNCTION idempotency.policies_changed();
ALTER TABLE idempotency.policies ENABLE ALWAYS TRIGGER policies_truncated;

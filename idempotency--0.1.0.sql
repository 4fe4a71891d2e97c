/* idempotency--0.1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION idempotency" to load this file. \quit

-- One row per (scope, key) whose request completed, or whose durable claim
-- (claim with a lease) is in progress.  A claim without a lease writes
-- nothing until complete(): the per-key lock covers the request in flight.
-- Keyed by scope first, so that the table can be sharded by scope.  Scopes
-- and keys are opaque identifiers, compared byte by byte (COLLATE "C").
-- The functions validate every value and write the rows directly, not
-- through the executor, so the table has no CHECK constraints to suggest
-- otherwise; its columns are in the order src/store.c expects.
CREATE TABLE idempotency.keys (
	scope				text		COLLATE "C" NOT NULL,
	key					text		COLLATE "C" NOT NULL,
	fingerprint			bytea		NOT NULL,
	state				text		NOT NULL,	-- 'completed' or 'in_progress'
	response_status		integer,
	response_headers	jsonb,
	response_body		jsonb,
	recovery_point		text,
	lease_token			uuid,
	lease_duration		interval,
	lease_expires_at	timestamptz,
	created_at			timestamptz	NOT NULL,
	expires_at			timestamptz	NOT NULL,
	retain_until		timestamptz	NOT NULL,
	PRIMARY KEY (scope, key)
);

-- The reaper deletes the oldest rows past retention first.
CREATE INDEX keys_retain_until_idx ON idempotency.keys (retain_until);

COMMENT ON TABLE idempotency.keys IS
	'Idempotency keys and their stored responses; written only by the idempotency functions';

-- The functions write idempotency.keys as its owner, so that an
-- application role needs EXECUTE on them and no privilege on the table.
-- Their SPI queries schema-qualify every name and operator, so no
-- search_path of the caller can redirect them.

CREATE FUNCTION idempotency.claim(
	scope text,
	key text,
	fingerprint bytea,
	lease interval DEFAULT NULL,
	wait interval DEFAULT NULL,
	OUT outcome text,
	OUT response_status integer,
	OUT response_headers jsonb,
	OUT response_body jsonb,
	OUT recovery_point text,
	OUT first_seen timestamptz,
	OUT lease_token uuid)
RETURNS record
AS 'MODULE_PATHNAME', 'idempotency_claim'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER;

CREATE FUNCTION idempotency.complete(
	scope text,
	key text,
	response_status integer,
	response_body jsonb DEFAULT NULL,
	response_headers jsonb DEFAULT NULL,
	lease_token uuid DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'idempotency_complete'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER;

CREATE FUNCTION idempotency.release(
	scope text,
	key text,
	lease_token uuid DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'idempotency_release'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER;

CREATE FUNCTION idempotency.checkpoint(
	scope text,
	key text,
	recovery_point text,
	lease_token uuid)
RETURNS void
AS 'MODULE_PATHNAME', 'idempotency_checkpoint'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER;

-- Deletes rows past retention in the caller's transaction, for clusters that
-- schedule it (pg_cron) rather than preload the library's reaper.
CREATE FUNCTION idempotency.reap(max_rows integer DEFAULT 10000)
RETURNS bigint
AS 'MODULE_PATHNAME', 'idempotency_reap'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER;

-- STABLE, not IMMUTABLE: the result depends on idempotency.fingerprint_secret.
CREATE FUNCTION idempotency.fingerprint(method text, path text, body jsonb)
RETURNS bytea
AS 'MODULE_PATHNAME', 'idempotency_fingerprint_request'
LANGUAGE C STABLE PARALLEL SAFE;

-- A body as text is parsed here, so that malformed JSON is an IK400.
CREATE FUNCTION idempotency.fingerprint(method text, path text, body text)
RETURNS bytea
AS 'MODULE_PATHNAME', 'idempotency_fingerprint_request_text'
LANGUAGE C STABLE PARALLEL SAFE;

CREATE FUNCTION idempotency.fingerprint(body bytea)
RETURNS bytea
AS 'MODULE_PATHNAME', 'idempotency_fingerprint_bytes'
LANGUAGE C STABLE PARALLEL SAFE;

-- Nothing is granted to PUBLIC; README.md shows the grants for an
-- application role.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA idempotency FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA idempotency FROM PUBLIC;

/* idempotency--0.2.0--0.3.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION idempotency UPDATE TO '0.3.0'" to load this file. \quit

-- Durable claims that nobody finished before their retention ended: each
-- is a payment whose outcome is unknown, to reconcile with the processor.
-- The functions add a row in the transaction that reaps or replaces the
-- claim's key (src/store.c), so it commits, prepares and replicates with
-- that change; an operator deletes it once reconciled.  It has no
-- fingerprint: that does not help reconcile, and support staff may be
-- given SELECT on this table.  The primary key serves the operator's
-- deletes and logical replication's replica identity.
CREATE TABLE idempotency.abandoned_claims (
	scope				text		COLLATE "C" NOT NULL,
	key					text		COLLATE "C" NOT NULL,
	recovery_point		text,
	lease_token			uuid		NOT NULL,
	first_seen			timestamptz	NOT NULL,
	lease_expires_at	timestamptz	NOT NULL,
	abandoned_at		timestamptz	NOT NULL,
	how					text		NOT NULL
		CHECK (how IN ('reaped', 'replaced')),
	PRIMARY KEY (lease_token, abandoned_at)
);

COMMENT ON TABLE idempotency.abandoned_claims IS
	'Durable claims abandoned before completion, to reconcile with the processor; delete a row once reconciled';

SELECT pg_catalog.pg_extension_config_dump('idempotency.abandoned_claims', '');

REVOKE ALL ON idempotency.abandoned_claims FROM PUBLIC;

-- The secrets never reach parallel workers (src/guc.c): the functions that
-- hash under them run in the leader.  The 0.2.0 catalog's PARALLEL SAFE
-- functions refuse to hash in a worker whose leader has a secret.
ALTER FUNCTION idempotency.fingerprint(text, text, jsonb) PARALLEL RESTRICTED;
ALTER FUNCTION idempotency.fingerprint(text, text, text) PARALLEL RESTRICTED;
ALTER FUNCTION idempotency.fingerprint(bytea) PARALLEL RESTRICTED;
ALTER FUNCTION idempotency.downstream_key(text, text, bytea, text) PARALLEL RESTRICTED;

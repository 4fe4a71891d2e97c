/* idempotency--0.2.0--0.3.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION idempotency UPDATE TO '0.3.0'" to load this file. \quit

-- The secrets never reach parallel workers (src/guc.c): the functions that
-- hash under them run in the leader.  The 0.2.0 catalog's PARALLEL SAFE
-- functions refuse to hash in a worker whose leader has a secret.
ALTER FUNCTION idempotency.fingerprint(text, text, jsonb) PARALLEL RESTRICTED;
ALTER FUNCTION idempotency.fingerprint(text, text, text) PARALLEL RESTRICTED;
ALTER FUNCTION idempotency.fingerprint(bytea) PARALLEL RESTRICTED;
ALTER FUNCTION idempotency.downstream_key(text, text, bytea, text) PARALLEL RESTRICTED;

-- The per-scope statistics hold the scopes of every database, each in its
-- database's encoding.  A role sees its own database's scopes only,
-- unless it has the privileges of pg_read_all_stats; and a scope that the
-- reading database's encoding cannot hold is shown as the hex of its
-- bytes, never an error for the whole view.
SET client_min_messages = warning;
DROP DATABASE IF EXISTS idem_ss_latin1;
DROP ROLE IF EXISTS idem_ss_reader;
DROP ROLE IF EXISTS idem_ss_allstats;
RESET client_min_messages;
CREATE ROLE idem_ss_reader;
CREATE ROLE idem_ss_allstats IN ROLE pg_read_all_stats;
CREATE DATABASE idem_ss_latin1 TEMPLATE template0 ENCODING 'LATIN1'
    LC_COLLATE 'C' LC_CTYPE 'C';
SELECT idempotency.scope_stats_reset();

-- Two scopes of this UTF8 database: one LATIN1 can hold, one it cannot.
BEGIN;
SELECT outcome FROM idempotency.claim('café GmbH', 'k1', '\x01');
SELECT idempotency.complete('café GmbH', 'k1', 200);
SELECT outcome FROM idempotency.claim('café €uro GmbH', 'k1', '\x01');
SELECT idempotency.complete('café €uro GmbH', 'k1', 200);
COMMIT;

\c idem_ss_latin1
SET client_encoding = UTF8;
CREATE EXTENSION idempotency CASCADE;
GRANT USAGE ON SCHEMA idempotency TO idem_ss_reader, idem_ss_allstats;
GRANT SELECT ON idempotency.scope_stats TO idem_ss_reader, idem_ss_allstats;
GRANT EXECUTE ON FUNCTION idempotency.read_scope_stats()
    TO idem_ss_reader, idem_ss_allstats;
BEGIN;
SELECT outcome FROM idempotency.claim('latin scope', 'k1', '\x01');
SELECT idempotency.complete('latin scope', 'k1', 200);
COMMIT;

-- A superuser and a role with pg_read_all_stats see every database's
-- scopes: the one LATIN1 cannot hold as its bytes.
SELECT database = current_database() AS here, scope, claims_new
  FROM idempotency.scope_stats ORDER BY 1, 2;
SET ROLE idem_ss_allstats;
SELECT database = current_database() AS here, scope, claims_new
  FROM idempotency.scope_stats ORDER BY 1, 2;
-- Another role sees this database's scopes only.
SET ROLE idem_ss_reader;
SELECT database = current_database() AS here, scope, claims_new
  FROM idempotency.scope_stats ORDER BY 1, 2;
RESET ROLE;

\c contrib_regression
SELECT idempotency.scope_stats_reset();
DROP DATABASE idem_ss_latin1;
DROP ROLE idem_ss_reader;
DROP ROLE idem_ss_allstats;

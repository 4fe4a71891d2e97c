/* idempotency--0.3.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION idempotency" to load this file. \quit

-- One row per (scope, key) whose request completed, or whose durable claim
-- (claim with a lease) is in progress.  A claim without a lease writes
-- nothing until complete(): the per-key lock covers the request in flight.
-- The primary key leads with the key, not the scope: keys are nearly
-- unique where scopes repeat, so a comparison in the index settles on its
-- first column (measured: half the comparison work of a claim).  Scopes
-- and keys are opaque identifiers, compared byte by byte (COLLATE "C").
-- The functions write it through the executor (src/store.c), so its
-- constraints, a DBA's indexes and AFTER row triggers apply as for any
-- INSERT; they find its columns by name.  The CHECK constraints state the
-- invariants of a row, which the functions also check when they read one.
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
	PRIMARY KEY (key, scope),
	CONSTRAINT keys_names_size
		CHECK (octet_length(scope) BETWEEN 1 AND 255
			   AND octet_length(key) BETWEEN 1 AND 255),
	CONSTRAINT keys_fingerprint_size
		CHECK (octet_length(fingerprint) BETWEEN 1 AND 255),
	CONSTRAINT keys_state_domain
		CHECK (state IN ('completed', 'in_progress')),
	CONSTRAINT keys_completed_columns
		CHECK (state <> 'completed'
			   OR (response_status IS NOT NULL AND lease_token IS NULL
				   AND lease_duration IS NULL AND lease_expires_at IS NULL)),
	CONSTRAINT keys_in_progress_columns
		CHECK (state <> 'in_progress'
			   OR (response_status IS NULL AND response_headers IS NULL
				   AND response_body IS NULL AND lease_token IS NOT NULL
				   AND lease_duration IS NOT NULL
				   AND lease_duration > interval '0'
				   AND lease_expires_at IS NOT NULL)),
	CONSTRAINT keys_status_range
		CHECK (response_status BETWEEN 100 AND 599),
	CONSTRAINT keys_headers_object
		CHECK (jsonb_typeof(response_headers) = 'object'),
	CONSTRAINT keys_windows_in_order
		CHECK (created_at <= expires_at AND expires_at <= retain_until),
	CONSTRAINT keys_lease_within_retention
		CHECK (lease_expires_at <= retain_until)
);

-- The reaper deletes the oldest rows past retention first.
CREATE INDEX keys_retain_until_idx ON idempotency.keys (retain_until);

COMMENT ON TABLE idempotency.keys IS
	'Idempotency keys and their stored responses; written only by the idempotency functions';

-- Keys and policies are data, not schema: pg_dump and pg_upgrade keep them.
SELECT pg_catalog.pg_extension_config_dump('idempotency.keys', '');

-- TRUNCATE would forget every key, so that every retry charged again; it
-- is refused unless a superuser allows it for the session
-- (src/truncate_guard.c).  ALWAYS: session_replication_role does not
-- switch it off.
CREATE FUNCTION idempotency.keys_truncate_guard()
RETURNS trigger
AS 'MODULE_PATHNAME', 'idempotency_keys_truncate_guard'
LANGUAGE C;

CREATE TRIGGER keys_truncate_guard
	BEFORE TRUNCATE ON idempotency.keys
	FOR EACH STATEMENT EXECUTE FUNCTION idempotency.keys_truncate_guard();
ALTER TABLE idempotency.keys ENABLE ALWAYS TRIGGER keys_truncate_guard;

-- Per-scope overrides of idempotency.mode, ttl, retain and the 5xx rule;
-- NULL keeps the default.  Operators write it; a committed change applies
-- to the next claim.
CREATE TABLE idempotency.policies (
	scope		text		COLLATE "C" PRIMARY KEY
		CHECK (octet_length(scope) BETWEEN 1 AND 255),
	mode		text
		CHECK (mode IN ('off', 'shadow', 'enforce')),
	ttl			interval
		CHECK (ttl > interval '0'),
	retain		interval
		CHECK (retain > interval '0'),
	cache_5xx	boolean,
	CHECK (retain >= ttl)
);

COMMENT ON TABLE idempotency.policies IS
	'Per-scope rollout mode, replay window, retention and 5xx rule; NULL columns keep the idempotency.* defaults';

SELECT pg_catalog.pg_extension_config_dump('idempotency.policies', '');

-- A claim reads idempotency.policies only while it has rows, and learns of
-- changes through these triggers (src/policy.c): a row trigger, which
-- logical replication's apply worker fires too, and a statement trigger
-- for TRUNCATE.  ALWAYS: they fire for a replica as well.
CREATE FUNCTION idempotency.policies_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'idempotency_policies_changed'
LANGUAGE C;

CREATE TRIGGER policies_changed
	AFTER INSERT OR UPDATE OR DELETE ON idempotency.policies
	FOR EACH ROW EXECUTE FUNCTION idempotency.policies_changed();
ALTER TABLE idempotency.policies ENABLE ALWAYS TRIGGER policies_changed;

CREATE TRIGGER policies_truncated
	AFTER TRUNCATE ON idempotency.policies
	FOR EACH STATEMENT EXECUTE FUNCTION idempotency.policies_changed();
ALTER TABLE idempotency.policies ENABLE ALWAYS TRIGGER policies_truncated;

-- The functions write idempotency.keys as its owner, so that an
-- application role needs EXECUTE on them and no privilege on the table.
-- They find the tables by qualified name and run no SQL, so no
-- search_path of the caller can redirect them.

-- claim()'s result: a named row type rather than OUT parameters, so that
-- the executor finds its shape in the type cache instead of rebuilding it
-- from pg_proc on every call (measured: a tenth of a claim's cost).
CREATE TYPE idempotency.claim_result AS (
	outcome text,
	response_status integer,
	response_headers jsonb,
	response_body jsonb,
	recovery_point text,
	first_seen timestamptz,
	lease_token uuid
);

CREATE FUNCTION idempotency.claim(
	scope text,
	key text,
	fingerprint bytea,
	lease interval DEFAULT NULL,
	wait interval DEFAULT NULL)
RETURNS idempotency.claim_result
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
-- PARALLEL RESTRICTED: the secrets never reach parallel workers.
CREATE FUNCTION idempotency.fingerprint(method text, path text, body jsonb)
RETURNS bytea
AS 'MODULE_PATHNAME', 'idempotency_fingerprint_request'
LANGUAGE C STABLE PARALLEL RESTRICTED;

-- A body as text is parsed here, so that malformed JSON is an IK400.
CREATE FUNCTION idempotency.fingerprint(method text, path text, body text)
RETURNS bytea
AS 'MODULE_PATHNAME', 'idempotency_fingerprint_request_text'
LANGUAGE C STABLE PARALLEL RESTRICTED;

CREATE FUNCTION idempotency.fingerprint(body bytea)
RETURNS bytea
AS 'MODULE_PATHNAME', 'idempotency_fingerprint_bytes'
LANGUAGE C STABLE PARALLEL RESTRICTED;

-- The idempotency key to send to a payment processor for a request: the
-- same for every attempt at it, derived under idempotency.downstream_secret
-- (src/downstream.c).
CREATE FUNCTION idempotency.downstream_key(
	scope text,
	key text,
	fingerprint bytea,
	purpose text)
RETURNS text
AS 'MODULE_PATHNAME', 'idempotency_downstream_key'
LANGUAGE C STABLE PARALLEL RESTRICTED;

-- Statistics, kept in shared memory by a preloaded library.  One row per
-- database, and one with a NULL dboid for databases beyond the slots.
CREATE FUNCTION idempotency.read_stats(
	OUT dboid oid,
	OUT claims_new bigint,
	OUT claims_replay bigint,
	OUT claims_resume bigint,
	OUT errors_ik400 bigint,
	OUT errors_ik409 bigint,
	OUT errors_ik410 bigint,
	OUT errors_ik422 bigint,
	OUT errors_ik428 bigint,
	OUT completions bigint,
	OUT releases bigint,
	OUT releases_5xx bigint,
	OUT shadow_would_replay bigint,
	OUT shadow_would_conflict bigint,
	OUT shadow_would_ik422 bigint,
	OUT shadow_would_ik410 bigint,
	OUT reaped_rows bigint,
	OUT abandoned_claims bigint,
	OUT reaper_runs bigint,
	OUT reaper_skipped_rows bigint,
	OUT last_reap timestamptz,
	OUT claim_latency_seconds float8[],
	OUT claim_latency_seconds_bucket bigint[],
	OUT claim_latency_seconds_sum float8,
	OUT claim_latency_seconds_count bigint,
	OUT stats_reset timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'idempotency_stats'
LANGUAGE C VOLATILE PARALLEL SAFE;

CREATE VIEW idempotency.stats AS
	SELECT d.datname AS database, s.*
	  FROM idempotency.read_stats() AS s
	  LEFT JOIN pg_catalog.pg_database AS d ON d.oid OPERATOR(pg_catalog.=) s.dboid;

COMMENT ON VIEW idempotency.stats IS
	'Idempotency counters and claim latency per database, since stats_reset (needs shared_preload_libraries)';

CREATE FUNCTION idempotency.stats_reset()
RETURNS void
AS 'MODULE_PATHNAME', 'idempotency_stats_reset'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Per-scope statistics (src/scope_stats.c), kept in shared memory by a
-- preloaded library: one row per (database, scope) of the bounded table,
-- of every database.  Scopes are tenant names, so nothing here is granted
-- to PUBLIC; README.md names the roles that read them.
CREATE FUNCTION idempotency.read_scope_stats(
	OUT dboid oid,
	OUT scope text,
	OUT claims_new bigint,
	OUT claims_replay bigint,
	OUT claims_resume bigint,
	OUT claims_shadow bigint,
	OUT errors_ik409 bigint,
	OUT errors_ik410 bigint,
	OUT errors_ik422 bigint,
	OUT errors_ik428 bigint,
	OUT releases_5xx bigint,
	OUT shadow_would_replay bigint,
	OUT shadow_would_conflict bigint,
	OUT shadow_would_ik422 bigint,
	OUT shadow_would_ik410 bigint,
	OUT last_seen timestamptz,
	OUT tracked_since timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'idempotency_scope_stats'
LANGUAGE C VOLATILE PARALLEL SAFE;

CREATE VIEW idempotency.scope_stats AS
	SELECT d.datname AS database, s.*
	  FROM idempotency.read_scope_stats() AS s
	  LEFT JOIN pg_catalog.pg_database AS d ON d.oid OPERATOR(pg_catalog.=) s.dboid;

COMMENT ON VIEW idempotency.scope_stats IS
	'Idempotency counters per (database, scope), each complete since tracked_since (needs shared_preload_libraries)';

-- The table as a whole: its size, its evictions, its memory.
CREATE FUNCTION idempotency.read_scope_stats_info(
	OUT max_entries integer,
	OUT entries bigint,
	OUT evictions bigint,
	OUT evictions_with_errors bigint,
	OUT last_eviction timestamptz,
	OUT shared_memory_bytes bigint,
	OUT stats_reset timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'idempotency_scope_stats_info'
LANGUAGE C VOLATILE PARALLEL SAFE;

CREATE VIEW idempotency.scope_stats_info AS
	SELECT * FROM idempotency.read_scope_stats_info();

COMMENT ON VIEW idempotency.scope_stats_info IS
	'Size, evictions and shared memory of idempotency.scope_stats';

-- NULL: every entry of every database, and the eviction counters; a
-- scope: that scope's counters in this database.
CREATE FUNCTION idempotency.scope_stats_reset(scope text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'idempotency_scope_stats_reset'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- What enforcing would do to each scope of this database that was
-- shadowed, for a shadow period that began at shadow_started_at (the
-- rollout owner knows when; README.md says how to choose it).  A scope is
-- called safe only when enforce would have refused none of its requests
-- and its counts are complete since before the shadow period began.
CREATE FUNCTION idempotency.rollout_report(shadow_started_at timestamptz)
RETURNS TABLE (
	scope text,
	shadow_claims bigint,
	would_409 bigint,
	would_422 bigint,
	would_410 bigint,
	would_replay bigint,
	tracked_since timestamptz,
	last_seen timestamptz,
	recommendation text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF shadow_started_at IS NULL OR NOT isfinite(shadow_started_at)
	   OR shadow_started_at > now() THEN
		RAISE EXCEPTION 'argument "shadow_started_at" must be a time in the past'
			USING ERRCODE = 'IK400',
				  HINT = 'Pass the time the scopes were switched to shadow mode.';
	END IF;
	RETURN QUERY
	SELECT s.scope, s.claims_shadow, s.shadow_would_conflict,
		   s.shadow_would_ik422, s.shadow_would_ik410, s.shadow_would_replay,
		   s.tracked_since, s.last_seen,
		   CASE
			 WHEN s.shadow_would_conflict + s.shadow_would_ik422 + s.shadow_would_ik410 > 0
			 THEN format('investigate: enforce would have refused %s of its requests (422: %s, 410: %s, 409: %s)',
						 s.shadow_would_conflict + s.shadow_would_ik422 + s.shadow_would_ik410,
						 s.shadow_would_ik422, s.shadow_would_ik410, s.shadow_would_conflict)
			 WHEN s.tracked_since > shadow_started_at
			 THEN format('investigate: tracked only since %s, after the shadow period began',
						 date_trunc('second', s.tracked_since))
			 ELSE 'safe to enforce'
		   END
	  FROM idempotency.scope_stats AS s
	 WHERE s.database = current_database()
	   AND s.claims_shadow > 0
	 ORDER BY s.shadow_would_conflict + s.shadow_would_ik422 + s.shadow_would_ik410 DESC,
			  s.tracked_since > shadow_started_at DESC,
			  s.scope;
END
$$;

-- idempotency.distribute(colocate_with): scale out on Citus (README.md,
-- "Scaling out with Citus"; docs/citus-design.md has the reasons for each
-- step).  On the coordinator, it makes idempotency.keys a hash-distributed
-- table co-located with the application's tenant table (by scope),
-- idempotency.policies a reference table, and claim, complete, release and
-- checkpoint distributed functions delegated by their scope argument
-- (force_delegation, so that they are delegated inside explicit
-- transactions too).  It refuses, changing nothing, a table that is not
-- hash-distributed by a text column with one placement per shard; a second
-- call changes nothing.  Every name is schema-qualified and it runs with
-- search_path = pg_catalog, pg_temp.  The citus objects it names are
-- resolved only when it runs, so it is created whether or not Citus is
-- installed.
CREATE FUNCTION idempotency.distribute(colocate_with regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $distribute$
DECLARE
	keys_rel	CONSTANT regclass := 'idempotency.keys'::regclass;
	policies_rel CONSTANT regclass := 'idempotency.policies'::regclass;
	tenant		record;		-- the tenant table's row of pg_dist_partition, and its column
	keys_dist	record;		-- idempotency.keys' row of pg_dist_partition, if any
	policies_method "char";
	scope_collation oid;
	collation_sql text;		-- the tenant column's collation, as SQL
	alter_scope text;		-- makes keys.scope use that collation, on one node
	node		record;
	fn			regprocedure;
	had_rows	boolean;
	changed		boolean := false;
	ddl_propagation text;
	mark_sql	CONSTANT text := pg_catalog.format(
		'ALTER DATABASE %I SET idempotency.citus_distributed = on',
		pg_catalog.current_database());
BEGIN
	IF colocate_with IS NULL THEN
		RAISE EXCEPTION 'argument "colocate_with" must not be NULL'
			USING ERRCODE = 'IK400';
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'citus') THEN
		RAISE EXCEPTION 'idempotency.distribute() needs the citus extension'
			USING ERRCODE = '55000',
				  HINT = 'Run it on the Citus coordinator, in the database that holds the tenant tables.';
	END IF;
	IF (SELECT groupid FROM pg_catalog.pg_dist_local_group) OPERATOR(pg_catalog.<>) 0 THEN
		RAISE EXCEPTION 'idempotency.distribute() must run on the Citus coordinator'
			USING ERRCODE = '55000';
	END IF;

	-- The tenant table: hash-distributed by a text column, one placement
	-- per shard.  Its collation is deterministic: Citus refuses to
	-- hash-distribute by a nondeterministic one (t/citus/002 checks that),
	-- which would let scopes it calls equal share their keys.
	SELECT p.partmethod, p.colocationid, p.repmodel, a.attname, a.atttypid, a.attcollation,
		   c.collname, cn.nspname AS collnsp
	  INTO tenant
	  FROM pg_catalog.pg_dist_partition AS p
	  LEFT JOIN pg_catalog.pg_attribute AS a
		ON a.attrelid OPERATOR(pg_catalog.=) p.logicalrelid
	   AND p.partkey IS NOT NULL
	   AND a.attname OPERATOR(pg_catalog.=)
			pg_catalog.column_to_column_name(p.logicalrelid, p.partkey)::name
	  LEFT JOIN pg_catalog.pg_collation AS c ON c.oid OPERATOR(pg_catalog.=) a.attcollation
	  LEFT JOIN pg_catalog.pg_namespace AS cn ON cn.oid OPERATOR(pg_catalog.=) c.collnamespace
	 WHERE p.logicalrelid OPERATOR(pg_catalog.=) colocate_with;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'table % is not a distributed table', colocate_with
			USING ERRCODE = '55000',
				  HINT = 'Distribute the tenant table first: SELECT create_distributed_table(''' ||
						 colocate_with::text || ''', ''<tenant column>'').';
	END IF;
	IF tenant.partmethod OPERATOR(pg_catalog.<>) 'h' OR tenant.attname IS NULL THEN
		RAISE EXCEPTION 'table % is not hash-distributed by a tenant column', colocate_with
			USING ERRCODE = '55000',
				  DETAIL = 'The idempotency keys are sharded by scope, which must be the value of a hash distribution column; reference, single-shard, append and range tables have none.';
	END IF;
	IF tenant.atttypid OPERATOR(pg_catalog.<>) 'pg_catalog.text'::pg_catalog.regtype THEN
		RAISE EXCEPTION 'the distribution column "%" of table % is of type %, not text',
				tenant.attname, colocate_with, pg_catalog.format_type(tenant.atttypid, NULL)
			USING ERRCODE = '42804',
				  DETAIL = 'idempotency.keys.scope is text, and Citus co-locates only tables whose distribution columns have the same type.';
	END IF;
	IF tenant.repmodel OPERATOR(pg_catalog.<>) 's' THEN
		RAISE EXCEPTION 'table % has more than one placement per shard', colocate_with
			USING ERRCODE = '55000',
				  DETAIL = 'Citus delegates function calls only to tables with one placement per shard (streaming replication).';
	END IF;

	SELECT p.partmethod, p.colocationid INTO keys_dist
	  FROM pg_catalog.pg_dist_partition AS p
	 WHERE p.logicalrelid OPERATOR(pg_catalog.=) keys_rel;
	IF FOUND AND (keys_dist.partmethod OPERATOR(pg_catalog.<>) 'h' OR
				  keys_dist.colocationid OPERATOR(pg_catalog.<>) tenant.colocationid) THEN
		RAISE EXCEPTION 'idempotency.keys is already distributed, not co-located with %', colocate_with
			USING ERRCODE = '55000',
				  HINT = 'Undistribute it first with SELECT undistribute_table(''idempotency.keys'').';
	END IF;
	SELECT p.partmethod INTO policies_method
	  FROM pg_catalog.pg_dist_partition AS p
	 WHERE p.logicalrelid OPERATOR(pg_catalog.=) policies_rel;
	IF FOUND AND policies_method OPERATOR(pg_catalog.<>) 'n' THEN
		RAISE EXCEPTION 'idempotency.policies is distributed, but not as a reference table'
			USING ERRCODE = '55000',
				  HINT = 'Undistribute it first with SELECT undistribute_table(''idempotency.policies'').';
	END IF;

	-- Rows that a worker wrote to its own tables before they were
	-- distributed would be unreachable afterwards: refuse rather than
	-- hide them.  (Once a table is distributed, a count on a worker is a
	-- distributed query, so only tables still local are counted.)
	IF keys_dist IS NULL OR policies_method IS NULL THEN
		FOR node IN
			SELECT r.nodename, r.nodeport, r.success, r.result
			  FROM pg_catalog.run_command_on_workers(pg_catalog.format(
					'SELECT %s OPERATOR(pg_catalog.+) %s',
					CASE WHEN keys_dist IS NULL
						 THEN '(SELECT pg_catalog.count(*) FROM idempotency.keys)' ELSE '0' END,
					CASE WHEN policies_method IS NULL
						 THEN '(SELECT pg_catalog.count(*) FROM idempotency.policies)' ELSE '0' END)) AS r
		LOOP
			IF NOT node.success OR node.result OPERATOR(pg_catalog.<>) '0' THEN
				RAISE EXCEPTION 'node %:% has rows in idempotency.keys or idempotency.policies, or cannot be read',
						node.nodename, node.nodeport
					USING ERRCODE = '55000',
						  DETAIL = 'It said: ' || node.result,
						  HINT = 'Only the coordinator''s rows are distributed; move or delete the rows of each worker first.';
			END IF;
		END LOOP;
	END IF;

	-- create_reference_table() refuses a table with triggers
	-- (policies_changed) unless this is on; it also lets a DBA's triggers
	-- on idempotency.keys be copied to its shards.
	PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);

	IF keys_dist IS NULL THEN
		-- Citus co-locates only distribution columns of one collation, and
		-- checks it on every node: the extension creates keys.scope with
		-- COLLATE "C" on each node itself (Citus does not create shells of
		-- extension-owned tables), so each node's column is changed there.
		-- A deterministic collation compares equal exactly the same bytes,
		-- and hashtext() hashes the bytes, so neither the keys' identity nor
		-- the shard of a scope changes.
		SELECT attcollation INTO scope_collation
		  FROM pg_catalog.pg_attribute
		 WHERE attrelid OPERATOR(pg_catalog.=) keys_rel AND attname OPERATOR(pg_catalog.=) 'scope';
		collation_sql := pg_catalog.format('%I.%I', tenant.collnsp, tenant.collname);
		alter_scope := pg_catalog.format(
			'DO $alter$ BEGIN '
			'IF (SELECT c.collname FROM pg_catalog.pg_attribute AS a '
			'      JOIN pg_catalog.pg_collation AS c ON c.oid OPERATOR(pg_catalog.=) a.attcollation '
			'     WHERE a.attrelid OPERATOR(pg_catalog.=) ''idempotency.keys''::pg_catalog.regclass '
			'       AND a.attname OPERATOR(pg_catalog.=) ''scope'') IS DISTINCT FROM %L THEN '
			'ALTER TABLE idempotency.keys ALTER COLUMN scope TYPE pg_catalog.text COLLATE %s; '
			'END IF; END $alter$',
			tenant.collname, collation_sql);
		IF scope_collation OPERATOR(pg_catalog.<>) tenant.attcollation THEN
			FOR node IN
				SELECT r.nodename, r.nodeport, r.success, r.result
				  FROM pg_catalog.run_command_on_workers(alter_scope) AS r
			LOOP
				IF NOT node.success THEN
					RAISE EXCEPTION 'could not change the collation of idempotency.keys.scope on node %:%',
							node.nodename, node.nodeport
						USING ERRCODE = '55000', DETAIL = 'It said: ' || node.result;
				END IF;
			END LOOP;
			EXECUTE alter_scope;
			RAISE NOTICE 'idempotency.keys.scope now has the collation % of %.%, on every node',
				collation_sql, colocate_with, tenant.attname
				USING DETAIL = 'A node added later needs the same change before citus_add_node(): '
							   || 'CREATE EXTENSION idempotency CASCADE; ' || alter_scope
							   || '; ' || mark_sql;
		END IF;

		-- Rows the coordinator had are copied into the shards; the shell
		-- must then be emptied.  (Counted first: once distributed, a count
		-- is a distributed query.)
		had_rows := EXISTS (SELECT FROM idempotency.keys);
		PERFORM pg_catalog.create_distributed_table(keys_rel, 'scope',
													colocate_with => colocate_with::text);
		IF had_rows THEN
			-- the shell's TRUNCATE guard: its rows are in the shards now
			PERFORM pg_catalog.set_config('idempotency.allow_truncate', 'on', true);
			PERFORM pg_catalog.truncate_local_data_after_distributing_table(keys_rel);
			PERFORM pg_catalog.set_config('idempotency.allow_truncate', 'off', true);
		END IF;
		changed := true;
	END IF;

	IF policies_method IS NULL THEN
		had_rows := EXISTS (SELECT FROM idempotency.policies);
		PERFORM pg_catalog.create_reference_table(policies_rel);
		IF had_rows THEN
			PERFORM pg_catalog.truncate_local_data_after_distributing_table(policies_rel);
		END IF;
		changed := true;
	END IF;

	-- The functions that read and write a scope's keys run on the node
	-- that holds the scope's shard.  force_delegation: delegated inside
	-- explicit transactions too (BEGIN; claim; charge; complete; COMMIT).
	FOREACH fn IN ARRAY ARRAY[
		'idempotency.claim(text, text, bytea, interval, interval)',
		'idempotency.complete(text, text, integer, jsonb, jsonb, uuid)',
		'idempotency.release(text, text, uuid)',
		'idempotency.checkpoint(text, text, text, uuid)']::pg_catalog.regprocedure[]
	LOOP
		IF NOT EXISTS (
			SELECT FROM pg_catalog.pg_dist_object AS o
			 WHERE o.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
			   AND o.objid OPERATOR(pg_catalog.=) fn
			   AND o.distribution_argument_index OPERATOR(pg_catalog.=) 0
			   AND o.colocationid OPERATOR(pg_catalog.=) tenant.colocationid
			   AND o.force_delegation) THEN
			PERFORM pg_catalog.create_distributed_function(fn, 'scope',
														   colocate_with => keys_rel::text,
														   force_delegation => true);
			changed := true;
		END IF;
	END LOOP;

	-- A mark in this database on every node, so that a node whose Citus
	-- metadata is dropped (stop_metadata_sync_to_node()) refuses claims
	-- (IK421) rather than answer them from its empty shell.  Idempotent;
	-- new sessions see it.
	ddl_propagation := pg_catalog.current_setting('citus.enable_ddl_propagation');
	PERFORM pg_catalog.set_config('citus.enable_ddl_propagation', 'off', true);
	EXECUTE mark_sql;
	PERFORM pg_catalog.set_config('citus.enable_ddl_propagation', ddl_propagation, true);
	FOR node IN
		SELECT r.nodename, r.nodeport, r.success, r.result
		  FROM pg_catalog.run_command_on_workers(
				'SET citus.enable_ddl_propagation = off; ' || mark_sql) AS r
	LOOP
		IF NOT node.success THEN
			RAISE EXCEPTION 'could not set idempotency.citus_distributed on node %:%',
					node.nodename, node.nodeport
				USING ERRCODE = '55000', DETAIL = 'It said: ' || node.result;
		END IF;
	END LOOP;

	IF NOT changed THEN
		RAISE NOTICE 'idempotency is already distributed with %', colocate_with;
	END IF;
END
$distribute$;

COMMENT ON FUNCTION idempotency.distribute(regclass) IS
	'Shard idempotency.keys with the given tenant table on Citus, make idempotency.policies a reference table and delegate the functions by scope';

REVOKE ALL ON FUNCTION idempotency.distribute(regclass) FROM PUBLIC;

-- Nothing is granted to PUBLIC; README.md shows the grants for an
-- application role.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA idempotency FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA idempotency FROM PUBLIC;

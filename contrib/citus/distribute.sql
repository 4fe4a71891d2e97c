-- contrib/citus/distribute.sql
--
-- Prototype of idempotency.distribute(colocate_with regclass), to be moved
-- into the extension's install and update scripts.  Load it on the Citus
-- coordinator after CREATE EXTENSION idempotency (psql -f); Citus propagates
-- the function to the workers like any function in a distributed schema.
--
-- It makes idempotency.keys a hash-distributed table co-located with the
-- application's tenant table (by scope), idempotency.policies a reference
-- table, and claim/complete/release/checkpoint distributed functions
-- delegated by their scope argument (force_delegation, so that they are
-- delegated inside explicit transactions too).  A second call changes
-- nothing.  docs/citus-design.md has the reasons for each step.
--
-- Every name is schema-qualified and the function runs with
-- search_path = pg_catalog, pg_temp, so no search_path of the caller can
-- redirect it; regclass values print schema-qualified under that path.

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
							   || 'CREATE EXTENSION idempotency CASCADE; ' || alter_scope;
		END IF;

		-- Rows the coordinator had are copied into the shards; the shell
		-- must then be emptied.  (Counted first: once distributed, a count
		-- is a distributed query.)
		had_rows := EXISTS (SELECT FROM idempotency.keys);
		PERFORM pg_catalog.create_distributed_table(keys_rel, 'scope',
													colocate_with => colocate_with::text);
		IF had_rows THEN
			PERFORM pg_catalog.truncate_local_data_after_distributing_table(keys_rel);
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

	IF NOT changed THEN
		RAISE NOTICE 'idempotency is already distributed with %', colocate_with;
	END IF;
END
$distribute$;

COMMENT ON FUNCTION idempotency.distribute(regclass) IS
	'Shard idempotency.keys with the given tenant table on Citus, make idempotency.policies a reference table and delegate the functions by scope';

REVOKE ALL ON FUNCTION idempotency.distribute(regclass) FROM PUBLIC;

/*-------------------------------------------------------------------------
 *
 * citus.c
 *	  Finding, on this node, the shard that holds a scope's keys when
 *	  Citus distributes idempotency.keys, and the local placement of
 *	  idempotency.policies when it is a reference table.
 *
 * On every node with Citus metadata, idempotency.keys is a shell: an
 * empty table whose rows live in shards named keys_<shardid>, one per
 * hash range of scope, each placed on one node.  A claim delegated by
 * Citus runs on the node that holds its scope's shard, so the one storage
 * path must read and write that shard, by OID, with the executor (Citus's
 * planner never sees those writes), and never the shell.  Where the shard
 * is not local (the coordinator, another worker, a plan Citus did not
 * delegate), reading the shell would find nothing and answer 'new' for a
 * key already charged: that is IK421, an error naming the node that
 * holds the shard.
 *
 * Everything comes from Citus's catalog tables in pg_catalog, read with
 * systable scans: no SPI, no Citus symbol.  pg_dist_partition says
 * whether and how the shell is distributed, pg_dist_shard gives each
 * shard's hash range, pg_dist_placement and pg_dist_local_group say
 * whether a shard is on this node.  The hash is the one Citus applies to
 * a text column: hashtext(), which for the deterministic collations that
 * Citus accepts hashes the bytes.  The ranges are searched rather than
 * computed, since a split makes them uneven.
 *
 * The map of shards is cached per backend and forgotten at any relcache
 * invalidation of the shell (Citus's triggers on its catalog send one
 * whenever a shard or placement of the table changes), of
 * pg_dist_local_group, or of everything.  Between the resolution and a
 * write, a move may still commit: so before each direct write the
 * shard-metadata lock that moves and splits take exclusively is taken in
 * share mode (lock_shard_metadata(), called through fmgr, found by name),
 * and the placement is read again with a fresh catalog snapshot.
 *
 * When Citus is not installed, or the tables are not distributed, the
 * answer "not distributed" is cached the same way, found at the first
 * call and again only after an invalidation of the shell: the single-node
 * path reads no catalog for it.
 *
 * A worker whose metadata was dropped (stop_metadata_sync_to_node()) has
 * an empty catalog, exactly like a single node.  idempotency.distribute()
 * therefore sets idempotency.citus_distributed for the database on every
 * node, and a node where it is on but the keys are not distributed
 * refuses claims (IK421).
 *
 * docs/citus.md is the user's side of this; docs/citus-design.md has the
 * reasons for each step, and what was measured.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"
#include "citus.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_namespace_d.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "nodes/primnodes.h"
#include "parser/parse_func.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

/* Citus's catalog, as found on this node (OIDs differ per node). */
typedef struct CitusCatalog
{
	Oid			partition;		/* pg_dist_partition */
	Oid			partition_by_relid;
	Oid			shard;			/* pg_dist_shard */
	Oid			shard_by_relid;
	Oid			placement;		/* pg_dist_placement */
	Oid			placement_by_shard_group;
	Oid			placement_by_shard;
	Oid			local_group;	/* pg_dist_local_group */
	Oid			node;			/* pg_dist_node */
	Oid			lock_fn;		/* lock_shard_metadata(int4, int8[]) */
} CitusCatalog;

/* Whether a shard is on this node, once looked at. */
typedef enum ShardPlace
{
	PLACE_UNKNOWN,
	PLACE_LOCAL,
	PLACE_REMOTE
} ShardPlace;

typedef struct ShardRange
{
	int32		min;
	int32		max;
	int64		shardid;
	ShardPlace	place;
	Oid			relid;			/* when local */
} ShardRange;

/* What is known of one of the extension's tables. */
typedef struct DistMap
{
	const char *relname;		/* for messages */
	bool		valid;
	Oid			shell;
	bool		distributed;
	bool		hashed;			/* else one shard for every scope */
	Oid			nsp;
	int32		local_group;
	int			nshards;
	ShardRange *shards;			/* by min, in cxt */
	CitusCatalog cat;
	MemoryContext cxt;
} DistMap;

static DistMap keys_map = {.relname = "keys"};
static DistMap policies_map = {.relname = "policies"};

static void
invalidate_map(DistMap *map, Oid relid)
{
	if (relid == InvalidOid || relid == map->shell ||
		(OidIsValid(map->cat.local_group) && relid == map->cat.local_group))
		map->valid = false;
}

static void
citus_invalidate(Datum arg, Oid relid)
{
	invalidate_map(&keys_map, relid);
	invalidate_map(&policies_map, relid);
}

void
ik_citus_register_callbacks(void)
{
	CacheRegisterRelcacheCallback(citus_invalidate, (Datum) 0);
}

/* Citus's catalog does not look as this library expects: IK503. */
static void
catalog_drift(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_IK_TABLE_NEEDS_OPERATOR),
			 errmsg("the citus catalog does not have the shape this library needs"),
			 errdetail("%s", what),
			 errhint("Use a Citus version that this version of idempotency supports (13.x).")));
}

static Oid
catalog_relid(const char *name)
{
	return get_relname_relid(name, PG_CATALOG_NAMESPACE);
}

/*
 * Find Citus's catalog; returns false when the citus extension is not
 * installed in this database, or has no pg_dist_partition to distribute
 * a table with.  The rest is checked by require_catalog() only once a
 * table of the extension is seen distributed, so that a Citus this
 * library does not know cannot break a database that does not distribute
 * the extension's tables.
 */
static bool
find_catalog(CitusCatalog *cat)
{
	Oid			argtypes[2] = {INT4OID, INT8ARRAYOID};

	memset(cat, 0, sizeof(CitusCatalog));
	if (!OidIsValid(get_extension_oid("citus", true)))
		return false;
	cat->partition = catalog_relid("pg_dist_partition");
	cat->partition_by_relid = catalog_relid("pg_dist_partition_logical_relid_index");
	if (!OidIsValid(cat->partition) || !OidIsValid(cat->partition_by_relid))
		return false;
	cat->shard = catalog_relid("pg_dist_shard");
	cat->shard_by_relid = catalog_relid("pg_dist_shard_logical_relid_index");
	cat->placement = catalog_relid("pg_dist_placement");
	cat->placement_by_shard_group = catalog_relid("placement_shardid_groupid_unique_index");
	cat->placement_by_shard = catalog_relid("pg_dist_placement_shardid_index");
	cat->local_group = catalog_relid("pg_dist_local_group");
	cat->node = catalog_relid("pg_dist_node");
	cat->lock_fn = LookupFuncName(list_make2(makeString("pg_catalog"),
											 makeString("lock_shard_metadata")),
								  2, argtypes, true);
	return true;
}

static void
require_catalog(const CitusCatalog *cat)
{
	if (!OidIsValid(cat->shard) || !OidIsValid(cat->shard_by_relid) ||
		!OidIsValid(cat->placement) ||
		!OidIsValid(cat->placement_by_shard_group) ||
		!OidIsValid(cat->placement_by_shard) ||
		!OidIsValid(cat->local_group) || !OidIsValid(cat->node))
		catalog_drift("One of pg_dist_shard, pg_dist_placement, pg_dist_local_group, pg_dist_node or their indexes is missing.");
	if (!OidIsValid(cat->lock_fn))
		catalog_drift("Function pg_catalog.lock_shard_metadata(integer, bigint[]) is missing.");
}

/* The attribute number of a column of a catalog table, checked. */
static AttrNumber
column(Relation rel, const char *name, Oid typid)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
		{
			if (att->atttypid != typid)
				break;
			return att->attnum;
		}
	}
	catalog_drift(psprintf("Column %s.%s of type %s is missing.",
						   RelationGetRelationName(rel), name,
						   format_type_be(typid)));
	pg_unreachable();
}

static Datum
value(HeapTuple tuple, Relation rel, AttrNumber attnum, bool *isnull)
{
	return heap_getattr(tuple, attnum, RelationGetDescr(rel), isnull);
}

/* This node's group: 0 on the coordinator (and on a node without metadata). */
static int32
read_local_group(const CitusCatalog *cat)
{
	Relation	rel = table_open(cat->local_group, AccessShareLock);
	AttrNumber	groupid = column(rel, "groupid", INT4OID);
	SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	HeapTuple	tuple;
	int32		group = 0;
	bool		isnull;

	if (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		Datum		d = value(tuple, rel, groupid, &isnull);

		if (!isnull)
			group = DatumGetInt32(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return group;
}

/* Is there an active placement of shardid in group? */
static bool
placement_in_group(const CitusCatalog *cat, int64 shardid, int32 group)
{
	Relation	rel = table_open(cat->placement, AccessShareLock);
	AttrNumber	state = column(rel, "shardstate", INT4OID);
	ScanKeyData skey[2];
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		found = false;
	bool		isnull;

	/* systable scans take the heap's attribute numbers */
	ScanKeyInit(&skey[0], column(rel, "shardid", INT8OID),
				BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(shardid));
	ScanKeyInit(&skey[1], column(rel, "groupid", INT4OID),
				BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(group));
	scan = systable_beginscan(rel, cat->placement_by_shard_group, true, NULL,
							  2, skey);
	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		Datum		d = value(tuple, rel, state, &isnull);

		/* 1 is an active placement */
		if (!isnull && DatumGetInt32(d) == 1)
			found = true;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * Where a shard is, for a message: "host:port" of a node in the group of
 * an active placement, or NULL if it has none.
 */
static char *
shard_node(const CitusCatalog *cat, int64 shardid)
{
	Relation	rel;
	ScanKeyData skey;
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		isnull;
	bool		found = false;
	int32		group = 0;
	char	   *where = NULL;

	rel = table_open(cat->placement, AccessShareLock);
	ScanKeyInit(&skey, column(rel, "shardid", INT8OID), BTEqualStrategyNumber,
				F_INT8EQ, Int64GetDatum(shardid));
	scan = systable_beginscan(rel, cat->placement_by_shard, true, NULL, 1,
							  &skey);
	while (!found && HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		Datum		d = value(tuple, rel, column(rel, "shardstate", INT4OID),
							  &isnull);

		if (isnull || DatumGetInt32(d) != 1)
			continue;
		group = DatumGetInt32(value(tuple, rel,
									column(rel, "groupid", INT4OID), &isnull));
		found = !isnull;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (!found)
		return NULL;

	rel = table_open(cat->node, AccessShareLock);
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	while (where == NULL && HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		Datum		g = value(tuple, rel, column(rel, "groupid", INT4OID), &isnull);
		Datum		name;
		Datum		port;

		if (isnull || DatumGetInt32(g) != group)
			continue;
		name = value(tuple, rel, column(rel, "nodename", TEXTOID), &isnull);
		if (isnull)
			continue;
		port = value(tuple, rel, column(rel, "nodeport", INT4OID), &isnull);
		if (isnull)
			continue;
		where = psprintf("%s:%d", TextDatumGetCString(name), DatumGetInt32(port));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return where;
}

/* The call reached a node that does not hold the scope's shard: IK421. */
static void
raise_misdirected(DistMap *map, text *scope, int64 shardid, const char *why)
{
	char	   *where = shard_node(&map->cat, shardid);

	ereport(ERROR,
			(errcode(ERRCODE_IK_MISDIRECTED),
			 errmsg("idempotency keys of scope \"%s\" are not stored on this node",
					text_to_cstring(scope)),
			 errdetail("The scope's shard %lld of idempotency.%s is %s%s; this node is in Citus group %d%s.",
					   (long long) shardid, map->relname,
					   where ? "on node " : "on no active node",
					   where ? where : "",
					   map->local_group, why),
			 errhint("Let Citus delegate the call to that node: call the function as SELECT ... FROM idempotency.claim(...) with constant arguments (distributed with force_delegation by idempotency.distribute()), or from a function distributed by the tenant column. A field selection, a generic plan, a CTE, a subquery, INSERT ... SELECT or a PL/pgSQL expression is not delegated.")));
}

static int
compare_ranges(const void *a, const void *b)
{
	const ShardRange *ra = (const ShardRange *) a;
	const ShardRange *rb = (const ShardRange *) b;

	return (ra->min > rb->min) - (ra->min < rb->min);
}

static int32
range_bound(Datum d, bool isnull, int64 shardid)
{
	if (isnull)
		catalog_drift(psprintf("Shard %lld of a hash-distributed table has no hash range.",
							   (long long) shardid));
	return pg_strtoint32(TextDatumGetCString(d));
}

/*
 * The distribution column of a hash-distributed table must be scope, of
 * type text: the shard is found by hashing it.  partkey is a Var, in the
 * node's text form.
 */
static void
check_partkey(DistMap *map, Datum partkey, bool isnull)
{
	Node	   *node = isnull ? NULL : stringToNode(TextDatumGetCString(partkey));
	AttrNumber	scope = get_attnum(map->shell, "scope");

	if (node == NULL || !IsA(node, Var) ||
		((Var *) node)->varattno != scope ||
		((Var *) node)->vartype != TEXTOID)
		ereport(ERROR,
				(errcode(ERRCODE_IK_TABLE_NEEDS_OPERATOR),
				 errmsg("idempotency.%s is distributed by a column other than scope",
						map->relname),
				 errdetail("The library finds a key's shard by its scope."),
				 errhint("Undistribute it with SELECT undistribute_table('idempotency.%s'), then run SELECT idempotency.distribute('<tenant table>').",
						 map->relname)));
}

/*
 * Read what Citus says of the table.  valid is set first: an
 * invalidation processed while the catalog is read clears it, and the
 * map is read again at the next call.
 */
static void
build_map(DistMap *map, Oid shell)
{
	Relation	rel;
	ScanKeyData skey;
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		isnull;
	char		method;
	char		repmodel;
	int			allocated = 8;
	MemoryContext old;

	if (map->cxt == NULL)
		map->cxt = AllocSetContextCreate(CacheMemoryContext,
										 "idempotency citus shard map",
										 ALLOCSET_SMALL_SIZES);
	MemoryContextReset(map->cxt);
	map->valid = true;
	map->shell = shell;
	map->distributed = false;
	map->nshards = 0;
	map->shards = NULL;
	if (!find_catalog(&map->cat))
		return;

	rel = table_open(map->cat.partition, AccessShareLock);
	ScanKeyInit(&skey, column(rel, "logicalrelid", REGCLASSOID),
				BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(shell));
	scan = systable_beginscan(rel, map->cat.partition_by_relid, true, NULL, 1,
							  &skey);
	tuple = systable_getnext(scan);
	if (!HeapTupleIsValid(tuple))
	{
		systable_endscan(scan);
		table_close(rel, AccessShareLock);
		return;
	}
	method = DatumGetChar(value(tuple, rel, column(rel, "partmethod", CHAROID),
								&isnull));
	repmodel = DatumGetChar(value(tuple, rel, column(rel, "repmodel", CHAROID),
								  &isnull));
	if (method == 'h')
		check_partkey(map, value(tuple, rel, column(rel, "partkey", TEXTOID),
								 &isnull), isnull);
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	require_catalog(&map->cat);

	/*
	 * The keys are written on one placement only, so they must have one per
	 * shard; the policies are only read, so a reference table (a placement on
	 * every node) is what they need.
	 */
	if (map == &keys_map ? !((method == 'h' || method == 'n') && repmodel == 's')
		: method != 'n')
		ereport(ERROR,
				(errcode(ERRCODE_IK_TABLE_NEEDS_OPERATOR),
				 errmsg("idempotency.%s is distributed in a way this library does not support",
						map->relname),
				 errdetail("Its distribution method is '%c' with replication model '%c'.",
						   method, repmodel),
				 errhint("Undistribute it with SELECT undistribute_table('idempotency.%s'), then run SELECT idempotency.distribute('<tenant table>').",
						 map->relname)));
	map->hashed = (method == 'h');
	map->nsp = get_rel_namespace(shell);
	map->local_group = read_local_group(&map->cat);

	old = MemoryContextSwitchTo(map->cxt);
	map->shards = palloc(sizeof(ShardRange) * allocated);
	MemoryContextSwitchTo(old);
	rel = table_open(map->cat.shard, AccessShareLock);
	ScanKeyInit(&skey, column(rel, "logicalrelid", REGCLASSOID),
				BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(shell));
	scan = systable_beginscan(rel, map->cat.shard_by_relid, true, NULL, 1,
							  &skey);
	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		ShardRange *r;
		Datum		d;

		if (map->nshards == allocated)
		{
			allocated *= 2;
			map->shards = repalloc(map->shards, sizeof(ShardRange) * allocated);
		}
		r = &map->shards[map->nshards++];
		memset(r, 0, sizeof(ShardRange));
		r->shardid = DatumGetInt64(value(tuple, rel,
										 column(rel, "shardid", INT8OID),
										 &isnull));
		r->place = PLACE_UNKNOWN;
		if (map->hashed)
		{
			d = value(tuple, rel, column(rel, "shardminvalue", TEXTOID), &isnull);
			r->min = range_bound(d, isnull, r->shardid);
			d = value(tuple, rel, column(rel, "shardmaxvalue", TEXTOID), &isnull);
			r->max = range_bound(d, isnull, r->shardid);
		}
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (map->nshards == 0 || (!map->hashed && map->nshards != 1))
		catalog_drift(psprintf("idempotency.%s is distributed with %d shards.",
							   map->relname, map->nshards));
	qsort(map->shards, map->nshards, sizeof(ShardRange), compare_ranges);
	map->distributed = true;
}

static DistMap *
map_for(DistMap *map, Oid shell)
{
	if (!map->valid || map->shell != shell)
		build_map(map, shell);
	return map;
}

/* The shard whose hash range holds scope (the only one if not hashed). */
static ShardRange *
find_range(DistMap *map, text *scope)
{
	int32		h;
	int			lo = 0;
	int			hi = map->nshards - 1;

	if (!map->hashed)
		return &map->shards[0];

	/* hashtext() of a text under a deterministic collation */
	h = DatumGetInt32(hash_any((const unsigned char *) VARDATA_ANY(scope),
							   VARSIZE_ANY_EXHDR(scope)));
	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;
		ShardRange *r = &map->shards[mid];

		if (h < r->min)
			hi = mid - 1;
		else if (h > r->max)
			lo = mid + 1;
		else
			return r;
	}
	catalog_drift(psprintf("No shard of idempotency.%s covers hash value %d.",
						   map->relname, h));
	pg_unreachable();
}

/* The local shard's relation, found by name in the shell's schema. */
static Oid
shard_relid(DistMap *map, int64 shardid)
{
	char		name[NAMEDATALEN];

	snprintf(name, sizeof(name), "%s_" INT64_FORMAT, map->relname, shardid);
	return get_relname_relid(name, map->nsp);
}

static Oid
local_shard(DistMap *map, text *scope, int64 *shardid)
{
	ShardRange *r = find_range(map, scope);

	*shardid = r->shardid;
	if (r->place == PLACE_UNKNOWN)
	{
		if (placement_in_group(&map->cat, r->shardid, map->local_group))
		{
			r->relid = shard_relid(map, r->shardid);
			if (!OidIsValid(r->relid))
				raise_misdirected(map, scope, r->shardid,
								  ", whose placement of it has no table");
			r->place = PLACE_LOCAL;
		}
		else
			r->place = PLACE_REMOTE;
	}
	if (r->place == PLACE_REMOTE)
		raise_misdirected(map, scope, r->shardid, "");
	return r->relid;
}

/*
 * The keys were distributed (idempotency.distribute() left its mark on
 * this database), but this node has no Citus metadata for them: a worker
 * after stop_metadata_sync_to_node(), which cannot tell where a scope's
 * shard is and whose own table is an empty shell.
 */
static void
raise_no_metadata(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_IK_MISDIRECTED),
			 errmsg("idempotency.keys is distributed by Citus, but this node has no Citus metadata for it"),
			 errdetail("idempotency.citus_distributed is on in this database, set by idempotency.distribute(); without the metadata this node cannot tell where a scope's keys are, and its own idempotency.keys is an empty shell."),
			 errhint("Call through the coordinator or a node with metadata (start_metadata_sync_to_node() restores it), or, if the keys are no longer distributed, run ALTER DATABASE ... RESET idempotency.citus_distributed on every node.")));
}

Oid
ik_citus_keys_shard(Oid shell, text *scope, int64 *shardid)
{
	DistMap    *map = map_for(&keys_map, shell);

	*shardid = 0;
	if (!map->distributed)
	{
		if (ik_citus_distributed)
			raise_no_metadata();
		return InvalidOid;
	}
	return local_shard(map, scope, shardid);
}

void
ik_citus_lock_shard(Oid shell, text *scope, int64 shardid)
{
	DistMap    *map = &keys_map;
	Datum		id = Int64GetDatum(shardid);
	ArrayType  *ids = construct_array(&id, 1, INT8OID, sizeof(int64),
									  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
	MemoryContext context = CurrentMemoryContext;

	Assert(OidIsValid(map->cat.lock_fn));
	PG_TRY();
	{
		OidFunctionCall2(map->cat.lock_fn, Int32GetDatum(ShareLock),
						 PointerGetDatum(ids));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/*
		 * Citus's "could not find valid entry for shard" has no SQLSTATE of
		 * its own: the shard was split or dropped since it was resolved.
		 * Anything else (a cancel, a lock timeout) passes unchanged.
		 */
		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		if (edata->sqlerrcode != ERRCODE_INTERNAL_ERROR)
			ReThrowError(edata);
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_IK_MISDIRECTED),
				 errmsg("shard %lld of idempotency.keys changed while a call on scope \"%s\" ran",
						(long long) shardid, text_to_cstring(scope)),
				 errdetail("Citus said: %s", edata->message),
				 errhint("Retry the request: the retry finds the scope's new shard.")));
	}
	PG_END_TRY();

	/*
	 * A move or split that committed before the lock was granted changed the
	 * placement: read it again, past any cached catalog snapshot.
	 */
	AcceptInvalidationMessages();
	InvalidateCatalogSnapshot();
	if (!placement_in_group(&map->cat, shardid, read_local_group(&map->cat)))
		raise_misdirected(map, scope, shardid,
						  ", and the shard moved away while the call ran; retry the request");
}

List *
ik_citus_local_keys_shards(Oid shell, bool *distributed)
{
	DistMap    *map;
	List	   *shards = NIL;

	AcceptInvalidationMessages();
	map = map_for(&keys_map, shell);
	/* a node without metadata has no shard to reap, and no row in its shell */
	*distributed = map->distributed || ik_citus_distributed;
	if (!map->distributed)
		return NIL;
	for (int i = 0; i < map->nshards; i++)
	{
		ShardRange *r = &map->shards[i];
		IkShard    *s;

		if (!placement_in_group(&map->cat, r->shardid, map->local_group))
			continue;
		s = palloc(sizeof(IkShard));
		s->shardid = r->shardid;
		s->relid = shard_relid(map, r->shardid);
		if (OidIsValid(s->relid))
			shards = lappend(shards, s);
	}
	return shards;
}

Oid
ik_citus_policies_placement(Oid shell, int64 *shardid)
{
	DistMap    *map = map_for(&policies_map, shell);
	ShardRange *r;

	*shardid = 0;
	if (!map->distributed)
		return InvalidOid;
	r = &map->shards[0];
	*shardid = r->shardid;
	if (r->place == PLACE_UNKNOWN)
	{
		r->relid = placement_in_group(&map->cat, r->shardid, map->local_group) ?
			shard_relid(map, r->shardid) : InvalidOid;
		r->place = OidIsValid(r->relid) ? PLACE_LOCAL : PLACE_REMOTE;
	}
	if (r->place == PLACE_REMOTE)
		ereport(ERROR,
				(errcode(ERRCODE_IK_MISDIRECTED),
				 errmsg("idempotency.policies has no placement on this node"),
				 errdetail("It is a Citus reference table, whose shard %lld should be on every node; this node is in group %d.",
						   (long long) r->shardid, map->local_group),
				 errhint("Replicate it with SELECT replicate_reference_tables() on the coordinator.")));
	return r->relid;
}

int64
ik_citus_reap_workers(Oid shell, int32 max_rows)
{
	DistMap    *map = map_for(&keys_map, shell);
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(max_rows)};
	int64		total = 0;

	if (!map->distributed || map->local_group != 0)
		return -1;

	/*
	 * The workers reap their own shards, where the rows are; each commits on
	 * its own (run_command_on_workers() does not join this transaction), as
	 * the background reaper would.  Not a hot path, so SPI is fine here.
	 */
	SPI_connect();
	if (SPI_execute_with_args("SELECT r.nodename, r.nodeport, r.success, r.result"
							  "  FROM pg_catalog.run_command_on_workers("
							  "       pg_catalog.format('SELECT idempotency.reap(%s)', $1)) AS r",
							  1, argtypes, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not run reap() on the workers");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *success = SPI_getvalue(tuple, desc, 3);
		char	   *result = SPI_getvalue(tuple, desc, 4);

		if (success != NULL && strcmp(success, "t") == 0 && result != NULL)
			total += pg_strtoint64(result);
		else
			ereport(WARNING,
					(errmsg("reap() failed on node %s:%s",
							SPI_getvalue(tuple, desc, 1), SPI_getvalue(tuple, desc, 2)),
					 errdetail("It said: %s", result ? result : "nothing")));
	}
	SPI_finish();
	return total;
}

/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  The few PostgreSQL calls whose shape differs between the supported
 *	  major versions (15, 17, 18 and 19), each behind one small guard.
 *
 * Everything else in the extension is written against the API common to
 * all of them; a new major version should only ever need this file to
 * change.  16 is in no Debian suite and is not tested, but every guard is
 * a version boundary, so 16 takes the side of 15 or 17 that it has.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDEMPOTENCY_COMPAT_H
#define IDEMPOTENCY_COMPAT_H

#include "access/genam.h"
#include "access/tableam.h"
#include "executor/executor.h"
#include "nodes/execnodes.h"
#include "nodes/parsenodes.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#if PG_VERSION_NUM >= 160000
#include "parser/parse_relation.h"
#endif
#if PG_VERSION_NUM >= 180000
#include "rewrite/rewriteHandler.h"
#endif

#if PG_VERSION_NUM < 150000
#error "idempotency needs PostgreSQL 15 or later"
#endif

/*
 * 18 added an instrumentation argument to index_beginscan(); 19 gave it and
 * table_beginscan() a bitmask of scan options, none of which we need.
 */
#if PG_VERSION_NUM >= 190000
#define ik_index_beginscan(heap, index, snapshot, nkeys) \
	index_beginscan((heap), (index), (snapshot), NULL, (nkeys), 0, SO_NONE)
#define ik_table_beginscan(rel, snapshot, nkeys, key) \
	table_beginscan((rel), (snapshot), (nkeys), (key), SO_NONE)
#elif PG_VERSION_NUM >= 180000
#define ik_index_beginscan(heap, index, snapshot, nkeys) \
	index_beginscan((heap), (index), (snapshot), NULL, (nkeys), 0)
#define ik_table_beginscan(rel, snapshot, nkeys, key) \
	table_beginscan((rel), (snapshot), (nkeys), (key))
#else
#define ik_index_beginscan(heap, index, snapshot, nkeys) \
	index_beginscan((heap), (index), (snapshot), (nkeys), 0)
#define ik_table_beginscan(rel, snapshot, nkeys, key) \
	table_beginscan((rel), (snapshot), (nkeys), (key))
#endif

/*
 * table_tuple_delete() of a tuple that stays where it is (no partition
 * move): 19 turned the trailing changingPart flag into an options bitmask
 * after the command id.
 */
#if PG_VERSION_NUM >= 190000
#define ik_table_tuple_delete(rel, tid, cid, snap, cross, wait, tmfd) \
	table_tuple_delete((rel), (tid), (cid), 0, (snap), (cross), \
					   (wait), (tmfd))
#else
#define ik_table_tuple_delete(rel, tid, cid, snap, cross, wait, tmfd) \
	table_tuple_delete((rel), (tid), (cid), (snap), (cross), \
					   (wait), (tmfd), false)
#endif

/*
 * A shared hash table of at most max_size entries: 19 dropped the initial
 * size, which for a HASH_FIXED_SIZE table was the maximum anyway.
 */
#if PG_VERSION_NUM >= 190000
#define ik_shmem_init_hash(name, init_size, max_size, info, flags) \
	ShmemInitHash((name), (max_size), (info), (flags))
#else
#define ik_shmem_init_hash(name, init_size, max_size, info, flags) \
	ShmemInitHash((name), (init_size), (max_size), (info), (flags))
#endif

/*
 * Memory of a GUC's values and of its check hook's extra: plain malloc()
 * up to 15, the GUC module's own allocator from 16.
 */
#if PG_VERSION_NUM >= 160000
#define ik_guc_malloc(n)	guc_malloc(LOG, (n))
#define ik_guc_strdup(s)	guc_strdup(LOG, (s))
#define ik_guc_free(p)		guc_free(p)
#else
#define ik_guc_malloc(n)	malloc(n)
#define ik_guc_strdup(s)	strdup(s)
#define ik_guc_free(p)		free(p)
#endif

/*
 * search_path = pg_catalog, pg_temp at the current GUC nest level, as
 * maintenance commands run a table's code: 17 named it RestrictSearchPath().
 */
#if PG_VERSION_NUM >= 170000
#define ik_restrict_search_path() RestrictSearchPath()
#else
#define ik_restrict_search_path() \
	((void) set_config_option("search_path", "pg_catalog, pg_temp", \
							  PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, \
							  true, 0, false))
#endif

/* 17 lets an index AM release what it kept across inserts (BRIN does). */
#if PG_VERSION_NUM >= 170000
#define ik_index_insert_cleanup(index, info) index_insert_cleanup((index), (info))
#else
#define ik_index_insert_cleanup(index, info) ((void) 0)
#endif

/* The compiled CHECK constraints of a result relation: renamed in 18. */
#if PG_VERSION_NUM >= 180000
#define IK_RRI_CHECK_EXPRS(rri) ((rri)->ri_CheckConstraintExprs)
#else
#define IK_RRI_CHECK_EXPRS(rri) ((rri)->ri_ConstraintExprs)
#endif

/*
 * 15 lists what it computed for a result relation's generated columns in
 * the EState, in the memory of the statement (store.c: of one write);
 * from 16 it is kept in the result relation.
 */
#if PG_VERSION_NUM >= 160000
#define ik_forget_result_relation_extras(estate) ((void) 0)
#else
#define ik_forget_result_relation_extras(estate) \
	((estate)->es_resultrelinfo_extra = NIL)
#endif

/*
 * A one-relation range table for an EState, as the logical replication
 * apply worker builds one: 16 added permission infos, 18 the set of
 * relations that partition pruning keeps.
 */
static inline void
ik_init_range_table(EState *estate, RangeTblEntry *rte)
{
#if PG_VERSION_NUM >= 160000
	List	   *perminfos = NIL;

	addRTEPermissionInfo(&perminfos, rte);
#endif
#if PG_VERSION_NUM >= 180000
	ExecInitRangeTable(estate, list_make1(rte), perminfos,
					   bms_make_singleton(1));
#elif PG_VERSION_NUM >= 160000
	ExecInitRangeTable(estate, list_make1(rte), perminfos);
#else
	ExecInitRangeTable(estate, list_make1(rte));
#endif
}

/*
 * The expression of a CHECK constraint as the executor evaluates it, or
 * NULL for one it does not enforce (18 has NOT ENFORCED constraints and
 * virtual generated columns, which a constraint's expression may name).
 */
static inline Expr *
ik_check_constraint_expr(Relation rel, const ConstrCheck *check)
{
	Expr	   *expr;

#if PG_VERSION_NUM >= 180000
	if (!check->ccenforced)
		return NULL;
	expr = stringToNode(check->ccbin);
	return (Expr *) expand_generated_columns_in_expr((Node *) expr, rel, 1);
#else
	expr = stringToNode(check->ccbin);
	return expr;
#endif
}

#endif							/* IDEMPOTENCY_COMPAT_H */

/*-------------------------------------------------------------------------
 *
 * tables.c
 *	  Finding the extension's tables, checking their shape, and keeping
 *	  what the executor needs to write them.
 *
 * The tables are found by name once and opened by OID after that, since
 * the name lookup cost more than a probe of the index.  Each time a table
 * is (re)found its shape is checked: that it is the extension's member
 * (not a copy renamed into its place), the relation kind and persistence,
 * each column the library reads or writes by name, type and nullability,
 * a unique index to look rows up by, and for the keys table its TRUNCATE
 * guard and that no BEFORE row trigger or rule could rewrite a row behind
 * the library's back.  Columns are found by name, so a column a DBA added
 * (nullable or with a default) or added and dropped again changes
 * nothing.  Anything
 * else is one error, IK503, saying exactly what differs: an operator must
 * act, and until then no payment may be served from a table the library
 * does not understand.
 *
 * For a table that is written (the keys), the pieces the executor would
 * build for every statement are built once here and kept across
 * transactions: the EState that every write shares, the index list with
 * each IndexInfo and its expression and predicate states, the compiled
 * CHECK constraints, and the default expressions of a DBA's extra
 * columns.  Planning one CHECK constraint costs more than the insert it
 * checks, and a claim inserts once per transaction.  What the executor
 * compiles lazily for one statement's result relation (the expressions of
 * generated columns, a trigger's WHEN condition) it compiles into the
 * EState's query context, and what an index access method keeps for one
 * statement's inserts (BRIN's and GIN's insert state) into the IndexInfo's
 * context: both are a context of the writes' own, which store.c resets
 * after each write, so that it goes with the write instead of piling up in
 * the cache write after write.  All of it is dropped when a
 * relcache invalidation names the table or one of its indexes, or when a
 * function or type changes (a compiled expression may have inlined it),
 * and rebuilt at the next open, after the table's lock is held, so that it
 * always matches the catalog the lock protects.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_am_d.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "compat.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_func.h"
#include "rewrite/rewriteHandler.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

static const IkColumnSpec keys_columns[IK_KEYS_NCOLUMNS] = {
	[IK_KEYS_SCOPE] = {"scope", TEXTOID, true},
	[IK_KEYS_KEY] = {"key", TEXTOID, true},
	[IK_KEYS_FINGERPRINT] = {"fingerprint", BYTEAOID, true},
	[IK_KEYS_STATE] = {"state", TEXTOID, true},
	[IK_KEYS_RESPONSE_STATUS] = {"response_status", INT4OID, false},
	[IK_KEYS_RESPONSE_HEADERS] = {"response_headers", JSONBOID, false},
	[IK_KEYS_RESPONSE_BODY] = {"response_body", JSONBOID, false},
	[IK_KEYS_RECOVERY_POINT] = {"recovery_point", TEXTOID, false},
	[IK_KEYS_LEASE_TOKEN] = {"lease_token", UUIDOID, false},
	[IK_KEYS_LEASE_DURATION] = {"lease_duration", INTERVALOID, false},
	[IK_KEYS_LEASE_EXPIRES_AT] = {"lease_expires_at", TIMESTAMPTZOID, false},
	[IK_KEYS_CREATED_AT] = {"created_at", TIMESTAMPTZOID, true},
	[IK_KEYS_EXPIRES_AT] = {"expires_at", TIMESTAMPTZOID, true},
	[IK_KEYS_RETAIN_UNTIL] = {"retain_until", TIMESTAMPTZOID, true},
};

static const int keys_lookup[] = {IK_KEYS_SCOPE, IK_KEYS_KEY};

/*
 * The policies table is only read, so its nullable columns may be NOT
 * NULL too; only their types matter.
 */
static const IkColumnSpec policies_columns[IK_POLICIES_NCOLUMNS] = {
	[IK_POLICIES_SCOPE] = {"scope", TEXTOID, true},
	[IK_POLICIES_MODE] = {"mode", TEXTOID, false},
	[IK_POLICIES_TTL] = {"ttl", INTERVALOID, false},
	[IK_POLICIES_RETAIN] = {"retain", INTERVALOID, false},
	[IK_POLICIES_CACHE_5XX] = {"cache_5xx", BOOLOID, false},
};

static const int policies_lookup[] = {IK_POLICIES_SCOPE};

/*
 * Abandoned durable claims: only appended to, and never read by the
 * library, so it needs no index to look rows up by.
 */
static const IkColumnSpec abandoned_columns[IK_ABANDONED_NCOLUMNS] = {
	[IK_ABANDONED_SCOPE] = {"scope", TEXTOID, true},
	[IK_ABANDONED_KEY] = {"key", TEXTOID, true},
	[IK_ABANDONED_RECOVERY_POINT] = {"recovery_point", TEXTOID, false},
	[IK_ABANDONED_LEASE_TOKEN] = {"lease_token", UUIDOID, true},
	[IK_ABANDONED_FIRST_SEEN] = {"first_seen", TIMESTAMPTZOID, true},
	[IK_ABANDONED_LEASE_EXPIRES_AT] = {"lease_expires_at", TIMESTAMPTZOID, true},
	[IK_ABANDONED_ABANDONED_AT] = {"abandoned_at", TIMESTAMPTZOID, true},
	[IK_ABANDONED_HOW] = {"how", TEXTOID, true},
};

IkTable		ik_keys_table = {
	.relname = "keys",
	.columns = keys_columns,
	.ncolumns = IK_KEYS_NCOLUMNS,
	.lookup = keys_lookup,
	.nlookup = lengthof(keys_lookup),
	.order_column = IK_KEYS_RETAIN_UNTIL,
	.written = true,
};

IkTable		ik_policies_table = {
	.relname = "policies",
	.columns = policies_columns,
	.ncolumns = IK_POLICIES_NCOLUMNS,
	.lookup = policies_lookup,
	.nlookup = lengthof(policies_lookup),
	.order_column = -1,
	.written = false,
};

IkTable		ik_abandoned_table = {
	.relname = "abandoned_claims",
	.columns = abandoned_columns,
	.ncolumns = IK_ABANDONED_NCOLUMNS,
	.lookup = NULL,
	.nlookup = 0,
	.order_column = -1,
	.written = true,
};

static IkTable *const all_tables[] = {
	&ik_keys_table, &ik_policies_table, &ik_abandoned_table
};

/*
 * Under Citus, the local shards of the tables (citus.c), each checked and
 * cached as its shell is; made on first use, kept for the backend's life.
 */
static List *shard_tables = NIL;

IkTable *
ik_shard_table(const IkTable *shell, Oid relid, int64 shardid)
{
	ListCell   *lc;
	IkTable    *table;
	MemoryContext oldcontext;
	char		name[NAMEDATALEN];

	snprintf(name, sizeof(name), "%s_" INT64_FORMAT, shell->relname, shardid);
	foreach(lc, shard_tables)
	{
		table = (IkTable *) lfirst(lc);
		if (table->fixed_relid != relid)
			continue;
		/* the OID of a dropped shard, given to another one */
		if (strcmp(table->relname, name) != 0)
		{
			table->relname = MemoryContextStrdup(TopMemoryContext, name);
			table->valid = false;
		}
		return table;
	}
	oldcontext = MemoryContextSwitchTo(TopMemoryContext);
	table = palloc0(sizeof(IkTable));
	table->relname = pstrdup(name);
	table->columns = shell->columns;
	table->ncolumns = shell->ncolumns;
	table->lookup = shell->lookup;
	table->nlookup = shell->nlookup;
	table->order_column = shell->order_column;
	table->written = shell->written;
	table->fixed_relid = relid;
	shard_tables = lappend(shard_tables, table);
	MemoryContextSwitchTo(oldcontext);
	return table;
}

static void
invalidate_table(IkTable *table, Oid relid)
{
	bool		hit = (relid == InvalidOid || relid == table->relid);

	for (int i = 0; !hit && i < table->nindexes; i++)
		hit = (relid == table->index_oids[i]);
	if (hit)
	{
		table->valid = false;
		table->invalidations++;
	}
}

/*
 * Relcache invalidation callback.  It may run in the middle of a build or
 * of a use of the cache, so it only marks the table stale: the next
 * ik_table_open() rebuilds it once its lock is held.
 */
static void
invalidate_tables(Datum arg, Oid relid)
{
	ListCell   *lc;

	for (int t = 0; t < (int) lengthof(all_tables); t++)
		invalidate_table(all_tables[t], relid);
	foreach(lc, shard_tables)
		invalidate_table((IkTable *) lfirst(lc), relid);
}

/*
 * Syscache callback of pg_proc and pg_type: the compiled expressions may
 * have inlined an SQL function a DBA's CHECK or default calls, or hold
 * what a type (a domain's constraints) was; CREATE OR REPLACE FUNCTION
 * sends no relcache invalidation of the table.  Such changes are rare, so
 * every written table is rebuilt, whichever function or type changed.
 */
static void
invalidate_expressions(Datum arg, int cacheid, uint32 hashvalue)
{
	ListCell   *lc;

	for (int t = 0; t < (int) lengthof(all_tables); t++)
	{
		if (all_tables[t]->written)
			all_tables[t]->valid = false;
	}
	foreach(lc, shard_tables)
	{
		IkTable    *table = (IkTable *) lfirst(lc);

		if (table->written)
			table->valid = false;
	}
}

void
ik_tables_register_callbacks(void)
{
	CacheRegisterRelcacheCallback(invalidate_tables, (Datum) 0);
	CacheRegisterSyscacheCallback(PROCOID, invalidate_expressions, (Datum) 0);
	CacheRegisterSyscacheCallback(TYPEOID, invalidate_expressions, (Datum) 0);
}

static void drift(IkTable *table, const char *detail_fmt,...) pg_attribute_printf(2, 3);

/* The table does not have the shape this library needs: IK503. */
static void
drift(IkTable *table, const char *detail_fmt,...)
{
	va_list		args;
	char		detail[512];

	va_start(args, detail_fmt);
	vsnprintf(detail, sizeof(detail), detail_fmt, args);
	va_end(args);

	ereport(ERROR,
			(errcode(ERRCODE_IK_TABLE_NEEDS_OPERATOR),
			 errmsg("table idempotency.%s does not have the shape this library needs",
					table->relname),
			 errdetail("%s", detail),
			 errhint("Undo the change to the table; until then every claim fails. README.md, \"Failure model\", lists the changes the extension accepts.")));
}

static const char *
type_name(Oid typid)
{
	return format_type_be(typid);
}

/* Check one column the library uses, and return its attribute number. */
static AttrNumber
check_column(IkTable *table, TupleDesc desc, const IkColumnSpec *spec)
{
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || strcmp(NameStr(att->attname), spec->name) != 0)
			continue;
		if (att->atttypid != spec->typid || att->atttypmod != -1)
			drift(table, "Column \"%s\" has type %s; the library needs %s.",
				  spec->name, format_type_with_typemod(att->atttypid, att->atttypmod),
				  type_name(spec->typid));
		if (table->written && att->attnotnull != spec->notnull)
			drift(table, "Column \"%s\" is %s; the library needs it %s.",
				  spec->name, att->attnotnull ? "NOT NULL" : "nullable",
				  spec->notnull ? "NOT NULL" : "nullable");
		if (!table->written && spec->notnull && !att->attnotnull)
			drift(table, "Column \"%s\" is nullable; the library needs it NOT NULL.",
				  spec->name);
		if (att->attgenerated != '\0')
			drift(table, "Column \"%s\" is a generated column.", spec->name);
		if (OidIsValid(att->attcollation) &&
			!get_collation_isdeterministic(att->attcollation))
			drift(table, "Column \"%s\" has the nondeterministic collation \"%s\", under which two different names could be one key.",
				  spec->name, get_collation_name(att->attcollation));
		return att->attnum;
	}
	drift(table, "Column \"%s\" (%s) is missing.", spec->name,
		  type_name(spec->typid));
	pg_unreachable();
}

/* Is this attribute one of the library's columns? */
static bool
is_library_column(IkTable *table, AttrNumber attnum)
{
	for (int c = 0; c < table->ncolumns; c++)
	{
		if (table->attnum[c] == attnum)
			return true;
	}
	return false;
}

/*
 * A column a DBA added must let the library's inserts through: nullable,
 * or with a default (identity and generated columns included).
 */
static void
check_extra_columns(IkTable *table, TupleDesc desc)
{
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || is_library_column(table, att->attnum))
			continue;
		if (att->attnotnull && !att->atthasdef &&
			att->attidentity == '\0' && att->attgenerated == '\0')
			drift(table, "Column \"%s\" is NOT NULL without a default, so the library cannot insert a row.",
				  NameStr(att->attname));
	}
}

/*
 * The unique index that rows are looked up by: a valid, immediate btree
 * index on exactly the lookup columns, without expressions or predicate.
 * The primary key is preferred.  Fills table->lookup_index and the index
 * column of each lookup column.
 */
static void
find_lookup_index(IkTable *table, Relation rel)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	Oid			found = InvalidOid;
	bool		found_primary = false;

	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);
		Form_pg_index form = index->rd_index;
		bool		usable;
		int16		position[INDEX_MAX_KEYS];

		usable = form->indisunique && form->indimmediate &&
			form->indisvalid && form->indisready && form->indislive &&
			index->rd_rel->relam == BTREE_AM_OID &&
			IndexRelationGetNumberOfKeyAttributes(index) == table->nlookup &&
			heap_attisnull(index->rd_indextuple, Anum_pg_index_indexprs, NULL) &&
			heap_attisnull(index->rd_indextuple, Anum_pg_index_indpred, NULL);

		for (int l = 0; usable && l < table->nlookup; l++)
		{
			AttrNumber	want = table->attnum[table->lookup[l]];

			position[l] = -1;
			for (int k = 0; k < table->nlookup; k++)
			{
				if (form->indkey.values[k] == want)
					position[l] = k;
			}
			usable = position[l] >= 0 &&
				get_collation_isdeterministic(index->rd_indcollation[position[l]]);
		}
		if (usable && (!OidIsValid(found) || (form->indisprimary && !found_primary)))
		{
			found = RelationGetRelid(index);
			found_primary = form->indisprimary;
			for (int l = 0; l < table->nlookup; l++)
				table->lookup_position[l] = position[l];
		}
		index_close(index, AccessShareLock);
	}
	list_free(indexes);

	if (!OidIsValid(found))
		drift(table, "There is no valid unique btree index on (%s%s%s), which the library looks rows up by.",
			  table->columns[table->lookup[0]].name,
			  table->nlookup > 1 ? ", " : "",
			  table->nlookup > 1 ? table->columns[table->lookup[1]].name : "");
	table->lookup_index = found;
}

/*
 * Refuse what would let the table change a row behind the library's
 * back: a BEFORE row trigger can rewrite the windows, the state or the
 * fingerprint, and a rule is bypassed by executor-level writes.  A
 * disabled BEFORE trigger is refused too: ENABLE is one statement away,
 * and the executor would still fetch each row for it.
 */
static void
check_no_rewriting(IkTable *table, Relation rel)
{
	TriggerDesc *trigdesc = rel->trigdesc;

	if (trigdesc != NULL)
	{
		for (int i = 0; i < trigdesc->numtriggers; i++)
		{
			Trigger    *trigger = &trigdesc->triggers[i];

			if (TRIGGER_FOR_ROW(trigger->tgtype) &&
				TRIGGER_FOR_BEFORE(trigger->tgtype))
				drift(table, "Trigger \"%s\" is a BEFORE row trigger, which could change a row the library writes; only AFTER row triggers are allowed.",
					  trigger->tgname);
		}
	}
	if (rel->rd_rules != NULL)
		drift(table, "The table has rules, which the library's writes would bypass.");
}

/*
 * The table must be the extension's own, not one put in its place: a copy
 * made with CREATE TABLE ... (LIKE idempotency.keys INCLUDING ALL) and
 * renamed over it has the same shape, but pg_dump does not dump its rows
 * as the extension's configuration, and it lacks the TRUNCATE guard.
 * pg_repack keeps the table's OID (it swaps the files), so it passes.
 */
static void
check_extension_member(IkTable *table, Relation rel, Oid extension)
{
	if (!OidIsValid(extension) ||
		getExtensionOfObject(RelationRelationId,
							 RelationGetRelid(rel)) != extension)
		drift(table, "It is not a member of extension idempotency: a table put in its place (by a rename, for example) is neither dumped with the extension's data nor guarded against TRUNCATE.");
}

/*
 * The keys table must keep its TRUNCATE guard (truncate_guard.c): a BEFORE
 * TRUNCATE trigger calling idempotency.keys_truncate_guard(), ENABLE
 * ALWAYS.  A catalog from before the guard (0.1.0) has no such function,
 * and is served as it is.
 */
static void
check_truncate_guard(IkTable *table, Relation rel, Oid extension)
{
	List	   *name = list_make2(makeString("idempotency"),
								  makeString("keys_truncate_guard"));
	Oid			guard = LookupFuncName(name, 0, NULL, true);
	TriggerDesc *trigdesc = rel->trigdesc;

	list_free_deep(name);
	if (!OidIsValid(guard) ||
		getExtensionOfObject(ProcedureRelationId, guard) != extension)
		return;
	for (int i = 0; trigdesc != NULL && i < trigdesc->numtriggers; i++)
	{
		Trigger    *trigger = &trigdesc->triggers[i];

		if (trigger->tgfoid == guard &&
			TRIGGER_FOR_TRUNCATE(trigger->tgtype) &&
			TRIGGER_FOR_BEFORE(trigger->tgtype) &&
			trigger->tgenabled == TRIGGER_FIRES_ALWAYS)
			return;
	}
	drift(table, "It has no TRUNCATE guard: a BEFORE TRUNCATE trigger calling idempotency.keys_truncate_guard(), ENABLE ALWAYS.");
}

/*
 * What the executor needs to write the table, built once: see the file
 * header.  One EState, made in the table's context, serves every write
 * (store.c binds it to the write's snapshot and command) and holds the
 * compiled expressions; with it the range table of the one result
 * relation, and a slot for the rows the writes make.  The slot has a copy
 * of the table's descriptor, since a relcache descriptor would be pinned
 * by the transaction that made the slot.
 */
static bool runs_code(IkTable *table, Relation rel);

static void
build_executor_state(IkTable *table, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	EState	   *estate = CreateExecutorState();
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	RangeTblEntry *rte;
	int			i = 0;

	table->query_cxt = estate->es_query_cxt;
	table->write_cxt = AllocSetContextCreate(estate->es_query_cxt,
											 "idempotency write",
											 ALLOCSET_SMALL_SIZES);
	table->nindexes = list_length(indexes);
	table->index_oids = palloc0(sizeof(Oid) * Max(table->nindexes, 1));
	table->index_info = palloc0(sizeof(IndexInfo *) * Max(table->nindexes, 1));
	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);
		IndexInfo  *info = BuildIndexInfo(index);

		/* what an index AM keeps across one write's inserts (BRIN, GIN) */
		info->ii_Context = table->write_cxt;

		if (info->ii_Expressions != NIL)
			info->ii_ExpressionsState = ExecPrepareExprList(info->ii_Expressions,
															estate);
		if (info->ii_Predicate != NIL)
			info->ii_PredicateState = ExecPrepareQual(info->ii_Predicate, estate);
		table->index_oids[i] = RelationGetRelid(index);
		table->index_info[i] = info;
		if (table->order_column >= 0 && !OidIsValid(table->order_index) &&
			index->rd_rel->relam == BTREE_AM_OID &&
			index->rd_index->indisvalid && info->ii_Predicate == NIL &&
			info->ii_IndexAttrNumbers[0] == table->attnum[table->order_column])
			table->order_index = table->index_oids[i];
		i++;
		index_close(index, AccessShareLock);
	}
	list_free(indexes);

	table->check_exprs = NULL;
	if (desc->constr != NULL && desc->constr->num_check > 0)
	{
		int			ncheck = desc->constr->num_check;

		table->check_exprs = palloc0(sizeof(ExprState *) * ncheck);
		for (int c = 0; c < ncheck; c++)
		{
			Expr	   *expr = ik_check_constraint_expr(rel, &desc->constr->check[c]);

			if (expr != NULL)
				table->check_exprs[c] = ExecPrepareExpr(expr, estate);
		}
	}

	table->ndefaults = 0;
	table->default_attnums = palloc0(sizeof(AttrNumber) * desc->natts);
	table->default_exprs = palloc0(sizeof(ExprState *) * desc->natts);
	for (int a = 0; a < desc->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, a);
		Node	   *expr;

		if (att->attisdropped || att->attgenerated != '\0' ||
			is_library_column(table, att->attnum))
			continue;
		expr = build_column_default(rel, att->attnum);
		if (expr == NULL)
			continue;
		table->default_attnums[table->ndefaults] = att->attnum;
		table->default_exprs[table->ndefaults] = ExecPrepareExpr((Expr *) expr,
																 estate);
		table->ndefaults++;
	}

	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel);
	rte->relkind = RELKIND_RELATION;
	rte->rellockmode = RowExclusiveLock;
	ik_init_range_table(estate, rte);
	table->rri = makeNode(ResultRelInfo);
	estate->es_opened_result_relations = list_make1(table->rri);
	table->index_descs = palloc0(sizeof(Relation) * Max(table->nindexes, 1));
	table->new_row = MakeSingleTupleTableSlot(CreateTupleDescCopy(desc),
											  &TTSOpsHeapTuple);
	/* made now, so that it lives in the query context, not a write's */
	(void) GetPerTupleExprContext(estate);
	table->estate = estate;
	table->runs_code = runs_code(table, rel);
}

/*
 * Whether a write of the table may run code that could run queries: a
 * trigger that fires on a row written, or, in a default, a CHECK
 * constraint or an index, a user's function, a built-in that is not
 * immutable, or a domain (owner.c).
 */
static bool
runs_code(IkTable *table, Relation rel)
{
	TriggerDesc *trigdesc = rel->trigdesc;

	for (int i = 0; trigdesc != NULL && i < trigdesc->numtriggers; i++)
	{
		Trigger    *trigger = &trigdesc->triggers[i];

		if (!trigger->tgisinternal &&
			(TRIGGER_FOR_INSERT(trigger->tgtype) ||
			 TRIGGER_FOR_UPDATE(trigger->tgtype) ||
			 TRIGGER_FOR_DELETE(trigger->tgtype)))
			return true;
	}
	for (int i = 0; i < table->ndefaults; i++)
		if (ik_calls_user_code((Node *) table->default_exprs[i]->expr, NULL))
			return true;
	for (int c = 0; table->check_exprs != NULL &&
		 c < rel->rd_att->constr->num_check; c++)
		if (table->check_exprs[c] != NULL &&
			ik_calls_user_code((Node *) table->check_exprs[c]->expr, NULL))
			return true;
	for (int i = 0; i < table->nindexes; i++)
		if (ik_calls_user_code((Node *) table->index_info[i]->ii_Expressions,
							   NULL) ||
			ik_calls_user_code((Node *) table->index_info[i]->ii_Predicate,
							   NULL))
			return true;
	return false;
}

/*
 * Find the table by name, check it, and build its cache, holding lockmode
 * on it from then on.  Sets table->valid first: an invalidation processed
 * while the indexes are locked below clears it again, and the caller
 * then builds once more.
 */
static void
build(IkTable *table, LOCKMODE lockmode)
{
	MemoryContext oldcontext;
	Relation	rel;
	TupleDesc	desc;
	Oid			extension = get_extension_oid("idempotency", true);

	table->relid = InvalidOid;
	table->nindexes = 0;
	table->order_index = InvalidOid;
	if (table->estate != NULL)
	{
		table->estate->es_query_cxt = table->query_cxt;
		FreeExecutorState(table->estate);
	}
	table->estate = NULL;
	if (table->cxt != NULL)
		MemoryContextDelete(table->cxt);
	table->cxt = NULL;
	table->valid = true;

	table->cxt = AllocSetContextCreate(CacheMemoryContext,
									   "idempotency table cache",
									   ALLOCSET_SMALL_SIZES);
	oldcontext = MemoryContextSwitchTo(table->cxt);
	if (OidIsValid(table->fixed_relid))
	{
		/*
		 * A shard is dropped by Citus some time after it moved away; its
		 * placement was checked before, so the table should still be there.
		 */
		LockRelationOid(table->fixed_relid, lockmode);
		if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(table->fixed_relid)))
			ereport(ERROR,
					(errcode(ERRCODE_IK_MISDIRECTED),
					 errmsg("shard idempotency.%s was dropped while a call used it",
							table->relname),
					 errhint("Retry the request: the retry finds the scope's new shard.")));
		table->relid = table->fixed_relid;
	}
	else
		table->relid = RangeVarGetRelid(makeRangeVar("idempotency",
													 (char *) table->relname, -1),
										lockmode, false);
	rel = table_open(table->relid, NoLock);
	desc = RelationGetDescr(rel);

	if (rel->rd_rel->relkind != RELKIND_RELATION)
		drift(table, "It is not a plain table (relkind \"%c\").",
			  rel->rd_rel->relkind);
	if (rel->rd_rel->relpersistence != RELPERSISTENCE_PERMANENT)
		drift(table, "It is %s: its rows would not survive a crash, while the charges they guard would.",
			  rel->rd_rel->relpersistence == RELPERSISTENCE_UNLOGGED ?
			  "UNLOGGED" : "TEMPORARY");

	table->attnum = palloc(sizeof(AttrNumber) * table->ncolumns);
	for (int c = 0; c < table->ncolumns; c++)
		table->attnum[c] = check_column(table, desc, &table->columns[c]);
	if (table->nlookup > 0)
		find_lookup_index(table, rel);
	/* a Citus shard is no member, nor guarded: its shell is checked */
	if (!OidIsValid(table->fixed_relid))
		check_extension_member(table, rel, extension);
	if (table->written)
	{
		check_extra_columns(table, desc);
		check_no_rewriting(table, rel);
		if (table == &ik_keys_table)
			check_truncate_guard(table, rel, extension);
		build_executor_state(table, rel);
	}
	table_close(rel, NoLock);
	MemoryContextSwitchTo(oldcontext);
}

/* build(), leaving the table stale if it fails (drift, most likely). */
static void
build_or_leave_stale(IkTable *table, LOCKMODE lockmode)
{
	PG_TRY();
	{
		build(table, lockmode);
	}
	PG_CATCH();
	{
		table->valid = false;
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * The owner of the table build() is about to find, as whom its cache is
 * built (owner.c): whoever calls, a SECURITY DEFINER function or not.  The
 * current user when there is no such table yet; build() then says so.
 */
static Oid
table_owner(IkTable *table)
{
	Oid			relid = table->fixed_relid;
	Oid			owner = GetUserId();
	HeapTuple	tuple;

	if (!OidIsValid(relid))
		relid = get_relname_relid(table->relname,
								  get_namespace_oid("idempotency", true));
	if (!OidIsValid(relid))
		return owner;
	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (HeapTupleIsValid(tuple))
	{
		owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
		ReleaseSysCache(tuple);
	}
	return owner;
}

/*
 * Open one of the extension's tables with lockmode, checked and with its
 * cache up to date; close it with table_close(rel, NoLock).
 */
Relation
ik_table_open(IkTable *table, LOCKMODE lockmode)
{
	for (;;)
	{
		if (table->valid)
		{
			/* processes pending invalidations, which may clear valid */
			LockRelationOid(table->relid, lockmode);
		}
		else
		{
			/* planning the expressions may run and inline functions */
			IkOwnerContext owner;

			ik_owner_enter(&owner, table_owner(table));
			build_or_leave_stale(table, lockmode);
			ik_owner_leave(&owner);
		}
		if (table->valid)
			return table_open(table->relid, NoLock);
	}
}

/*
 * Does the catalog have idempotency.abandoned_claims?  Catalogs before
 * 0.3.0 do not.  Asked only when a claim was abandoned, which is rare, so
 * the answer is not kept.
 */
bool
ik_abandoned_table_exists(void)
{
	Oid			schema = get_namespace_oid("idempotency", true);

	return OidIsValid(schema) &&
		OidIsValid(get_relname_relid(ik_abandoned_table.relname, schema));
}

/* Is the extension installed in this database? */
bool
ik_extension_installed(void)
{
	return OidIsValid(get_extension_oid("idempotency", true));
}

/* The value of one of the table's columns in a deformed slot. */
Datum
ik_table_value(const IkTable *table, TupleTableSlot *slot, int column,
			   bool *isnull)
{
	AttrNumber	attnum = table->attnum[column];

	*isnull = slot->tts_isnull[attnum - 1];
	return slot->tts_values[attnum - 1];
}

/*-------------------------------------------------------------------------
 *
 * store.c
 *	  The one storage path of idempotency.keys.
 *
 * Every read and write of the keys table goes through this file, and it
 * goes through the executor's own building blocks, as logical
 * replication's apply worker does: a row is looked up by a scan of the
 * unique index on (key, scope), inserted and updated with
 * ExecSimpleRelationInsert() and ExecSimpleRelationUpdate(), so CHECK and
 * NOT NULL constraints, every index (partial and expression indexes
 * included), column defaults and AFTER row triggers behave as for any
 * INSERT or UPDATE; AFTER triggers fire when each call ends, as at the end
 * of a statement.  What the executor would rebuild per statement (the
 * EState, index information, compiled constraints, defaults) is kept
 * across transactions by tables.c; a write binds it to its snapshot and
 * command, makes its result relation anew in it, and leaves nothing in it
 * but memory it reuses.  A write that fails part-way may leave slots in
 * it whose buffer pins the abort has already released, so the abort
 * drops the whole cache and the next write builds it again.
 *
 * Rows are changed only once locked: ik_store_lock() locks the latest
 * version of a row with an explicit wait policy, and hands it back re-read,
 * so that the caller re-checks what it decided on (a lease token, a lease
 * that lapsed) against the version it will change; that is what makes a
 * lease token a fence.  Under REPEATABLE READ and SERIALIZABLE a row that
 * changed after the transaction's snapshot is a serialization failure, as
 * for any UPDATE.  The reaper instead deletes without waiting: a row that
 * someone else is changing is skipped.
 *
 * Rows are checked when read: a row that breaks the table's invariants
 * (an operator's hand edit, or a table from before its CHECK constraints
 * were validated) is an IK503 naming the key, never a value used
 * unchecked.  Errors of constraints raised while a row is written are
 * reported without the row, since the functions run as the table's owner
 * and PostgreSQL's "Failing row contains" would show the caller the
 * stored fingerprint and response.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"
#include "citus.h"

#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "commands/trigger.h"
#include "compat.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

/*
 * Calls into this file do not nest: a DBA's trigger on the keys table that
 * called the extension's functions would change the table under a write
 * in progress.  store_subid is the subtransaction the outermost call
 * started in, so that an error that unwinds it ends the call.
 */
static bool store_busy = false;
static SubTransactionId store_subid;

/* The table whose cached executor state a write is using, if any. */
static IkTable *writing = NULL;

static void
store_enter(void)
{
	if (store_busy)
		ereport(ERROR,
				(errcode(ERRCODE_IK_TABLE_NEEDS_OPERATOR),
				 errmsg("idempotency functions cannot run inside a write of idempotency.keys"),
				 errdetail("A trigger on idempotency.keys called an idempotency function."),
				 errhint("Drop or change the trigger.")));
	store_busy = true;
	store_subid = GetCurrentSubTransactionId();
}

static void
store_leave(void)
{
	store_busy = false;
}

/* An error ended the call in progress: see the file header. */
static void
store_abort(void)
{
	store_busy = false;
	if (writing != NULL)
	{
		writing->estate->es_query_cxt = writing->query_cxt;
		writing->valid = false;
	}
	writing = NULL;
}

static void
store_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		store_abort();
}

static void
store_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && store_busy && mySubid <= store_subid)
		store_abort();
}

void
ik_store_register_callbacks(void)
{
	ik_tables_register_callbacks();
	ik_citus_register_callbacks();
	RegisterXactCallback(store_xact_callback, NULL);
	RegisterSubXactCallback(store_subxact_callback, NULL);
}

static text *
text_value(IkTable *table, TupleTableSlot *slot, int column, bool *isnull)
{
	Datum		d = ik_table_value(table, slot, column, isnull);

	return *isnull ? NULL : DatumGetTextPP(d);
}

/* A nullable varlena column, detoasted and copied, or NULL for SQL NULL. */
static struct varlena *
copy_varlena(IkTable *table, TupleTableSlot *slot, int column)
{
	bool		isnull;
	Datum		d = ik_table_value(table, slot, column, &isnull);

	return isnull ? NULL : PG_DETOAST_DATUM_COPY(d);
}

/*
 * A nullable varlena column copied as stored, or NULL for SQL NULL: a
 * value moved out of line stays a TOAST pointer of a few bytes, fetched
 * only if it is used (see decode_row()).
 */
static struct varlena *
copy_stored(IkTable *table, TupleTableSlot *slot, int column)
{
	bool		isnull;
	Datum		d = ik_table_value(table, slot, column, &isnull);

	return isnull ? NULL : (struct varlena *) DatumGetPointer(datumCopy(d, false, -1));
}

static bool
null_column(IkTable *table, TupleTableSlot *slot, int column)
{
	bool		isnull;

	(void) ik_table_value(table, slot, column, &isnull);
	return isnull;
}

/*
 * Decode a row into *row, checking the table's invariants (the same as
 * its CHECK constraints, which a table from before version 0.2.0 does not
 * have).  Returns NULL, or what the row breaks.
 *
 * The stored reply, which may weigh megabytes, is neither fetched nor
 * copied: its headers and body are kept as stored (a TOAST pointer stays
 * one), since what a claim decides on is the fingerprint, the state, the
 * windows and the lease, and the reaper deletes a row without reading its
 * reply.  A replay fetches the reply once, with ik_store_fetch_reply().
 */
static const char *
decode_row(IkTable *table, TupleTableSlot *slot, IkRow *row)
{
	bool		isnull;
	text	   *state;
	Datum		d;

	slot_getallattrs(slot);
	memset(row, 0, sizeof(IkRow));
	row->found = true;
	row->tid = slot->tts_tid;
	row->xmin = DatumGetTransactionId(slot_getsysattr(slot,
													  MinTransactionIdAttributeNumber,
													  &isnull));

	state = text_value(table, slot, IK_KEYS_STATE, &isnull);
	if (isnull)
		return "its state is NULL";
	if (VARSIZE_ANY_EXHDR(state) == 9 && memcmp(VARDATA_ANY(state), "completed", 9) == 0)
		row->completed = true;
	else if (!(VARSIZE_ANY_EXHDR(state) == 11 &&
			   memcmp(VARDATA_ANY(state), "in_progress", 11) == 0))
		return "its state is neither 'completed' nor 'in_progress'";

	row->fingerprint = (bytea *) copy_varlena(table, slot, IK_KEYS_FINGERPRINT);
	if (row->fingerprint == NULL)
		return "its fingerprint is NULL";

	if (row->completed)
	{
		d = ik_table_value(table, slot, IK_KEYS_RESPONSE_STATUS, &isnull);
		if (isnull)
			return "it is completed without a response_status";
		row->response.status = DatumGetInt32(d);
		if (row->response.status < 100 || row->response.status > 599)
			return "its response_status is not an HTTP status from 100 to 599";
		if (!null_column(table, slot, IK_KEYS_LEASE_TOKEN) ||
			!null_column(table, slot, IK_KEYS_LEASE_DURATION) ||
			!null_column(table, slot, IK_KEYS_LEASE_EXPIRES_AT))
			return "it is completed but has a lease";
		row->response.headers = (Jsonb *) copy_stored(table, slot,
													  IK_KEYS_RESPONSE_HEADERS);
		row->response.body = (Jsonb *) copy_stored(table, slot,
												   IK_KEYS_RESPONSE_BODY);
	}
	else
	{
		if (!null_column(table, slot, IK_KEYS_RESPONSE_STATUS) ||
			!null_column(table, slot, IK_KEYS_RESPONSE_HEADERS) ||
			!null_column(table, slot, IK_KEYS_RESPONSE_BODY))
			return "it is in progress but has a response";
		d = ik_table_value(table, slot, IK_KEYS_LEASE_TOKEN, &isnull);
		if (isnull)
			return "it is in progress without a lease_token";
		row->lease_token = *DatumGetUUIDP(d);
		d = ik_table_value(table, slot, IK_KEYS_LEASE_DURATION, &isnull);
		if (isnull)
			return "it is in progress without a lease_duration";
		row->lease_ms = ik_interval_ms(DatumGetIntervalP(d));
		if (row->lease_ms <= 0)
			return "its lease_duration is not positive";
		d = ik_table_value(table, slot, IK_KEYS_LEASE_EXPIRES_AT, &isnull);
		if (isnull)
			return "it is in progress without a lease_expires_at";
		row->lease_expires_at = DatumGetTimestampTz(d);
	}
	row->recovery_point = (text *) copy_varlena(table, slot,
												IK_KEYS_RECOVERY_POINT);

	d = ik_table_value(table, slot, IK_KEYS_CREATED_AT, &isnull);
	row->created_at = isnull ? 0 : DatumGetTimestampTz(d);
	if (isnull)
		return "its created_at is NULL";
	d = ik_table_value(table, slot, IK_KEYS_EXPIRES_AT, &isnull);
	if (isnull)
		return "its expires_at is NULL";
	row->expires_at = DatumGetTimestampTz(d);
	d = ik_table_value(table, slot, IK_KEYS_RETAIN_UNTIL, &isnull);
	if (isnull)
		return "its retain_until is NULL";
	row->retain_until = DatumGetTimestampTz(d);
	if (row->created_at > row->expires_at || row->expires_at > row->retain_until)
		return "its windows are not in order (created_at <= expires_at <= retain_until)";
	return NULL;
}

static void
raise_broken_row(text *scope, text *key, const char *problem)
{
	ereport(ERROR,
			(errcode(ERRCODE_IK_TABLE_NEEDS_OPERATOR),
			 errmsg("row of idempotency key \"%s\" in scope \"%s\" breaks the invariants of idempotency.keys",
					text_to_cstring(key), text_to_cstring(scope)),
			 errdetail("The row is unusable: %s.", problem),
			 errhint("Correct or delete the row; the extension never writes such a row.")));
}

/*
 * The reply of a completed row that a replay returns: its headers are
 * fetched and checked here, its body is left as stored, for the claim's
 * result to fetch once as it is formed.
 */
void
ik_store_fetch_reply(text *scope, text *key, IkRow *row)
{
	Jsonb	   *headers = row->response.headers;

	if (headers == NULL)
		return;
	headers = DatumGetJsonbP(PointerGetDatum(headers));
	if (!JB_ROOT_IS_OBJECT(headers))
		raise_broken_row(scope, key, "its response_headers are not a JSON object");
	row->response.headers = headers;
}

/*
 * Scan keys for (scope, key) on the lookup index, in the index's column
 * order, with its collations; the values must outlive the scan.
 */
static int
lookup_scankeys(IkTable *table, Relation index, text *scope, text *key,
				ScanKey skey)
{
	Datum		values[2] = {PointerGetDatum(scope), PointerGetDatum(key)};

	for (int l = 0; l < table->nlookup; l++)
	{
		int			k = table->lookup_position[l];

		ScanKeyEntryInitialize(&skey[k], 0, k + 1, BTEqualStrategyNumber,
							   InvalidOid, index->rd_indcollation[k],
							   F_TEXTEQ, values[l]);
	}
	return table->nlookup;
}

/*
 * The relation that holds scope's rows on this node, opened with lockmode:
 * idempotency.keys itself, or, when Citus distributes it, the scope's
 * local shard (citus.c), never the shell.  With write, Citus's
 * shard-metadata lock is taken first, so that a move or split of the
 * shard cannot complete under the write and lose it.
 *
 * A claim that answers 'new' writes nothing, so it takes no such lock: in
 * an explicit transaction through the coordinator, the charge's INSERT
 * that follows takes the same lock in share mode on the coordinator, and a
 * move holding it there exclusively while it waits for the worker's would
 * be a distributed deadlock.  Nothing is lost by that: the claim's
 * completion runs in the same backend (its open claim is there) and
 * re-checks the placement under the lock, so a claim that a move overtook
 * can only fail (IK421), and a charge inserted before the move holds the
 * move back until its transaction ends.
 */
static IkTable *
keys_open(text *scope, LOCKMODE lockmode, bool write, Relation *rel)
{
	Relation	shell = ik_table_open(&ik_keys_table, lockmode);
	int64		shardid;
	Oid			shard = ik_citus_keys_shard(ik_keys_table.relid, scope,
											&shardid);
	IkTable    *table;

	if (!OidIsValid(shard))
	{
		*rel = shell;
		return &ik_keys_table;
	}
	table_close(shell, NoLock);
	if (write)
		ik_citus_lock_shard(ik_keys_table.relid, scope, shardid);
	table = ik_shard_table(&ik_keys_table, shard, shardid);
	*rel = ik_table_open(table, lockmode);
	return table;
}

/*
 * Look up (scope, key).  The snapshot is a fresh one, as a new statement
 * would take: under READ COMMITTED it sees transactions committed up to
 * now, and under REPEATABLE READ it is the transaction's.  With latest, it
 * is a fresh snapshot whatever the isolation level: that is how a claim
 * learns of a row committed after its transaction's snapshot was taken.
 * Scope and key are compared byte by byte once the index has found the
 * row, so that no collation could hand one scope another's row.
 */
void
ik_store_lookup(text *scope, text *key, bool latest, IkRow *row)
{
	Relation	rel;
	Relation	index;
	ScanKeyData skey[2];
	int			nkeys;
	TupleTableSlot *slot;
	IndexScanDesc scan;
	const char *problem = NULL;
	bool		isnull;
	IkTable    *table;

	store_enter();
	table = keys_open(scope, AccessShareLock, false, &rel);
	index = index_open(table->lookup_index, AccessShareLock);
	nkeys = lookup_scankeys(table, index, scope, key, skey);

	PushCopiedSnapshot(latest ? GetLatestSnapshot() : GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
	slot = table_slot_create(rel, NULL);
	scan = ik_index_beginscan(rel, index, GetActiveSnapshot(), nkeys);
	index_rescan(scan, skey, nkeys, NULL, 0);

	memset(row, 0, sizeof(IkRow));
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		slot_getallattrs(slot);
		if (!ik_same_bytes(text_value(table, slot, IK_KEYS_SCOPE, &isnull), scope) ||
			!ik_same_bytes(text_value(table, slot, IK_KEYS_KEY, &isnull), key))
			continue;
		problem = decode_row(table, slot, row);
		break;
	}

	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	PopActiveSnapshot();
	index_close(index, NoLock);
	table_close(rel, NoLock);
	store_leave();
	if (problem != NULL)
		raise_broken_row(scope, key, problem);
}

/*
 * One write, as the apply worker makes one: the table's cached EState
 * with one result relation, its cached indexes and compiled constraints,
 * and the AFTER trigger queue open, as for one statement.
 */
typedef struct Writer
{
	IkTable    *table;			/* idempotency.keys, or its local shard */
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	text	   *scope;			/* for messages */
	text	   *key;
	bool		runs_code;		/* so it runs as the table's owner, */
	IkOwnerContext owner;		/* ... in this context (owner.c) */
} Writer;

/*
 * The result relation is made anew in the cached memory for each write,
 * as the executor makes it for each statement, so that what the executor
 * adds to it lazily (trigger slots, trigger functions' caches, generated
 * columns' expressions, triggers' WHEN conditions) does not outlive the
 * write: during the write the EState's query context is the write's own,
 * which writer_close() resets.
 */
static void
writer_open(Writer *wr, text *scope, text *key, IkTable *table, Relation rel)
{
	EState	   *estate = table->estate;
	ResultRelInfo *rri = table->rri;

	wr->scope = scope;
	wr->key = key;
	wr->table = table;
	wr->rel = rel;
	wr->estate = estate;
	wr->rri = rri;

	/* what the DBA attached to the table runs as for maintenance: owner.c */
	wr->runs_code = table->runs_code;
	if (wr->runs_code)
	{
		ik_owner_check_temp_objects(table->relname);
		ik_owner_enter(&wr->owner, rel->rd_rel->relowner);
	}

	estate->es_query_cxt = table->write_cxt;
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	rri->ri_NumIndices = table->nindexes;
	rri->ri_IndexRelationDescs = table->index_descs;
	rri->ri_IndexRelationInfo = table->index_info;
	for (int i = 0; i < table->nindexes; i++)
		table->index_descs[i] = index_open(table->index_oids[i],
										   RowExclusiveLock);
	IK_RRI_CHECK_EXPRS(rri) = table->check_exprs;
	estate->es_output_cid = GetCurrentCommandId(true);
	estate->es_snapshot = GetActiveSnapshot();
	writing = table;

	AfterTriggerBeginQuery();
}

/* A writer of the relation that holds scope's rows. */
static void
writer_begin(Writer *wr, text *scope, text *key)
{
	Relation	rel;
	IkTable    *table;

	store_enter();
	table = keys_open(scope, RowExclusiveLock, true, &rel);
	writer_open(wr, scope, key, table, rel);
}


/*
 * Let go of a write's state; its AFTER triggers have fired.  As
 * ExecCloseIndices() does, but the indexes stay locked until the
 * transaction ends, as the table does: the lock would be taken again by
 * the next write, which costs more than keeping it.  The slots the write
 * made go, and so does the memory of its expressions; the rest of the
 * EState stays for the next write.
 */
static void
writer_close(Writer *wr)
{
	EState	   *estate = wr->estate;

	for (int i = 0; i < wr->rri->ri_NumIndices; i++)
	{
		ik_index_insert_cleanup(wr->rri->ri_IndexRelationDescs[i],
								wr->rri->ri_IndexRelationInfo[i]);
		/* its memory is the write's, reset below */
		wr->rri->ri_IndexRelationInfo[i]->ii_AmCache = NULL;
		index_close(wr->rri->ri_IndexRelationDescs[i], NoLock);
		wr->rri->ri_IndexRelationDescs[i] = NULL;
	}
	ExecClearTuple(wr->table->new_row);
	ExecResetTupleTable(estate->es_tupleTable, true);
	estate->es_tupleTable = NIL;
	ik_forget_result_relation_extras(estate);
	ResetPerTupleExprContext(estate);
	estate->es_query_cxt = wr->table->query_cxt;
	MemoryContextReset(wr->table->write_cxt);
	writing = NULL;
	if (wr->runs_code)
		ik_owner_leave(&wr->owner);
	table_close(wr->rel, NoLock);
	store_leave();
	CommandCounterIncrement();
}

/*
 * Report a constraint's error without the row it shows: see the file
 * header.  Other errors pass unchanged.
 */
static void
rethrow_without_row(Writer *wr, MemoryContext context)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(context);
	edata = CopyErrorData();
	if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION)
		ReThrowError(edata);
	FlushErrorState();
	ereport(ERROR,
			(errcode(edata->sqlerrcode),
			 errmsg("idempotency key \"%s\" in scope \"%s\" could not be stored: it violates constraint \"%s\" of table \"%s%s%s\"",
					text_to_cstring(wr->key), text_to_cstring(wr->scope),
					edata->constraint_name ? edata->constraint_name : "(unnamed)",
					edata->schema_name ? edata->schema_name : "",
					edata->schema_name ? "." : "",
					edata->table_name ? edata->table_name : "?"),
			 errhint("A constraint or trigger on idempotency.keys refused the row; the transaction is rolled back."),
			 edata->schema_name ?
			 err_generic_string(PG_DIAG_SCHEMA_NAME, edata->schema_name) : 0,
			 edata->table_name ?
			 err_generic_string(PG_DIAG_TABLE_NAME, edata->table_name) : 0,
			 edata->constraint_name ?
			 err_generic_string(PG_DIAG_CONSTRAINT_NAME, edata->constraint_name) : 0));
}

typedef void (*WriteStep) (Writer *wr, const void *arg);

/*
 * Run one write of (scope, key) and fire the AFTER triggers it queued, as
 * one statement would.  Afterwards the rest of the transaction sees it.
 */
static void
run_write(text *scope, text *key, WriteStep step, const void *arg)
{
	MemoryContext context = CurrentMemoryContext;
	Writer		wr;

	writer_begin(&wr, scope, key);
	PG_TRY();
	{
		step(&wr, arg);
		AfterTriggerEndQuery(wr.estate);
	}
	PG_CATCH();
	{
		rethrow_without_row(&wr, context);
	}
	PG_END_TRY();
	writer_close(&wr);
}

#define SET_COLUMN(column, datum) \
	(values[table->attnum[column] - 1] = (datum), \
	 nulls[table->attnum[column] - 1] = false)
#define NULL_COLUMN(column) \
	(nulls[table->attnum[column] - 1] = true)

/*
 * The new version of a row, in a slot of the table's type: the library's
 * columns from w, the DBA's extra columns from old (an update) or their
 * defaults (an insert).
 */
static TupleTableSlot *
row_slot(Writer *wr, const IkWrite *w, TupleTableSlot *old)
{
	IkTable    *table = wr->table;
	TupleTableSlot *slot = table->new_row;
	int			natts = slot->tts_tupleDescriptor->natts;
	Datum	   *values = slot->tts_values;
	bool	   *nulls = slot->tts_isnull;

	ExecClearTuple(slot);
	if (old != NULL)
	{
		slot_getallattrs(old);
		memcpy(values, old->tts_values, sizeof(Datum) * natts);
		memcpy(nulls, old->tts_isnull, sizeof(bool) * natts);
	}
	else
	{
		ExprContext *econtext = GetPerTupleExprContext(wr->estate);

		memset(nulls, true, sizeof(bool) * natts);
		for (int i = 0; i < table->ndefaults; i++)
		{
			AttrNumber	attnum = table->default_attnums[i];

			values[attnum - 1] = ExecEvalExpr(table->default_exprs[i], econtext,
											  &nulls[attnum - 1]);
		}
	}

	SET_COLUMN(IK_KEYS_SCOPE, PointerGetDatum(w->scope));
	SET_COLUMN(IK_KEYS_KEY, PointerGetDatum(w->key));
	SET_COLUMN(IK_KEYS_FINGERPRINT, PointerGetDatum(w->fingerprint));
	SET_COLUMN(IK_KEYS_CREATED_AT, TimestampTzGetDatum(w->created_at));
	SET_COLUMN(IK_KEYS_EXPIRES_AT, TimestampTzGetDatum(w->expires_at));
	SET_COLUMN(IK_KEYS_RETAIN_UNTIL, TimestampTzGetDatum(w->retain_until));
	if (w->recovery_point != NULL)
		SET_COLUMN(IK_KEYS_RECOVERY_POINT, PointerGetDatum(w->recovery_point));
	else
		NULL_COLUMN(IK_KEYS_RECOVERY_POINT);
	if (w->completed)
	{
		SET_COLUMN(IK_KEYS_STATE, CStringGetTextDatum("completed"));
		SET_COLUMN(IK_KEYS_RESPONSE_STATUS, Int32GetDatum(w->response.status));
		if (w->response.headers != NULL)
			SET_COLUMN(IK_KEYS_RESPONSE_HEADERS,
					   PointerGetDatum(w->response.headers));
		else
			NULL_COLUMN(IK_KEYS_RESPONSE_HEADERS);
		if (w->response.body != NULL)
			SET_COLUMN(IK_KEYS_RESPONSE_BODY, PointerGetDatum(w->response.body));
		else
			NULL_COLUMN(IK_KEYS_RESPONSE_BODY);
		NULL_COLUMN(IK_KEYS_LEASE_TOKEN);
		NULL_COLUMN(IK_KEYS_LEASE_DURATION);
		NULL_COLUMN(IK_KEYS_LEASE_EXPIRES_AT);
	}
	else
	{
		Interval   *lease = palloc0(sizeof(Interval));

		lease->time = w->lease_ms * 1000;
		SET_COLUMN(IK_KEYS_STATE, CStringGetTextDatum("in_progress"));
		NULL_COLUMN(IK_KEYS_RESPONSE_STATUS);
		NULL_COLUMN(IK_KEYS_RESPONSE_HEADERS);
		NULL_COLUMN(IK_KEYS_RESPONSE_BODY);
		SET_COLUMN(IK_KEYS_LEASE_TOKEN, UUIDPGetDatum(&w->lease_token));
		SET_COLUMN(IK_KEYS_LEASE_DURATION, IntervalPGetDatum(lease));
		SET_COLUMN(IK_KEYS_LEASE_EXPIRES_AT,
				   TimestampTzGetDatum(w->lease_expires_at));
	}
	ExecStoreVirtualTuple(slot);
	return slot;
}

#undef SET_COLUMN
#undef NULL_COLUMN

static void
insert_step(Writer *wr, const void *arg)
{
	ExecSimpleRelationInsert(wr->rri, wr->estate,
							 row_slot(wr, (const IkWrite *) arg, NULL));
}

/* Insert a new row. */
void
ik_store_insert(const IkWrite *w)
{
	run_write(w->scope, w->key, insert_step, w);
}

/* The version of a row that the caller locked, in a slot of the writer. */
static TupleTableSlot *
locked_slot(Writer *wr, const IkRow *locked)
{
	TupleTableSlot *slot = table_slot_create(wr->rel, &wr->estate->es_tupleTable);

	if (!table_tuple_fetch_row_version(wr->rel, (ItemPointer) &locked->tid,
									   SnapshotAny, slot))
		elog(ERROR, "locked row of idempotency.keys vanished");
	return slot;
}

typedef struct Update
{
	const IkRow *locked;
	const IkWrite *w;
} Update;

static void
update_step(Writer *wr, const void *arg)
{
	const Update *u = (const Update *) arg;
	TupleTableSlot *old = locked_slot(wr, u->locked);

	ExecSimpleRelationUpdate(wr->rri, wr->estate, NULL, old,
							 row_slot(wr, u->w, old));
}

/*
 * Replace a row the caller locked with ik_store_lock() by the version w;
 * the DBA's extra columns keep their values.
 */
void
ik_store_update(text *scope, text *key, const IkRow *locked, const IkWrite *w)
{
	Update		u = {locked, w};

	run_write(scope, key, update_step, &u);
}

static void
delete_step(Writer *wr, const void *arg)
{
	ExecSimpleRelationDelete(wr->rri, wr->estate, NULL,
							 locked_slot(wr, (const IkRow *) arg));
}

/* Delete a row the caller locked with ik_store_lock(). */
void
ik_store_delete(text *scope, text *key, const IkRow *locked)
{
	run_write(scope, key, delete_step, locked);
}

/* Lock a row, as SELECT ... FOR UPDATE would, for ik_store_lock(). */
typedef struct RowLock
{
	Relation	rel;
	ItemPointerData tid;
	TupleTableSlot *slot;
	LockWaitPolicy policy;
	TM_Result	result;
	TM_FailureData tmfd;
} RowLock;

static void
lock_row(void *arg)
{
	RowLock    *lock = (RowLock *) arg;
	uint8		flags = IsolationUsesXactSnapshot() ? 0 :
		TUPLE_LOCK_FLAG_FIND_LAST_VERSION;

	lock->result = table_tuple_lock(lock->rel, &lock->tid, GetActiveSnapshot(),
									lock->slot, GetCurrentCommandId(true),
									LockTupleExclusive, lock->policy, flags,
									&lock->tmfd);
}

static void
raise_concurrent_update(text *scope, text *key)
{
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not serialize access due to a concurrent change of idempotency key \"%s\"",
					text_to_cstring(key)),
			 errdetail("Another transaction changed key \"%s\" in scope \"%s\" after this transaction's snapshot was taken.",
					   text_to_cstring(key), text_to_cstring(scope)),
			 errhint("Retry the transaction.")));
}

/*
 * Lock the row *row was read from, for the rest of the transaction, and
 * read its latest version into *row.  wait_ms is how long to wait for
 * another transaction that holds it: 0 not at all, -1 as long as the
 * session's lock_timeout and statement_timeout allow.  Under READ
 * COMMITTED a row updated meanwhile is followed to its latest version,
 * which the caller must re-check; under REPEATABLE READ it is a
 * serialization failure.
 */
IkLockResult
ik_store_lock(text *scope, text *key, IkRow *row, int wait_ms)
{
	RowLock		lock;
	const char *problem = NULL;
	IkLockResult result = IK_ROW_LOCKED;
	IkTable    *table;

	store_enter();
	table = keys_open(scope, RowShareLock, true, &lock.rel);
	lock.tid = row->tid;
	lock.slot = table_slot_create(lock.rel, NULL);
	lock.policy = (wait_ms == 0) ? LockWaitSkip : LockWaitBlock;
	if (wait_ms > 0)
	{
		/* uncontended first, then the bounded wait in a subtransaction */
		lock.policy = LockWaitSkip;
		lock_row(&lock);
		if (lock.result == TM_WouldBlock)
		{
			lock.policy = LockWaitBlock;
			if (!ik_within_lock_timeout(lock_row, &lock, wait_ms))
				lock.result = TM_WouldBlock;
		}
	}
	else
		lock_row(&lock);

	switch (lock.result)
	{
		case TM_Ok:
			problem = decode_row(table, lock.slot, row);
			break;
		case TM_WouldBlock:
			result = IK_ROW_BUSY;
			break;
		case TM_Updated:
		case TM_Deleted:
			if (IsolationUsesXactSnapshot())
				raise_concurrent_update(scope, key);
			result = IK_ROW_GONE;
			break;
		default:
			elog(ERROR, "unexpected result %d locking a row of idempotency.keys",
				 (int) lock.result);
	}
	ExecDropSingleTupleTableSlot(lock.slot);
	table_close(lock.rel, NoLock);
	store_leave();
	if (problem != NULL)
		raise_broken_row(scope, key, problem);
	return result;
}

/*
 * One relation the reaper scans: idempotency.keys, or under Citus one of
 * its local shards, with the next row of it that is past retention.
 */
typedef struct ReapSource
{
	IkTable    *table;
	int64		shardid;
	Relation	rel;
	Relation	index;
	IndexScanDesc iscan;
	TableScanDesc hscan;
	TupleTableSlot *slot;
	bool		has_row;		/* slot holds the next row, decoded in row */
	IkRow		row;
	MemoryContext row_cxt;		/* what decoding the row allocated */
} ReapSource;

/*
 * Move a source to its next row past retention that decodes.  What the
 * rows scanned decode to goes with each row, so that a batch's memory does
 * not grow with the rows it passes over (all of the table, without an
 * index on retain_until).
 */
static void
reap_source_next(ReapSource *src, TimestampTz now)
{
	MemoryContext oldcontext;

	src->has_row = false;
	while (src->iscan ?
		   index_getnext_slot(src->iscan, ForwardScanDirection, src->slot) :
		   table_scan_getnextslot(src->hscan, ForwardScanDirection, src->slot))
	{
		bool		usable;

		MemoryContextReset(src->row_cxt);
		oldcontext = MemoryContextSwitchTo(src->row_cxt);
		usable = decode_row(src->table, src->slot, &src->row) == NULL &&
			src->row.retain_until <= now;
		MemoryContextSwitchTo(oldcontext);
		if (!usable)
			continue;
		src->has_row = true;
		return;
	}
}

/*
 * The relations to reap on this node: the table, or under Citus the local
 * shards of it, read afresh (shards move); none on a node without shards.
 */
static List *
reap_sources(LOCKMODE lockmode)
{
	Relation	shell = ik_table_open(&ik_keys_table, lockmode);
	bool		distributed;
	List	   *shards = ik_citus_local_keys_shards(ik_keys_table.relid,
													&distributed);
	List	   *sources = NIL;
	ListCell   *lc;

	if (!distributed)
	{
		ReapSource *src = palloc0(sizeof(ReapSource));

		src->table = &ik_keys_table;
		src->rel = shell;
		return list_make1(src);
	}
	table_close(shell, NoLock);
	foreach(lc, shards)
	{
		IkShard    *shard = (IkShard *) lfirst(lc);
		ReapSource *src = palloc0(sizeof(ReapSource));

		src->shardid = shard->shardid;
		src->table = ik_shard_table(&ik_keys_table, shard->relid,
									shard->shardid);
		src->rel = ik_table_open(src->table, lockmode);
		sources = lappend(sources, src);
	}
	return sources;
}

/*
 * The reaper's scan: up to limit rows whose retention ended by now, in
 * order of retain_until from *cursor on, that no live lease holds; *cursor
 * moves past what was seen, so that a batch does not walk again the index
 * entries of the rows the batches before it deleted (they stay in the
 * index while an old snapshot holds back the horizon).  Rows that break
 * the invariants are skipped here: they are reported when claimed; so are
 * the rows skip() names (they could not be deleted before).  Under Citus
 * the local shards are scanned side by side and merged in order of
 * retain_until, so that the cursor means the same as for one table.
 */
int
ik_store_reap_scan(TimestampTz now, TimestampTz *cursor, int limit,
				   IkReapCandidate *candidates,
				   bool (*skip) (void *arg, uint64 keyhash,
								 TimestampTz retain_until),
				   void *skip_arg)
{
	List	   *sources;
	ListCell   *lc;
	Snapshot	snapshot;
	ScanKeyData skey[2];
	TimestampTz wall = GetCurrentTimestamp();
	bool		ordered = true;
	int			n = 0;

	store_enter();
	sources = reap_sources(AccessShareLock);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	foreach(lc, sources)
		ordered &= OidIsValid(((ReapSource *) lfirst(lc))->table->order_index);
	foreach(lc, sources)
	{
		ReapSource *src = (ReapSource *) lfirst(lc);

		src->slot = table_slot_create(src->rel, NULL);
		src->row_cxt = AllocSetContextCreate(CurrentMemoryContext,
											 "idempotency reaped row",
											 ALLOCSET_SMALL_SIZES);
		if (ordered)
		{
			src->index = index_open(src->table->order_index, AccessShareLock);
			ScanKeyInit(&skey[0], 1, BTGreaterEqualStrategyNumber,
						F_TIMESTAMPTZ_GE, TimestampTzGetDatum(*cursor));
			ScanKeyInit(&skey[1], 1, BTLessEqualStrategyNumber,
						F_TIMESTAMPTZ_LE, TimestampTzGetDatum(now));
			src->iscan = ik_index_beginscan(src->rel, src->index, snapshot, 2);
			index_rescan(src->iscan, skey, 2, NULL, 0);
		}
		else
			src->hscan = ik_table_beginscan(src->rel, snapshot, 0, NULL);
		reap_source_next(src, now);
	}

	while (n < limit)
	{
		ReapSource *src = NULL;
		IkRow	   *row;
		bool		isnull;
		IkReapCandidate *c;

		/* the source whose next row ends its retention first */
		foreach(lc, sources)
		{
			ReapSource *s = (ReapSource *) lfirst(lc);

			if (s->has_row &&
				(src == NULL || s->row.retain_until < src->row.retain_until))
				src = s;
		}
		if (src == NULL)
			break;
		row = &src->row;
		if (ordered)
			*cursor = row->retain_until;
		if (!row->completed && row->lease_expires_at > wall)
		{
			reap_source_next(src, now);
			continue;
		}
		c = &candidates[n];
		c->relid = RelationGetRelid(src->rel);
		c->shardid = src->shardid;
		c->scope = DatumGetTextPCopy(ik_table_value(src->table, src->slot,
													IK_KEYS_SCOPE, &isnull));
		c->key = DatumGetTextPCopy(ik_table_value(src->table, src->slot,
												  IK_KEYS_KEY, &isnull));
		c->keyhash = ik_key_hash(c->scope, c->key);
		c->tid = row->tid;
		c->retain_until = row->retain_until;
		c->completed = row->completed;
		c->recovery_point = row->recovery_point == NULL ? NULL :
			DatumGetTextPCopy(PointerGetDatum(row->recovery_point));
		c->lease_token = row->lease_token;
		c->created_at = row->created_at;
		c->lease_expires_at = row->lease_expires_at;
		if (!skip(skip_arg, c->keyhash, row->retain_until))
			n++;
		reap_source_next(src, now);
	}

	foreach(lc, sources)
	{
		ReapSource *src = (ReapSource *) lfirst(lc);

		if (src->iscan)
		{
			index_endscan(src->iscan);
			index_close(src->index, NoLock);
		}
		else
			table_endscan(src->hscan);
		ExecDropSingleTupleTableSlot(src->slot);
		MemoryContextDelete(src->row_cxt);
		table_close(src->rel, NoLock);
	}
	UnregisterSnapshot(snapshot);
	list_free_deep(sources);
	store_leave();
	return n;
}

/*
 * Delete the candidates that are in the relation of candidates[first]
 * (and were not already), in one write of that relation.
 */
static int
reap_delete_in(IkReapCandidate *candidates, int n, int first, bool *deleted)
{
	IkReapCandidate *c = &candidates[first];
	Writer		wr;
	IkTable    *table;
	Relation	rel;
	int			count = 0;

	store_enter();
	rel = ik_table_open(&ik_keys_table, RowExclusiveLock);
	table = &ik_keys_table;
	if (c->shardid != 0)
	{
		table_close(rel, NoLock);
		ik_citus_lock_shard(ik_keys_table.relid, c->scope, c->shardid);
		table = ik_shard_table(&ik_keys_table, c->relid, c->shardid);
		rel = ik_table_open(table, RowExclusiveLock);
	}
	writer_open(&wr, NULL, NULL, table, rel);
	CheckCmdReplicaIdentity(wr.rel, CMD_DELETE);
	for (int i = first; i < n; i++)
	{
		TM_FailureData tmfd;
		TM_Result	result;

		if (candidates[i].relid != c->relid)
			continue;
		result = ik_table_tuple_delete(wr.rel, &candidates[i].tid,
									   wr.estate->es_output_cid,
									   wr.estate->es_snapshot, InvalidSnapshot,
									   false, &tmfd);
		deleted[i] = (result == TM_Ok);
		if (!deleted[i])
			continue;
		ExecARDeleteTriggers(wr.estate, wr.rri, &candidates[i].tid, NULL,
							 NULL, false);
		count++;
	}
	AfterTriggerEndQuery(wr.estate);
	writer_close(&wr);
	return count;
}

/*
 * Delete the candidates, without waiting for a row that another
 * transaction is changing (it is skipped: deleted[i] stays false), with
 * the delete triggers fired (foreign keys that reference the table among
 * them).  Returns the number deleted.  An error of a trigger, such as a
 * foreign key violation, aborts the whole call: reap.c contains it.
 * Candidates from several shards are deleted shard by shard.
 */
int
ik_store_reap_delete(IkReapCandidate *candidates, int n, bool *deleted)
{
	int			count = 0;

	for (int i = 0; i < n; i++)
		deleted[i] = false;
	for (int first = 0; first < n; first++)
	{
		bool		done = false;

		for (int j = 0; j < first && !done; j++)
			done = (candidates[j].relid == candidates[first].relid);
		if (!done)
			count += reap_delete_in(candidates, n, first, deleted);
	}
	return count;
}

/*
 * The row of an abandoned durable claim, in a slot of
 * idempotency.abandoned_claims: the DBA's extra columns get their
 * defaults.
 */
static TupleTableSlot *
abandoned_slot(Writer *wr, const IkAbandoned *a)
{
	IkTable    *table = wr->table;
	TupleTableSlot *slot = table->new_row;
	Datum	   *values = slot->tts_values;
	bool	   *nulls = slot->tts_isnull;
	ExprContext *econtext = GetPerTupleExprContext(wr->estate);

	ExecClearTuple(slot);
	memset(nulls, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	for (int i = 0; i < table->ndefaults; i++)
	{
		AttrNumber	attnum = table->default_attnums[i];

		values[attnum - 1] = ExecEvalExpr(table->default_exprs[i], econtext,
										  &nulls[attnum - 1]);
	}
#define SET_COLUMN(column, datum) \
	(values[table->attnum[column] - 1] = (datum), \
	 nulls[table->attnum[column] - 1] = false)
	SET_COLUMN(IK_ABANDONED_SCOPE, PointerGetDatum(a->scope));
	SET_COLUMN(IK_ABANDONED_KEY, PointerGetDatum(a->key));
	if (a->recovery_point != NULL)
		SET_COLUMN(IK_ABANDONED_RECOVERY_POINT,
				   PointerGetDatum(a->recovery_point));
	SET_COLUMN(IK_ABANDONED_LEASE_TOKEN, UUIDPGetDatum(&a->lease_token));
	SET_COLUMN(IK_ABANDONED_FIRST_SEEN, TimestampTzGetDatum(a->first_seen));
	SET_COLUMN(IK_ABANDONED_LEASE_EXPIRES_AT,
			   TimestampTzGetDatum(a->lease_expires_at));
	SET_COLUMN(IK_ABANDONED_ABANDONED_AT,
			   TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()));
	SET_COLUMN(IK_ABANDONED_HOW, CStringGetTextDatum(a->how));
#undef SET_COLUMN
	ExecStoreVirtualTuple(slot);
	return slot;
}

/*
 * Record an abandoned durable claim in idempotency.abandoned_claims, in
 * the transaction that reaps or replaces its row, so that the record
 * commits, prepares and replicates with the deletion: a report made at
 * commit (oncommit.c) is lost at PREPARE TRANSACTION and in a crash right
 * after the commit.  Written through the executor as the keys are, so a
 * DBA's constraints and triggers on it apply.  Returns false, recording
 * nothing, on a catalog from before 0.3.0 that has no such table.
 */
bool
ik_store_record_abandoned(const IkAbandoned *a)
{
	MemoryContext context = CurrentMemoryContext;
	Writer		wr;
	Relation	rel;

	if (!ik_abandoned_table_exists())
		return false;
	store_enter();
	rel = ik_table_open(&ik_abandoned_table, RowExclusiveLock);
	writer_open(&wr, a->scope, a->key, &ik_abandoned_table, rel);
	PG_TRY();
	{
		ExecSimpleRelationInsert(wr.rri, wr.estate, abandoned_slot(&wr, a));
		AfterTriggerEndQuery(wr.estate);
	}
	PG_CATCH();
	{
		rethrow_without_row(&wr, context);
	}
	PG_END_TRY();
	writer_close(&wr);
	return true;
}

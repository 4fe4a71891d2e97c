/*-------------------------------------------------------------------------
 *
 * store.c
 *	  Reading and writing rows of idempotency.keys.
 *
 * The hot path reads the primary key index and inserts heap and index
 * tuples directly, as PostgreSQL's catalog code does.  Measured on the
 * development machine, SPI's executor start-up per query cost more than
 * the charge insert the claim guards; direct access costs a few index
 * probes.  The price is that nothing here fires triggers or evaluates
 * CHECK constraints: the table is the extension's own, written only by
 * these functions, which validate every value first (validate.c).
 *
 * Updates and deletes go through SPI: the rare overwrite of a row past
 * retention, and the steps of durable claims, whose flows wait on a
 * payment processor anyway.  SPI's row locking and re-checks after a
 * concurrent update are what make a lease token a fence: each statement
 * names the token it expects, so of two writers with different tokens at
 * most one finds the row.  The queries schema-qualify every name and
 * operator, so no search_path of a caller can redirect them.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"
#include "compat.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "nodes/makefuncs.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* Columns of idempotency.keys, in the order of its CREATE TABLE. */
enum
{
	Anum_keys_scope = 1,
	Anum_keys_key,
	Anum_keys_fingerprint,
	Anum_keys_state,
	Anum_keys_response_status,
	Anum_keys_response_headers,
	Anum_keys_response_body,
	Anum_keys_recovery_point,
	Anum_keys_lease_token,
	Anum_keys_lease_duration,
	Anum_keys_lease_expires_at,
	Anum_keys_created_at,
	Anum_keys_expires_at,
	Anum_keys_retain_until,
	Natts_keys = Anum_keys_retain_until
};

/* Columns of idempotency.policies. */
enum
{
	Anum_policies_scope = 1,
	Anum_policies_mode,
	Anum_policies_ttl,
	Anum_policies_retain,
	Anum_policies_cache_5xx,
	Natts_policies = Anum_policies_cache_5xx
};

/*
 * The extension's tables, found by name once per backend and opened by
 * OID after that: the name lookup cost more than a probe of the index.
 * A relcache invalidation of a table (its drop among them) makes the next
 * open look it up by name again, so that a dropped and re-created
 * extension is found.
 */
typedef struct IkTable
{
	const char *relname;
	int			natts;
	Oid			relid;
} IkTable;

static IkTable keys_table = {"keys", Natts_keys, InvalidOid};
static IkTable policies_table = {"policies", Natts_policies, InvalidOid};

/*
 * Whether idempotency.policies is known to have no rows, and a count of
 * its invalidations: the trigger idempotency.policies_changed() sends one
 * for every change, so that a committed change applies to the next claim.
 */
static bool policies_known = false;
static bool policies_empty;
static uint64 policies_invalidations = 0;

static void
forget_tables(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == keys_table.relid)
		keys_table.relid = InvalidOid;
	if (relid == InvalidOid || relid == policies_table.relid)
	{
		policies_table.relid = InvalidOid;
		policies_known = false;
		policies_invalidations++;
	}
}

void
ik_store_register_callbacks(void)
{
	CacheRegisterRelcacheCallback(forget_tables, (Datum) 0);
}

/*
 * Open one of the extension's tables, and check that it is the table this
 * file was written for.
 */
static Relation
open_table(IkTable *table, LOCKMODE lockmode)
{
	Oid			relid = table->relid;
	Relation	rel;

	if (OidIsValid(relid))
	{
		/*
		 * Taking the lock processes pending invalidations: if the table was
		 * dropped, forget_tables() has run by the time it returns.
		 */
		LockRelationOid(relid, lockmode);
		if (table->relid != relid)
		{
			UnlockRelationOid(relid, lockmode);
			relid = InvalidOid;
		}
	}
	if (!OidIsValid(relid))
	{
		relid = RangeVarGetRelid(makeRangeVar("idempotency",
											  (char *) table->relname, -1),
								 lockmode, false);
		table->relid = relid;
	}
	rel = table_open(relid, NoLock);

	if (RelationGetDescr(rel)->natts != table->natts ||
		rel->rd_rel->relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table idempotency.%s does not have the layout this library expects",
						table->relname),
				 errhint("Update the extension with ALTER EXTENSION idempotency UPDATE.")));
	return rel;
}

static Relation
open_keys(LOCKMODE lockmode)
{
	return open_table(&keys_table, lockmode);
}

/*
 * Find the row of a table by its primary key, whose columns' values are
 * given in attr (indexed by attribute number - 1; the key columns are
 * text), with a fresh snapshot (see ik_store_lookup), into slot.  The
 * caller pops the snapshot, ends the scan and closes the index once done
 * with the slot; probe_done() does that.
 */
typedef struct Probe
{
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
} Probe;

static bool
probe(Relation rel, text **attr, bool latest, Probe *p)
{
	Oid			pkey = RelationGetPrimaryKeyIndex_compat(rel);
	ScanKeyData skey[INDEX_MAX_KEYS];
	int			nkeys;

	if (!OidIsValid(pkey))
		elog(ERROR, "table \"%s\" has no primary key", RelationGetRelationName(rel));
	p->index = index_open(pkey, AccessShareLock);
	nkeys = IndexRelationGetNumberOfKeyAttributes(p->index);

	PushCopiedSnapshot(latest ? GetLatestSnapshot() : GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();

	for (int i = 0; i < nkeys; i++)
	{
		AttrNumber	attnum = p->index->rd_index->indkey.values[i];

		ScanKeyEntryInitialize(&skey[i], 0, i + 1, BTEqualStrategyNumber,
							   InvalidOid, p->index->rd_indcollation[i],
							   F_TEXTEQ, PointerGetDatum(attr[attnum - 1]));
	}

	p->slot = table_slot_create(rel, NULL);
	p->scan = index_beginscan_compat(rel, p->index, GetActiveSnapshot(),
									 nkeys, 0);
	index_rescan(p->scan, skey, nkeys, NULL, 0);
	if (!index_getnext_slot(p->scan, ForwardScanDirection, p->slot))
		return false;
	slot_getallattrs(p->slot);
	return true;
}

static void
probe_done(Probe *p)
{
	index_endscan(p->scan);
	ExecDropSingleTupleTableSlot(p->slot);
	PopActiveSnapshot();
	index_close(p->index, NoLock);
}

/* A nullable varlena column, detoasted and copied, or NULL for SQL NULL. */
static struct varlena *
copy_varlena(TupleTableSlot *slot, int attnum)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, attnum, &isnull);

	return isnull ? NULL : PG_DETOAST_DATUM_COPY(d);
}

/*
 * Look up (scope, key) through the primary key.  The snapshot is a fresh
 * one, as a new statement would take: under READ COMMITTED it sees
 * transactions committed up to now, and under REPEATABLE READ it is the
 * transaction's.  With latest, it is a fresh snapshot whatever the
 * isolation level: that is how a claim learns of a row committed after
 * its transaction's snapshot was taken.
 */
void
ik_store_lookup(text *scope, text *key, bool latest, IkRow *row)
{
	Relation	rel = open_keys(AccessShareLock);
	text	   *attr[Natts_keys] = {0};
	Probe		p;
	TupleTableSlot *slot;
	bool		isnull;

	attr[Anum_keys_scope - 1] = scope;
	attr[Anum_keys_key - 1] = key;
	memset(row, 0, sizeof(IkRow));
	row->found = probe(rel, attr, latest, &p);
	slot = p.slot;
	if (row->found)
	{
		row->xmin = DatumGetTransactionId(slot_getsysattr(slot,
														  MinTransactionIdAttributeNumber,
														  &isnull));
		row->fingerprint = (bytea *) copy_varlena(slot, Anum_keys_fingerprint);
		row->completed = (strcmp(TextDatumGetCString(slot_getattr(slot, Anum_keys_state,
																	&isnull)),
								 "completed") == 0);
		row->response.status = DatumGetInt32(slot_getattr(slot, Anum_keys_response_status,
														  &row->status_isnull));
		row->response.headers = (Jsonb *) copy_varlena(slot, Anum_keys_response_headers);
		row->response.body = (Jsonb *) copy_varlena(slot, Anum_keys_response_body);
		row->recovery_point = (text *) copy_varlena(slot, Anum_keys_recovery_point);
		if (!row->completed)
		{
			row->lease_token = *DatumGetUUIDP(slot_getattr(slot, Anum_keys_lease_token,
														   &isnull));
			row->lease_ms = ik_interval_ms(DatumGetIntervalP(slot_getattr(slot,
																		  Anum_keys_lease_duration,
																		  &isnull)));
			row->lease_expires_at = DatumGetTimestampTz(slot_getattr(slot,
																	 Anum_keys_lease_expires_at,
																	 &isnull));
		}
		row->created_at = DatumGetTimestampTz(slot_getattr(slot, Anum_keys_created_at,
														   &isnull));
		row->expires_at = DatumGetTimestampTz(slot_getattr(slot, Anum_keys_expires_at,
														   &isnull));
		row->retain_until = DatumGetTimestampTz(slot_getattr(slot, Anum_keys_retain_until,
															 &isnull));
	}
	probe_done(&p);
	table_close(rel, NoLock);
}

/* Does the table have a row that a fresh snapshot sees? */
static bool
has_rows(Relation rel)
{
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	TableScanDesc scan = table_beginscan(rel, snapshot, 0, NULL);
	bool		found = table_scan_getnextslot(scan, ForwardScanDirection,
											   slot);

	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snapshot);
	return found;
}

/*
 * Apply the policy row of a scope, if there is one, over *policy: each
 * column that is not NULL overrides.  While the table is known to be empty
 * it is not read at all; a committed change makes it unknown again (see
 * policies_known), so that the change applies to the next claim.
 */
bool
ik_store_policy(text *scope, IkPolicy *policy)
{
	Relation	rel;
	text	   *attr[Natts_policies] = {0};
	Probe		p;
	bool		found;
	bool		isnull;
	Datum		d;

	/* A change committed since this transaction's last look applies now. */
	AcceptInvalidationMessages();
	if (policies_known && policies_empty)
		return false;

	rel = open_table(&policies_table, AccessShareLock);
	if (!policies_known)
	{
		uint64		invalidations = policies_invalidations;

		policies_empty = !has_rows(rel);
		/* an invalidation while we looked: look again next time */
		policies_known = (invalidations == policies_invalidations);
		if (policies_empty)
		{
			table_close(rel, NoLock);
			return false;
		}
	}

	attr[Anum_policies_scope - 1] = scope;
	found = probe(rel, attr, false, &p);

	if (found)
	{
		d = slot_getattr(p.slot, Anum_policies_mode, &isnull);
		if (!isnull)
			policy->mode = ik_mode_from_name(TextDatumGetCString(d));
		d = slot_getattr(p.slot, Anum_policies_ttl, &isnull);
		if (!isnull)
			policy->ttl_ms = ik_interval_ms(DatumGetIntervalP(d));
		d = slot_getattr(p.slot, Anum_policies_retain, &isnull);
		if (!isnull)
			policy->retain_ms = ik_interval_ms(DatumGetIntervalP(d));
		d = slot_getattr(p.slot, Anum_policies_cache_5xx, &isnull);
		if (!isnull)
			policy->cache_5xx = DatumGetBool(d);
	}
	probe_done(&p);
	table_close(rel, NoLock);
	return found;
}

/*
 * Add the index entries of a new heap tuple, as CatalogIndexInsert() does
 * for catalogs.  The extension's indexes are on plain columns; one that a
 * DBA adds on an expression or with a predicate would need an executor
 * state to evaluate, and is refused rather than silently left stale.
 */
static void
insert_index_entries(Relation rel, TupleTableSlot *slot)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;

	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), RowExclusiveLock);
		IndexInfo  *info;
		Datum		values[INDEX_MAX_KEYS];
		bool		isnull[INDEX_MAX_KEYS];

		if (!index->rd_index->indisready)
		{
			index_close(index, RowExclusiveLock);
			continue;
		}
		info = BuildIndexInfo(index);
		if (info->ii_Expressions != NIL || info->ii_Predicate != NIL ||
			info->ii_ExclusionOps != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("index \"%s\" on idempotency.keys is not supported",
							RelationGetRelationName(index)),
					 errdetail("The extension maintains plain column indexes only.")));

		FormIndexDatum(info, slot, NULL, values, isnull);
		index_insert(index, values, isnull, &slot->tts_tid, rel,
					 index->rd_index->indisunique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
					 false, info);
		index_close(index, NoLock);
	}
	list_free(indexes);
}

static void
insert_row(Datum *values, bool *nulls)
{
	Relation	rel = open_keys(RowExclusiveLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);

	ExecClearTuple(slot);
	memcpy(slot->tts_values, values, sizeof(Datum) * Natts_keys);
	memcpy(slot->tts_isnull, nulls, sizeof(bool) * Natts_keys);
	ExecStoreVirtualTuple(slot);

	table_tuple_insert(rel, slot, GetCurrentCommandId(true), 0, NULL);
	insert_index_entries(rel, slot);

	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, NoLock);
}

/*
 * Run one of this file's SQL statements, preparing and keeping its plan on
 * first use.  Returns the number of rows it touched.
 */
static uint64
run_statement(SPIPlanPtr *plan, const char *sql, int nargs,
			  const Oid *argtypes, Datum *args, const char *nulls, int expect)
{
	int			rc;
	uint64		processed;

	SPI_connect();
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, (Oid *) argtypes);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "could not prepare idempotency statement: %s",
				 SPI_result_code_string(SPI_result));
		*plan = p;
	}
	rc = SPI_execute_plan(*plan, args, nulls, false, 0);
	if (rc != expect)
		elog(ERROR, "idempotency statement failed: %s",
			 SPI_result_code_string(rc));
	processed = SPI_processed;
	SPI_finish();
	return processed;
}

#define KEY_MATCHES \
	" WHERE scope OPERATOR(pg_catalog.=) $1 AND key OPERATOR(pg_catalog.=) $2 "
#define LEASE_MATCHES \
	KEY_MATCHES "AND state OPERATOR(pg_catalog.=) 'in_progress' " \
	"AND lease_token OPERATOR(pg_catalog.=) $3"

static Interval *
ms_interval(int64 ms)
{
	Interval   *iv = palloc0(sizeof(Interval));

	iv->time = ms * 1000;
	return iv;
}

/*
 * Run a statement whose parameters $1 to $14 are a whole row of
 * idempotency.keys, in column order, and $15 the time now.
 */
static uint64
run_with_row(SPIPlanPtr *plan, const char *sql, Datum *values, bool *nulls,
			 TimestampTz now, int expect)
{
	Datum		args[Natts_keys + 1];
	char		argnulls[Natts_keys + 1];
	Oid			argtypes[Natts_keys + 1];
	Relation	rel = open_keys(AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);

	for (int i = 0; i < Natts_keys; i++)
	{
		args[i] = values[i];
		argnulls[i] = nulls[i] ? 'n' : ' ';
		argtypes[i] = TupleDescAttr(desc, i)->atttypid;
	}
	table_close(rel, NoLock);
	args[Natts_keys] = TimestampTzGetDatum(now);
	argnulls[Natts_keys] = ' ';
	argtypes[Natts_keys] = TIMESTAMPTZOID;

	return run_statement(plan, sql, Natts_keys + 1, argtypes, args, argnulls,
						 expect);
}

#define SET_ALL_COLUMNS(src) \
	" SET fingerprint = " src "fingerprint, state = " src "state, " \
	"     response_status = " src "response_status, " \
	"     response_headers = " src "response_headers, " \
	"     response_body = " src "response_body, " \
	"     recovery_point = " src "recovery_point, " \
	"     lease_token = " src "lease_token, " \
	"     lease_duration = " src "lease_duration, " \
	"     lease_expires_at = " src "lease_expires_at, " \
	"     created_at = " src "created_at, expires_at = " src "expires_at, " \
	"     retain_until = " src "retain_until "

/* Overwrite a row past retention; false if the reaper deleted it first. */
static bool
replace_row(Datum *values, bool *nulls)
{
	static SPIPlanPtr plan = NULL;

	return run_with_row(&plan,
						"UPDATE idempotency.keys"
						" SET fingerprint = $3, state = $4, response_status = $5, "
						"     response_headers = $6, response_body = $7, "
						"     recovery_point = $8, lease_token = $9, "
						"     lease_duration = $10, lease_expires_at = $11, "
						"     created_at = $12, expires_at = $13, retain_until = $14"
						KEY_MATCHES
						"AND retain_until OPERATOR(pg_catalog.<=) $15",
						values, nulls, GetCurrentTransactionStartTimestamp(),
						SPI_OK_UPDATE) > 0;
}

static void
row_values(const IkWrite *w, Datum *values, bool *nulls)
{
	memset(nulls, true, sizeof(bool) * Natts_keys);
#define SET_COLUMN(attnum, datum) \
	(values[(attnum) - 1] = (datum), nulls[(attnum) - 1] = false)
	SET_COLUMN(Anum_keys_scope, PointerGetDatum(w->scope));
	SET_COLUMN(Anum_keys_key, PointerGetDatum(w->key));
	SET_COLUMN(Anum_keys_fingerprint, PointerGetDatum(w->fingerprint));
	SET_COLUMN(Anum_keys_created_at, TimestampTzGetDatum(w->created_at));
	SET_COLUMN(Anum_keys_expires_at, TimestampTzGetDatum(w->expires_at));
	SET_COLUMN(Anum_keys_retain_until, TimestampTzGetDatum(w->retain_until));
	if (w->completed)
	{
		SET_COLUMN(Anum_keys_state, CStringGetTextDatum("completed"));
		SET_COLUMN(Anum_keys_response_status, Int32GetDatum(w->response.status));
		if (w->response.headers != NULL)
			SET_COLUMN(Anum_keys_response_headers,
					   PointerGetDatum(w->response.headers));
		if (w->response.body != NULL)
			SET_COLUMN(Anum_keys_response_body, PointerGetDatum(w->response.body));
	}
	else
	{
		SET_COLUMN(Anum_keys_state, CStringGetTextDatum("in_progress"));
		SET_COLUMN(Anum_keys_lease_token, UUIDPGetDatum(&w->lease_token));
		SET_COLUMN(Anum_keys_lease_duration,
				   IntervalPGetDatum(ms_interval(w->lease_ms)));
		SET_COLUMN(Anum_keys_lease_expires_at,
				   TimestampTzGetDatum(w->lease_expires_at));
	}
#undef SET_COLUMN
}

/*
 * Write a completed response, or a durable claim in progress.  With
 * replace, the key still has a row past its retention that the reaper has
 * not yet deleted: overwrite it, or insert if the reaper got there first.
 * Afterwards the row is visible to the rest of the transaction, as after
 * any statement.
 */
void
ik_store_write(const IkWrite *w, bool replace)
{
	Datum		values[Natts_keys];
	bool		nulls[Natts_keys];

	row_values(w, values, nulls);
	if (!replace || !replace_row(values, nulls))
		insert_row(values, nulls);
	CommandCounterIncrement();
}

/*
 * Record a response in shadow mode, which must never fail a request: the
 * first response of a key is kept, one past retention is overwritten, and
 * a concurrent writer of the same key is not an error.
 */
void
ik_store_record(const IkWrite *w, TimestampTz now)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[Natts_keys];
	bool		nulls[Natts_keys];

	row_values(w, values, nulls);
	(void) run_with_row(&plan,
						"INSERT INTO idempotency.keys AS k "
						"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) "
						"ON CONFLICT (scope, key) DO UPDATE" SET_ALL_COLUMNS("excluded.")
						"WHERE k.retain_until OPERATOR(pg_catalog.<=) $15",
						values, nulls, now, SPI_OK_INSERT);
	CommandCounterIncrement();
}

/* Hand a lapsed durable claim to a new holder; false if it moved on. */
bool
ik_store_resume(text *scope, text *key, const pg_uuid_t *old_token,
				const pg_uuid_t *new_token, int64 lease_ms,
				TimestampTz lease_expires_at)
{
	static SPIPlanPtr plan = NULL;
	static const Oid argtypes[] = {
		TEXTOID, TEXTOID, UUIDOID, UUIDOID, INTERVALOID, TIMESTAMPTZOID
	};
	Datum		args[] = {
		PointerGetDatum(scope), PointerGetDatum(key),
		UUIDPGetDatum(old_token), UUIDPGetDatum(new_token),
		IntervalPGetDatum(ms_interval(lease_ms)),
		TimestampTzGetDatum(lease_expires_at)
	};

	return run_statement(&plan,
						 "UPDATE idempotency.keys "
						 "   SET lease_token = $4, lease_duration = $5, "
						 "       lease_expires_at = $6"
						 LEASE_MATCHES,
						 lengthof(argtypes), argtypes, args, NULL,
						 SPI_OK_UPDATE) > 0;
}

/* Record progress and renew the lease; false unless the token holds it. */
bool
ik_store_checkpoint(text *scope, text *key, const pg_uuid_t *token,
					text *recovery_point, TimestampTz now)
{
	static SPIPlanPtr plan = NULL;
	static const Oid argtypes[] = {
		TEXTOID, TEXTOID, UUIDOID, TEXTOID, TIMESTAMPTZOID
	};
	Datum		args[] = {
		PointerGetDatum(scope), PointerGetDatum(key), UUIDPGetDatum(token),
		PointerGetDatum(recovery_point), TimestampTzGetDatum(now)
	};

	return run_statement(&plan,
						 "UPDATE idempotency.keys "
						 "   SET recovery_point = $4, "
						 "       lease_expires_at = $5 OPERATOR(pg_catalog.+) lease_duration"
						 LEASE_MATCHES,
						 lengthof(argtypes), argtypes, args, NULL,
						 SPI_OK_UPDATE) > 0;
}

/* Store the response of a durable claim; false unless the token holds it. */
bool
ik_store_finish(text *scope, text *key, const pg_uuid_t *token,
				const IkResponse *response)
{
	static SPIPlanPtr plan = NULL;
	static const Oid argtypes[] = {
		TEXTOID, TEXTOID, UUIDOID, INT4OID, JSONBOID, JSONBOID
	};
	Datum		args[] = {
		PointerGetDatum(scope), PointerGetDatum(key), UUIDPGetDatum(token),
		Int32GetDatum(response->status), PointerGetDatum(response->headers),
		PointerGetDatum(response->body)
	};
	char		nulls[] = {
		' ', ' ', ' ', ' ', response->headers ? ' ' : 'n',
		response->body ? ' ' : 'n'
	};

	return run_statement(&plan,
						 "UPDATE idempotency.keys "
						 "   SET state = 'completed', response_status = $4, "
						 "       response_headers = $5, response_body = $6, "
						 "       lease_token = NULL, lease_duration = NULL, "
						 "       lease_expires_at = NULL"
						 LEASE_MATCHES,
						 lengthof(argtypes), argtypes, args, nulls,
						 SPI_OK_UPDATE) > 0;
}

/* Delete a durable claim; false unless the token holds it. */
bool
ik_store_forget(text *scope, text *key, const pg_uuid_t *token)
{
	static SPIPlanPtr plan = NULL;
	static const Oid argtypes[] = {TEXTOID, TEXTOID, UUIDOID};
	Datum		args[] = {
		PointerGetDatum(scope), PointerGetDatum(key), UUIDPGetDatum(token)
	};

	return run_statement(&plan,
						 "DELETE FROM idempotency.keys" LEASE_MATCHES,
						 lengthof(argtypes), argtypes, args, NULL,
						 SPI_OK_DELETE) > 0;
}

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
 * The rare overwrite of a row past retention goes through SPI, which deals
 * with a concurrent reaper for us.  Its query schema-qualifies every name
 * and operator, so no search_path of a caller can redirect it.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

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
#include "utils/builtins.h"
#include "utils/fmgroids.h"
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
	Anum_keys_lease_expires_at,
	Anum_keys_created_at,
	Anum_keys_expires_at,
	Anum_keys_retain_until,
	Natts_keys = Anum_keys_retain_until
};

static SPIPlanPtr replace_plan = NULL;

static const char *const replace_sql =
"UPDATE idempotency.keys "
"   SET fingerprint = $3, state = 'completed', response_status = $4, "
"       response_headers = $5, response_body = $6, recovery_point = NULL, "
"       lease_token = NULL, lease_expires_at = NULL, "
"       created_at = $7, expires_at = $8, retain_until = $9 "
" WHERE scope OPERATOR(pg_catalog.=) $1 AND key OPERATOR(pg_catalog.=) $2";

/*
 * Open idempotency.keys by name, so that a dropped and re-created
 * extension is found again, and check that it is the table this file
 * was written for.
 */
static Relation
open_keys(LOCKMODE lockmode)
{
	Oid			relid = RangeVarGetRelid(makeRangeVar("idempotency", "keys", -1),
										 lockmode, false);
	Relation	rel = table_open(relid, NoLock);

	if (RelationGetDescr(rel)->natts != Natts_keys ||
		rel->rd_rel->relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table idempotency.keys does not have the layout this library expects"),
				 errhint("Update the extension with ALTER EXTENSION idempotency UPDATE.")));
	return rel;
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
	Oid			pkey = RelationGetPrimaryKeyIndex(rel);
	Relation	index;
	ScanKeyData skey[2];
	IndexScanDesc scan;
	TupleTableSlot *slot;
	bool		isnull;

	if (!OidIsValid(pkey))
		elog(ERROR, "table idempotency.keys has no primary key");
	index = index_open(pkey, AccessShareLock);

	PushCopiedSnapshot(latest ? GetLatestSnapshot() : GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();

	ScanKeyEntryInitialize(&skey[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_TEXTEQ,
						   PointerGetDatum(scope));
	ScanKeyEntryInitialize(&skey[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[1], F_TEXTEQ,
						   PointerGetDatum(key));

	slot = table_slot_create(rel, NULL);
	scan = index_beginscan(rel, index, GetActiveSnapshot(), 2, 0);
	index_rescan(scan, skey, 2, NULL, 0);

	memset(row, 0, sizeof(IkRow));
	row->found = index_getnext_slot(scan, ForwardScanDirection, slot);
	if (row->found)
	{
		slot_getallattrs(slot);
		row->xmin = DatumGetTransactionId(slot_getsysattr(slot,
														  MinTransactionIdAttributeNumber,
														  &isnull));
		row->fingerprint = (bytea *) copy_varlena(slot, Anum_keys_fingerprint);
		row->completed = (strcmp(TextDatumGetCString(slot_getattr(slot, Anum_keys_state,
																	&isnull)),
								 "completed") == 0);
		row->response_status = DatumGetInt32(slot_getattr(slot, Anum_keys_response_status,
														  &row->status_isnull));
		row->response_headers = (Jsonb *) copy_varlena(slot, Anum_keys_response_headers);
		row->response_body = (Jsonb *) copy_varlena(slot, Anum_keys_response_body);
		row->recovery_point = (text *) copy_varlena(slot, Anum_keys_recovery_point);
		row->created_at = DatumGetTimestampTz(slot_getattr(slot, Anum_keys_created_at,
														   &isnull));
		row->expires_at = DatumGetTimestampTz(slot_getattr(slot, Anum_keys_expires_at,
														   &isnull));
		row->retain_until = DatumGetTimestampTz(slot_getattr(slot, Anum_keys_retain_until,
															 &isnull));
	}

	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	PopActiveSnapshot();
	index_close(index, NoLock);
	table_close(rel, NoLock);
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

/* Overwrite a row past retention; false if the reaper deleted it first. */
static bool
replace_row(Datum *values, bool *nulls)
{
	static const Oid argtypes[] = {
		TEXTOID, TEXTOID, BYTEAOID, INT4OID, JSONBOID, JSONBOID,
		TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID
	};
	static const int columns[] = {
		Anum_keys_scope, Anum_keys_key, Anum_keys_fingerprint,
		Anum_keys_response_status, Anum_keys_response_headers,
		Anum_keys_response_body, Anum_keys_created_at, Anum_keys_expires_at,
		Anum_keys_retain_until
	};
	Datum		args[lengthof(columns)];
	char		argnulls[lengthof(columns)];
	int			rc;
	bool		replaced;

	for (size_t i = 0; i < lengthof(columns); i++)
	{
		args[i] = values[columns[i] - 1];
		argnulls[i] = nulls[columns[i] - 1] ? 'n' : ' ';
	}

	SPI_connect();
	if (replace_plan == NULL)
	{
		replace_plan = SPI_prepare(replace_sql, lengthof(argtypes),
								   (Oid *) argtypes);
		if (replace_plan == NULL || SPI_keepplan(replace_plan) != 0)
			elog(ERROR, "could not prepare idempotency key update: %s",
				 SPI_result_code_string(SPI_result));
	}
	rc = SPI_execute_plan(replace_plan, args, argnulls, false, 0);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "idempotency key update failed: %s",
			 SPI_result_code_string(rc));
	replaced = (SPI_processed > 0);
	SPI_finish();
	return replaced;
}

/*
 * Store a completed response.  With replace, the key still has a row past
 * its retention that the reaper has not yet deleted: overwrite it, or
 * insert if the reaper got there first.  Afterwards the row is visible to
 * the rest of the transaction, as after any statement.
 */
void
ik_store_save(text *scope, text *key, bytea *fingerprint,
			  TimestampTz created_at, TimestampTz expires_at,
			  TimestampTz retain_until, bool replace,
			  const IkResponse *response)
{
	Datum		values[Natts_keys];
	bool		nulls[Natts_keys];

	memset(nulls, true, sizeof(nulls));
#define SET_COLUMN(attnum, datum) \
	(values[(attnum) - 1] = (datum), nulls[(attnum) - 1] = false)
	SET_COLUMN(Anum_keys_scope, PointerGetDatum(scope));
	SET_COLUMN(Anum_keys_key, PointerGetDatum(key));
	SET_COLUMN(Anum_keys_fingerprint, PointerGetDatum(fingerprint));
	SET_COLUMN(Anum_keys_state, CStringGetTextDatum("completed"));
	SET_COLUMN(Anum_keys_response_status, Int32GetDatum(response->status));
	if (response->headers != NULL)
		SET_COLUMN(Anum_keys_response_headers, PointerGetDatum(response->headers));
	if (response->body != NULL)
		SET_COLUMN(Anum_keys_response_body, PointerGetDatum(response->body));
	SET_COLUMN(Anum_keys_created_at, TimestampTzGetDatum(created_at));
	SET_COLUMN(Anum_keys_expires_at, TimestampTzGetDatum(expires_at));
	SET_COLUMN(Anum_keys_retain_until, TimestampTzGetDatum(retain_until));
#undef SET_COLUMN

	if (!replace || !replace_row(values, nulls))
		insert_row(values, nulls);
	CommandCounterIncrement();
}

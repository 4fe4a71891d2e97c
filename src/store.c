/*-------------------------------------------------------------------------
 *
 * store.c
 *	  Reading and writing rows of idempotency.keys.
 *
 * All access goes through SPI plans prepared once per backend and kept
 * for its life; the plan cache re-plans them if the table is recreated.
 * Every name in them is schema-qualified, operators included, so no
 * search_path or shadowing object of a caller can change what they do.
 * Callers must be inside SPI_connect(); results are copied to the upper
 * executor context so they outlive SPI_finish().
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

static SPIPlanPtr lookup_plan = NULL;
static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr replace_plan = NULL;

static const char *const lookup_sql =
"SELECT xmin, fingerprint, state OPERATOR(pg_catalog.=) 'completed', "
"       response_status, response_headers, response_body, recovery_point, "
"       created_at, expires_at, retain_until "
"  FROM idempotency.keys "
" WHERE scope OPERATOR(pg_catalog.=) $1 AND key OPERATOR(pg_catalog.=) $2";

static const char *const insert_sql =
"INSERT INTO idempotency.keys "
"       (scope, key, fingerprint, state, response_status, response_headers, "
"        response_body, created_at, expires_at, retain_until) "
"VALUES ($1, $2, $3, 'completed', $4, $5, $6, $7, $8, $9)";

static const char *const replace_sql =
"UPDATE idempotency.keys "
"   SET fingerprint = $3, state = 'completed', response_status = $4, "
"       response_headers = $5, response_body = $6, recovery_point = NULL, "
"       lease_token = NULL, lease_expires_at = NULL, "
"       created_at = $7, expires_at = $8, retain_until = $9 "
" WHERE scope OPERATOR(pg_catalog.=) $1 AND key OPERATOR(pg_catalog.=) $2";

static const Oid save_argtypes[] = {
	TEXTOID, TEXTOID, BYTEAOID, INT4OID, JSONBOID, JSONBOID,
	TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID
};

static SPIPlanPtr
prepare_kept(const char *sql, int nargs, const Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, (Oid *) argtypes);

	if (plan == NULL)
		elog(ERROR, "could not prepare idempotency query: %s",
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep idempotency query plan");
	return plan;
}

/* Column of the single lookup result, copied out of SPI's memory. */
static Datum
result_datum(int col, bool *isnull)
{
	Form_pg_attribute att = TupleDescAttr(SPI_tuptable->tupdesc, col - 1);
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0],
								  SPI_tuptable->tupdesc, col, isnull);

	if (*isnull || att->attbyval)
		return d;
	return SPI_datumTransfer(d, false, att->attlen);
}

/* A nullable varlena column, detoasted, or NULL for SQL NULL. */
static struct varlena *
result_varlena(int col)
{
	bool		isnull;
	Datum		d = result_datum(col, &isnull);

	return isnull ? NULL : PG_DETOAST_DATUM(d);
}

/*
 * Look up (scope, key).  With latest, read with a fresh snapshot instead
 * of the transaction's: under REPEATABLE READ that is how a claim learns
 * of a row committed after its snapshot was taken.
 */
void
ik_store_lookup(text *scope, text *key, bool latest, IkRow *row)
{
	static const Oid argtypes[] = {TEXTOID, TEXTOID};
	Datum		values[2];
	bool		isnull;
	int			rc;

	if (lookup_plan == NULL)
		lookup_plan = prepare_kept(lookup_sql, 2, argtypes);

	values[0] = PointerGetDatum(scope);
	values[1] = PointerGetDatum(key);
	if (latest)
		rc = SPI_execute_snapshot(lookup_plan, values, NULL,
								  GetLatestSnapshot(), InvalidSnapshot,
								  false, false, 1);
	else
		rc = SPI_execute_plan(lookup_plan, values, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "idempotency key lookup failed: %s",
			 SPI_result_code_string(rc));

	memset(row, 0, sizeof(IkRow));
	row->found = (SPI_processed > 0);
	if (!row->found)
		return;

	row->xmin = DatumGetTransactionId(result_datum(1, &isnull));
	row->fingerprint = DatumGetByteaPP(result_datum(2, &isnull));
	row->completed = DatumGetBool(result_datum(3, &isnull));
	row->response_status = DatumGetInt32(result_datum(4, &row->status_isnull));
	row->response_headers = (Jsonb *) result_varlena(5);
	row->response_body = (Jsonb *) result_varlena(6);
	row->recovery_point = (text *) result_varlena(7);
	row->created_at = DatumGetTimestampTz(result_datum(8, &isnull));
	row->expires_at = DatumGetTimestampTz(result_datum(9, &isnull));
	row->retain_until = DatumGetTimestampTz(result_datum(10, &isnull));
}

/*
 * Store a completed response.  With replace, the key still has a row past
 * its retention that the reaper has not yet deleted: overwrite it, or
 * insert if the reaper got there first.
 */
void
ik_store_save(text *scope, text *key, bytea *fingerprint,
			  TimestampTz created_at, TimestampTz expires_at,
			  TimestampTz retain_until, bool replace,
			  const IkResponse *response)
{
	Datum		values[9];
	char		nulls[9];
	int			rc;

	memset(nulls, ' ', sizeof(nulls));
	values[0] = PointerGetDatum(scope);
	values[1] = PointerGetDatum(key);
	values[2] = PointerGetDatum(fingerprint);
	values[3] = Int32GetDatum(response->status);
	values[4] = PointerGetDatum(response->headers);
	if (response->headers == NULL)
		nulls[4] = 'n';
	values[5] = PointerGetDatum(response->body);
	if (response->body == NULL)
		nulls[5] = 'n';
	values[6] = TimestampTzGetDatum(created_at);
	values[7] = TimestampTzGetDatum(expires_at);
	values[8] = TimestampTzGetDatum(retain_until);

	if (replace)
	{
		if (replace_plan == NULL)
			replace_plan = prepare_kept(replace_sql, 9, save_argtypes);
		rc = SPI_execute_plan(replace_plan, values, nulls, false, 0);
		if (rc != SPI_OK_UPDATE)
			elog(ERROR, "idempotency key update failed: %s",
				 SPI_result_code_string(rc));
		if (SPI_processed > 0)
			return;
	}

	if (insert_plan == NULL)
		insert_plan = prepare_kept(insert_sql, 9, save_argtypes);
	rc = SPI_execute_plan(insert_plan, values, nulls, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "idempotency key insert failed: %s",
			 SPI_result_code_string(rc));
}

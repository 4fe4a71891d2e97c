/*-------------------------------------------------------------------------
 *
 * reap.c
 *	  Deleting keys past their retention: reap(), and the batch the
 *	  background reaper runs.
 *
 * A batch deletes the oldest rows past retention, at most a given number,
 * and skips rows that another transaction has locked: a claim overwriting
 * an expired key, or a durable claim being checkpointed, is never made to
 * wait for the reaper, and waits at most one batch when it is the one that
 * comes second.  A durable claim deleted here was never finished: each is
 * reported as abandoned (lease.c), since it is a payment to reconcile.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(idempotency_reap);

/*
 * Delete up to limit rows whose retention ended by now, in the caller's
 * transaction.  Returns the number deleted.
 */
int64
ik_reap_batch(int limit, TimestampTz now)
{
	static SPIPlanPtr plan = NULL;
	static const Oid argtypes[] = {TIMESTAMPTZOID, INT4OID};
	Datum		args[2];
	int			rc;
	int64		deleted;

	args[0] = TimestampTzGetDatum(now);
	args[1] = Int32GetDatum(limit);

	SPI_connect();
	if (plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare("DELETE FROM idempotency.keys "
									" WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY("
									"       SELECT ctid FROM idempotency.keys "
									"        WHERE retain_until OPERATOR(pg_catalog.<=) $1 "
									"        ORDER BY retain_until LIMIT $2 "
									"          FOR UPDATE SKIP LOCKED)) "
									"RETURNING state OPERATOR(pg_catalog.=) 'completed', "
									"          scope, key, recovery_point",
									lengthof(argtypes), (Oid *) argtypes);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "could not prepare idempotency reap: %s",
				 SPI_result_code_string(SPI_result));
		plan = p;
	}

	rc = SPI_execute_plan(plan, args, NULL, false, 0);
	if (rc != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "idempotency reap failed: %s", SPI_result_code_string(rc));
	deleted = (int64) SPI_processed;

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		recovery_point;

		if (DatumGetBool(SPI_getbinval(tuple, desc, 1, &isnull)))
			continue;
		recovery_point = SPI_getbinval(tuple, desc, 4, &isnull);
		ik_report_abandoned(DatumGetTextPP(SPI_getbinval(tuple, desc, 2, &isnull)),
							DatumGetTextPP(SPI_getbinval(tuple, desc, 3, &isnull)),
							isnull ? NULL : DatumGetTextPP(recovery_point));
	}
	SPI_finish();
	return deleted;
}

/*
 * reap(max_rows int DEFAULT 10000) RETURNS bigint
 *
 * Deletes up to max_rows rows past retention in batches of
 * idempotency.reaper_batch_size, in the caller's transaction, and returns
 * how many it deleted.  For clusters that schedule it (pg_cron) instead of
 * preloading the library for the background reaper.
 */
static Datum
reap(FunctionCallInfo fcinfo)
{
	int32		max_rows;
	int64		total = 0;
	TimestampTz now = GetCurrentTransactionStartTimestamp();

	ik_require_writable("idempotency.reap()");

	ik_check_argument_not_null(fcinfo, 0, "max_rows");
	max_rows = PG_GETARG_INT32(0);
	if (max_rows < 1)
		ereport(ERROR,
				(errcode(ERRCODE_IK_INVALID_ARGUMENT),
				 errmsg("argument \"max_rows\" must be positive"),
				 errdetail("It is %d.", max_rows)));

	while (total < max_rows)
	{
		int			limit = (int) Min(ik_reaper_batch_size, max_rows - total);
		int64		deleted = ik_reap_batch(limit, now);

		total += deleted;
		if (deleted < limit)
			break;
		CHECK_FOR_INTERRUPTS();
	}
	ik_count_reap(total);
	PG_RETURN_INT64(total);
}

Datum
idempotency_reap(PG_FUNCTION_ARGS)
{
	return ik_counted_call(reap, fcinfo, false);
}

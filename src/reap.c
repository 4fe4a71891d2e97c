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
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(idempotency_reap);

/*
 * Delete up to limit rows whose retention ended by now, from *cursor on
 * (store.c), in the caller's transaction.  Returns the number of rows the
 * scan found, which is less than limit once none is left; *deleted is
 * how many of them were deleted.
 */
int
ik_reap_batch(int limit, TimestampTz now, TimestampTz *cursor, int64 *deleted)
{
	IkReapCandidate *candidates = palloc(sizeof(IkReapCandidate) * limit);
	bool	   *gone;
	int			n = ik_store_reap_scan(now, cursor, limit, candidates);

	gone = palloc0(sizeof(bool) * Max(n, 1));
	*deleted = ik_store_reap_delete(candidates, n, gone);
	for (int i = 0; i < n; i++)
	{
		if (gone[i] && !candidates[i].completed)
			ik_report_abandoned(candidates[i].scope, candidates[i].key,
								candidates[i].recovery_point);
	}
	pfree(candidates);
	pfree(gone);
	return n;
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
	int64		scanned = 0;
	TimestampTz cursor = DT_NOBEGIN;
	TimestampTz now = GetCurrentTransactionStartTimestamp();

	ik_require_writable("idempotency.reap()");

	ik_check_argument_not_null(fcinfo, 0, "max_rows");
	max_rows = PG_GETARG_INT32(0);
	if (max_rows < 1)
		ereport(ERROR,
				(errcode(ERRCODE_IK_INVALID_ARGUMENT),
				 errmsg("argument \"max_rows\" must be positive"),
				 errdetail("It is %d.", max_rows)));

	while (scanned < max_rows)
	{
		int			limit = (int) Min(ik_reaper_batch_size, max_rows - scanned);
		int64		deleted;
		int			found = ik_reap_batch(limit, now, &cursor, &deleted);

		scanned += found;
		total += deleted;
		if (found < limit)
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

/*-------------------------------------------------------------------------
 *
 * reap.c
 *	  Deleting keys past their retention: a run of the background reaper,
 *	  and reap().
 *
 * A batch finds, in order of retain_until, up to idempotency.
 * reaper_batch_size rows past retention that no live lease holds, and
 * deletes them in one pass (store.c), skipping any that another
 * transaction is changing: a claim is never made to wait for the reaper,
 * and waits at most one batch when it comes second.  The next batch starts
 * where the last one stopped, so that with an old snapshot holding back
 * the horizon a batch does not walk again the index entries of the rows
 * already deleted.
 *
 * A row that cannot be deleted (a foreign key references it, a trigger
 * refuses) must not stop the rest.  A batch runs in a subtransaction; when
 * it fails, its halves are tried, and theirs, down to the row at fault,
 * which is logged with the reason, counted, and skipped for
 * IK_REAPER_SKIP_RETRY_MS (the list is kept in shared memory by
 * reap_skips.c).  Each subtransaction that succeeds keeps its XID in the
 * backend's cache until commit, and more than 64 overflow it and slow
 * every backend, so a transaction stops bisecting after
 * SUBXACT_BUDGET of them and leaves the rest to the next.  A deferred
 * constraint fails only at commit, losing the whole batch: the reaper
 * then deletes its rows one per transaction, to find the ones at fault.
 *
 * An abandoned durable claim is recorded in idempotency.abandoned_claims
 * in the subtransaction that deletes its row; counters and the log line
 * of it are queued until the deleting transaction commits (oncommit.c).
 * The background run is throttled to idempotency.reaper_rows_per_second,
 * so that claims keep their latency while a backlog is reaped; a batch is
 * then at most a quarter second's worth of rows.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"
#include "citus.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(idempotency_reap);

/* Released subtransactions one transaction may keep (the cache holds 64). */
#define SUBXACT_BUDGET			48

/* How long a row that could not be deleted is skipped. */
#define IK_REAPER_SKIP_RETRY_MS (3600 * 1000L)

/* One reaping pass, in one transaction or over several. */
typedef struct Reap
{
	TimestampTz now;			/* retention is judged against it */
	TimestampTz cursor;			/* the next batch starts at this retain_until */
	int			budget;			/* released subtransactions left */
	IkReapSkip *skipped;		/* rows to skip, sorted by keyhash */
	int			nskipped;
	int			maxskipped;
} Reap;

static int
compare_skip(const void *a, const void *b)
{
	uint64		x = ((const IkReapSkip *) a)->keyhash;
	uint64		y = ((const IkReapSkip *) b)->keyhash;

	return x < y ? -1 : x > y ? 1 : 0;
}

/* Start a pass; its memory is allocated in context. */
static void
reap_begin(Reap *r, TimestampTz now, MemoryContext context)
{
	r->now = now;
	r->cursor = DT_NOBEGIN;
	r->budget = SUBXACT_BUDGET;
	r->maxskipped = IK_REAPER_SKIP_SLOTS + 64;
	r->skipped = MemoryContextAlloc(context,
									sizeof(IkReapSkip) * r->maxskipped);
	r->nskipped = ik_reap_skipped_rows(r->skipped, GetCurrentTimestamp());
	qsort(r->skipped, r->nskipped, sizeof(IkReapSkip), compare_skip);
}

/* Is this candidate a row skipped earlier? */
static bool
is_skipped(void *arg, uint64 keyhash, TimestampTz retain_until)
{
	Reap	   *r = (Reap *) arg;
	IkReapSkip	key = {.keyhash = keyhash};
	IkReapSkip *found = bsearch(&key, r->skipped, r->nskipped,
								sizeof(IkReapSkip), compare_skip);

	/* equal keyhashes sit side by side: look at each */
	if (found == NULL)
		return false;
	while (found > r->skipped && found[-1].keyhash == keyhash)
		found--;
	for (; found < r->skipped + r->nskipped && found->keyhash == keyhash; found++)
	{
		if (found->retain_until == retain_until)
			return true;
	}
	return false;
}

/*
 * A row could not be deleted: say why, once per retry interval, count it
 * (now: the row stays whatever happens to this transaction), and skip it
 * for the rest of this pass and, through shared memory, later runs.
 */
static void
skip_row(Reap *r, const IkReapCandidate *c, const ErrorData *edata)
{
	IkReapSkip	skip = {
		.keyhash = c->keyhash,
		.retain_until = c->retain_until,
		.retry_at = ik_time_plus_ms(GetCurrentTimestamp(), IK_REAPER_SKIP_RETRY_MS)
	};

	ereport(LOG,
			(errmsg("idempotency reaper: cannot delete key \"%s\" of scope \"%s\", past its retention",
					text_to_cstring(c->key), text_to_cstring(c->scope)),
			 edata->detail ? errdetail("%s: %s", edata->message, edata->detail) :
			 errdetail("%s", edata->message),
			 errhint("The row is skipped for an hour; the other rows are reaped.")));
	ik_count(IK_REAPER_SKIPPED_ROWS, 1);
	ik_reap_skip_row(&skip);
	if (r->nskipped < r->maxskipped)
	{
		r->skipped[r->nskipped++] = skip;
		qsort(r->skipped, r->nskipped, sizeof(IkReapSkip), compare_skip);
	}
}

/*
 * Record the abandoned durable claims among the deleted candidates, in the
 * deleting (sub)transaction: the record commits with the deletion, or
 * neither does.
 */
static void
record_reaped(const IkReapCandidate *c, int n, const bool *deleted)
{
	for (int i = 0; i < n; i++)
	{
		IkAbandoned a;

		if (!deleted[i] || c[i].completed)
			continue;
		a.scope = c[i].scope;
		a.key = c[i].key;
		a.recovery_point = c[i].recovery_point;
		a.lease_token = c[i].lease_token;
		a.first_seen = c[i].created_at;
		a.lease_expires_at = c[i].lease_expires_at;
		a.how = "reaped";
		if (!ik_store_record_abandoned(&a))
			return;				/* a catalog before 0.3.0 */
	}
}

/*
 * Delete candidates c[0..n) in a subtransaction, recording the abandoned
 * claims among them.  Returns NULL on success, with the deleted ones
 * marked, or the error, with nothing deleted or recorded.
 */
static ErrorData *
delete_in_subxact(IkReapCandidate *c, int n, bool *deleted, int *count)
{
	MemoryContext context = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(context);
	PG_TRY();
	{
		*count = ik_store_reap_delete(c, n, deleted);
		record_reaped(c, n, deleted);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		memset(deleted, 0, sizeof(bool) * n);
		*count = 0;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(context);
	CurrentResourceOwner = owner;
	return edata;
}

/*
 * Delete c[0..n), bisecting around failures; *done says how many of them
 * were dealt with (deleted, skipped, or left to another transaction by
 * someone else's lock), the rest being left once the budget is spent.
 * Returns the number deleted.
 */
static int
delete_contained(Reap *r, IkReapCandidate *c, int n, bool *deleted, int *done)
{
	ErrorData  *edata;
	int			count;
	int			left_done;
	int			total;

	*done = 0;
	if (r->budget <= 0)
		return 0;
	edata = delete_in_subxact(c, n, deleted, &count);
	if (edata == NULL)
	{
		r->budget--;
		*done = n;
		return count;
	}
	if (n == 1)
	{
		skip_row(r, c, edata);
		FreeErrorData(edata);
		*done = 1;
		return 0;
	}
	FreeErrorData(edata);
	total = delete_contained(r, c, n / 2, deleted, &left_done);
	*done = left_done;
	if (left_done < n / 2)
		return total;
	total += delete_contained(r, c + n / 2, n - n / 2, deleted + n / 2, &left_done);
	*done += left_done;
	return total;
}

/*
 * One batch in the current transaction: up to limit rows from the cursor
 * on.  Returns whether there may be more; *count is the number deleted.
 * Deleted candidates are marked in deleted (candidates and deleted have
 * room for limit).
 */
static bool
reap_batch(Reap *r, int limit, IkReapCandidate *candidates, bool *deleted,
		   int *found, int *count)
{
	int			done;

	*found = ik_store_reap_scan(r->now, &r->cursor, limit, candidates,
								is_skipped, r);
	*count = delete_contained(r, candidates, *found, deleted, &done);
	for (int i = 0; i < done; i++)
	{
		if (deleted[i] && !candidates[i].completed)
			ik_report_abandoned(candidates[i].scope, candidates[i].key,
								candidates[i].recovery_point);
	}
	if (*count > 0)
		ik_count_on_commit(IK_REAPED_ROWS, *count);
	if (done < *found)
	{
		/* the budget ran out: the next batch starts at what is left */
		r->cursor = candidates[done].retain_until;
		return true;
	}
	return *found == limit;
}

/*
 * reap(max_rows int DEFAULT 10000) RETURNS bigint
 *
 * Deletes up to max_rows rows past retention in batches of
 * idempotency.reaper_batch_size, in the caller's transaction, and returns
 * how many it deleted.  For clusters that schedule it (pg_cron) instead of
 * preloading the library for the background reaper.  A deferred
 * constraint that a deleted row breaks fails at the caller's commit.
 */
static Datum
reap(FunctionCallInfo fcinfo)
{
	int32		max_rows;
	int64		total = 0;
	int64		scanned = 0;
	Reap		r;
	int			limit = ik_reaper_batch_size;
	IkReapCandidate *candidates;
	bool	   *deleted;

	ik_require_writable("idempotency.reap()");

	ik_check_argument_not_null(fcinfo, 0, "max_rows");
	max_rows = PG_GETARG_INT32(0);
	if (max_rows < 1)
		ereport(ERROR,
				(errcode(ERRCODE_IK_INVALID_ARGUMENT),
				 errmsg("argument \"max_rows\" must be positive"),
				 errdetail("It is %d.", max_rows)));

	candidates = palloc(sizeof(IkReapCandidate) * limit);
	deleted = palloc(sizeof(bool) * limit);
	reap_begin(&r, GetCurrentTransactionStartTimestamp(), CurrentMemoryContext);
	for (;;)
	{
		int			batch = (int) Min(limit, max_rows - scanned);
		int			found;
		int			count;
		bool		more = reap_batch(&r, batch, candidates, deleted,
									  &found, &count);

		scanned += found;
		total += count;
		if (!more || scanned >= max_rows || r.budget <= 0)
			break;
		CHECK_FOR_INTERRUPTS();
	}
	ik_count_on_commit(IK_REAPER_RUNS, 1);

	/* under Citus, the coordinator's reap() reaps every worker's shards */
	{
		int64		workers = ik_citus_reap_workers(ik_keys_table.relid, max_rows);

		if (workers > 0)
			total += workers;
	}
	PG_RETURN_INT64(total);
}

Datum
idempotency_reap(PG_FUNCTION_ARGS)
{
	return ik_counted_call(reap, fcinfo, false);
}

/*
 * Commit the current transaction; on failure (a deferred constraint),
 * report nothing and return false, with the transaction aborted.
 */
static bool
try_commit(void)
{
	MemoryContext context = CurrentMemoryContext;
	volatile bool ok = true;

	PG_TRY();
	{
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(context);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

static void
begin_transaction(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
}

static void
end_transaction_snapshot(void)
{
	PopActiveSnapshot();
}

/*
 * A batch's commit failed: delete its rows one per transaction, each
 * looked up again first (the batch's TIDs are no longer safe to use), so
 * that the rows at fault are found and skipped.
 */
static void
reap_one_by_one(Reap *r, IkReapCandidate *candidates, int n)
{
	for (int i = 0; i < n; i++)
	{
		IkReapCandidate c = candidates[i];
		IkRow		row;
		bool		deleted = false;

		begin_transaction();
		ik_store_lookup(c.scope, c.key, true, &row);
		if (row.found && row.retain_until == c.retain_until &&
			row.retain_until <= r->now &&
			(row.completed || row.lease_expires_at <= GetCurrentTimestamp()))
		{
			c.tid = row.tid;
			c.completed = row.completed;
			c.recovery_point = row.recovery_point;
			c.lease_token = row.lease_token;
			c.created_at = row.created_at;
			c.lease_expires_at = row.lease_expires_at;
			if (ik_store_reap_delete(&c, 1, &deleted) > 0)
			{
				record_reaped(&c, 1, &deleted);
				ik_count_on_commit(IK_REAPED_ROWS, 1);
				if (!c.completed)
					ik_report_abandoned(c.scope, c.key, c.recovery_point);
			}
		}
		end_transaction_snapshot();
		if (!try_commit())
		{
			ErrorData	edata = {.message = "a deferred constraint failed at commit"};

			skip_row(r, &c, &edata);
		}
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Wait so that the run deletes at most reaper_rows_per_second, but not
 * past the run's deadline.
 */
static void
throttle(TimestampTz started, int64 deleted, TimestampTz deadline)
{
	long		due_ms;
	long		elapsed_ms;
	long		left_ms;

	if (ik_reaper_rows_per_second <= 0 || deleted == 0)
		return;
	due_ms = (long) (deleted * 1000 / ik_reaper_rows_per_second);
	elapsed_ms = TimestampDifferenceMilliseconds(started, GetCurrentTimestamp());
	left_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
	if (due_ms > elapsed_ms && left_ms > 0)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(due_ms - elapsed_ms, left_ms), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	CHECK_FOR_INTERRUPTS();
}

/*
 * A run of the background reaper in this database: batches, each its own
 * transaction, from *cursor on, until none is left or the deadline has
 * passed.  Returns whether the backlog was drained; *cursor is where the
 * next run goes on if not.  A database without the extension has nothing
 * to reap.
 */
bool
ik_reap_run(TimestampTz deadline, TimestampTz *cursor)
{
	Reap		r;
	TimestampTz started = GetCurrentTimestamp();
	int64		deleted = 0;
	int			limit = ik_reaper_batch_size;
	IkReapCandidate *candidates;
	bool	   *marks;
	bool		more = true;
	MemoryContext batchcontext;

	begin_transaction();
	if (!ik_extension_installed())
	{
		/* a run all the same: the counters show the reaper visits here */
		ik_count(IK_REAPER_RUNS, 1);
		end_transaction_snapshot();
		CommitTransactionCommand();
		return true;
	}
	end_transaction_snapshot();
	CommitTransactionCommand();

	/*
	 * Under a throttle, a batch takes at most a quarter second of the rate,
	 * so that the sleeps between batches keep the load even and a run ends
	 * near its deadline.
	 */
	if (ik_reaper_rows_per_second > 0)
		limit = Max(1, Min(limit, ik_reaper_rows_per_second / 4));

	batchcontext = AllocSetContextCreate(TopMemoryContext,
										 "idempotency reaper batch",
										 ALLOCSET_DEFAULT_SIZES);
	candidates = MemoryContextAlloc(TopMemoryContext,
									sizeof(IkReapCandidate) * limit);
	marks = MemoryContextAlloc(TopMemoryContext, sizeof(bool) * limit);
	reap_begin(&r, started, TopMemoryContext);
	r.cursor = *cursor;

	while (more && GetCurrentTimestamp() < deadline)
	{
		int			found;
		int			count;
		MemoryContext oldcontext;

		r.now = GetCurrentTimestamp();
		r.budget = SUBXACT_BUDGET;
		begin_transaction();
		pgstat_report_activity(STATE_RUNNING,
							   "deleting idempotency keys past retention");
		oldcontext = MemoryContextSwitchTo(batchcontext);
		more = reap_batch(&r, limit, candidates, marks, &found, &count);
		MemoryContextSwitchTo(oldcontext);
		end_transaction_snapshot();
		if (try_commit())
			deleted += count;
		else
		{
			int			n = 0;

			/* the rows the failed commit would have deleted, one by one */
			for (int i = 0; i < found; i++)
			{
				if (marks[i])
					candidates[n++] = candidates[i];
			}
			MemoryContextSwitchTo(batchcontext);
			reap_one_by_one(&r, candidates, n);
			MemoryContextSwitchTo(oldcontext);
			more = true;
		}
		MemoryContextReset(batchcontext);
		pgstat_report_activity(STATE_IDLE, NULL);
		pgstat_report_stat(false);
		throttle(started, deleted, deadline);
	}

	begin_transaction();
	ik_count_on_commit(IK_REAPER_RUNS, 1);
	end_transaction_snapshot();
	CommitTransactionCommand();
	*cursor = r.cursor;
	return !more;
}

/*-------------------------------------------------------------------------
 *
 * counting.c
 *	  What the SQL-callable functions count, and where it goes.
 *
 * Every SQL-callable function of the extension runs through
 * ik_counted_call(), which counts the SQLSTATE of an error of ours on its
 * way out and, for a claim, its latency.  The code counts an event with
 * ik_count(); the counters are those of counters.h.  Each count goes to
 * this database's counters (stats.c) and, when the counter has a per-scope
 * counterpart and the call has named its scope (ik_scope_call_scope()), to
 * a note in backend memory that is added to the scope's entry
 * (scope_stats.c) when the call ends, error or not, with one lookup
 * however many counters moved.
 *
 * This file is the only one that knows both stores: stats.c and
 * scope_stats.c know nothing of each other or of this file, so that each
 * can be read, and changed, alone.
 *
 * The database's counters are found before the call runs (ik_stats_add()
 * may need the catalogs the first time), so that counting on the way out
 * of an error, in PG_CATCH, only adds to atomics.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include "portability/instr_time.h"

/* The per-scope counterpart of each counter, or -1. */
static const int scope_counter_of[IK_NUM_COUNTERS] = {
#define IK_DATABASE(name, column, sqlstate) [IK_##name] = -1,
#define IK_BOTH(name, column, sqlstate, offence) [IK_##name] = IK_SCOPE_##name,
#define IK_SCOPE(name, column, offence)
#include "counters.h"
#undef IK_DATABASE
#undef IK_BOTH
#undef IK_SCOPE
};

/* The error counters, by the SQLSTATE each counts. */
typedef struct ErrorCounter
{
	int			sqlerrcode;
	IkCounter	counter;
} ErrorCounter;

static const ErrorCounter error_counters[] = {
#define IK_DATABASE(name, column, sqlstate) {sqlstate, IK_##name},
#define IK_BOTH(name, column, sqlstate, offence) {sqlstate, IK_##name},
#define IK_SCOPE(name, column, offence)
#include "counters.h"
#undef IK_DATABASE
#undef IK_BOTH
#undef IK_SCOPE
};

/*
 * The call in progress: its scope (valid while the call runs), and what it
 * counted so far for that scope.
 */
static text *call_scope = NULL;
static uint32 pending[IK_SCOPE_NUM_COUNTERS];
static bool pending_any = false;

static void
flush_call(void)
{
	if (pending_any && call_scope != NULL)
		ik_scope_stats_add(call_scope, pending);
	memset(pending, 0, sizeof(pending));
	pending_any = false;
}

void
ik_count(IkCounter counter, uint64 n)
{
	int			c = scope_counter_of[counter];

	ik_stats_add(counter, n);
	if (c >= 0 && call_scope != NULL)
	{
		pending[c] += (uint32) n;
		pending_any = true;
	}
}

/* Count an error of ours by its SQLSTATE; others are not ours to count. */
void
ik_count_error(int sqlerrcode)
{
	for (int i = 0; i < (int) lengthof(error_counters); i++)
	{
		if (error_counters[i].sqlerrcode != 0 &&
			error_counters[i].sqlerrcode == sqlerrcode)
		{
			ik_count(error_counters[i].counter, 1);
			return;
		}
	}
}

/* The call's scope, once checked; counting per scope starts here. */
void
ik_scope_call_scope(text *scope)
{
	if (ik_scope_stats_enabled())
		call_scope = scope;
}

/* Count a per-scope counter that has no per-database one, for the call. */
void
ik_scope_count_call(IkScopeCounter counter)
{
	if (call_scope == NULL)
		return;
	pending[counter]++;
	pending_any = true;
}

/* Count one event of scope at once, outside any call (the commit guard). */
void
ik_scope_count(text *scope, IkScopeCounter counter)
{
	uint32		counts[IK_SCOPE_NUM_COUNTERS] = {0};

	counts[counter] = 1;
	ik_scope_stats_add(scope, counts);
}

/*
 * Call fn, counting the SQLSTATE of any error of ours that it raises on its
 * way out, and, for a claim, its latency whatever the outcome.  What an
 * enclosing call counted so far goes to its scope first, and the call has
 * no scope until it names one; on the way out the enclosing call's scope
 * is back.
 */
Datum
ik_counted_call(PGFunction fn, FunctionCallInfo fcinfo, bool is_claim)
{
	volatile Datum result = (Datum) 0;
	instr_time	started;
	text	   *outer_scope = call_scope;

	ik_stats_prepare();
	if (pending_any)
		flush_call();
	call_scope = NULL;

	INSTR_TIME_SET_CURRENT(started);
	PG_TRY();
	{
		result = fn(fcinfo);
	}
	PG_CATCH();
	{
		ik_count_error(geterrcode());
		if (is_claim)
			ik_stats_add_latency(started);
		if (pending_any)
			flush_call();
		call_scope = outer_scope;
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (is_claim)
		ik_stats_add_latency(started);
	if (pending_any)
		flush_call();
	call_scope = outer_scope;
	return result;
}

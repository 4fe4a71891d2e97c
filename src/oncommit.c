/*-------------------------------------------------------------------------
 *
 * oncommit.c
 *	  Effects that belong to a transaction's commit: counters and reports
 *	  of work that is real only once it committed.
 *
 * The reaper's counters and the log line of an abandoned durable claim
 * describe rows that a transaction deleted; if that transaction, or the
 * subtransaction that did the work, rolls back, the rows are still there
 * and will be counted and reported when they really go.  So they are
 * queued here and done at commit; a subtransaction that aborts drops what
 * it queued.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include "access/xact.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

typedef struct Effect
{
	SubTransactionId subid;		/* the subtransaction that queued it */
	IkCounter	counter;
	uint64		n;
	text	   *scope;			/* an abandoned claim to report, or NULL */
	text	   *key;
	text	   *recovery_point;
} Effect;

/* Queued effects, in TopTransactionContext. */
static List *effects = NIL;

static Effect *
queue(void)
{
	MemoryContext oldcontext = MemoryContextSwitchTo(TopTransactionContext);
	Effect	   *e = palloc0(sizeof(Effect));

	e->subid = GetCurrentSubTransactionId();
	effects = lappend(effects, e);
	MemoryContextSwitchTo(oldcontext);
	return e;
}

/* Count n on counter once the transaction commits. */
void
ik_count_on_commit(IkCounter counter, uint64 n)
{
	Effect	   *e = queue();

	e->counter = counter;
	e->n = n;
}

/*
 * A durable claim that nobody finished before its retention ended is a
 * payment whose outcome is unknown: someone must reconcile it with the
 * processor.  Once the transaction that deleted or replaced its row
 * commits, say so in the server log, with what is known of it, and count
 * it.
 */
void
ik_report_abandoned(text *scope, text *key, text *recovery_point)
{
	MemoryContext oldcontext = MemoryContextSwitchTo(TopTransactionContext);
	Effect	   *e = queue();

	e->counter = IK_ABANDONED_CLAIMS;
	e->n = 1;
	e->scope = DatumGetTextPCopy(PointerGetDatum(scope));
	e->key = DatumGetTextPCopy(PointerGetDatum(key));
	if (recovery_point != NULL)
		e->recovery_point = DatumGetTextPCopy(PointerGetDatum(recovery_point));
	MemoryContextSwitchTo(oldcontext);
}

static void
apply(Effect *e)
{
	ik_count(e->counter, e->n);
	if (e->scope == NULL)
		return;
	ereport(LOG,
			(errmsg("idempotency: abandoned durable claim of key \"%s\" in scope \"%s\"",
					text_to_cstring(e->key), text_to_cstring(e->scope)),
			 errdetail("Its last recovery point was %s; the payment must be reconciled.",
					   e->recovery_point ?
					   quote_literal_cstr(text_to_cstring(e->recovery_point)) :
					   "never recorded")));
}

static void
oncommit_xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
			foreach(lc, effects)
				apply((Effect *) lfirst(lc));
			effects = NIL;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* lived in TopTransactionContext; a prepared one is not counted */
			effects = NIL;
			break;
		default:
			break;
	}
}

/*
 * A subtransaction that aborts drops what it and its children queued:
 * while it is active, every subtransaction started after it is one of
 * its children, so those are the effects with a later id.
 */
static void
oncommit_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg)
{
	ListCell   *lc;

	if (event != SUBXACT_EVENT_ABORT_SUB)
		return;
	foreach(lc, effects)
	{
		if (((Effect *) lfirst(lc))->subid >= mySubid)
			effects = foreach_delete_current(effects, lc);
	}
}

void
ik_register_oncommit_callbacks(void)
{
	RegisterXactCallback(oncommit_xact_callback, NULL);
	RegisterSubXactCallback(oncommit_subxact_callback, NULL);
}

/*-------------------------------------------------------------------------
 *
 * subxact.c
 *	  Running a step whose error the caller may want to survive.
 *
 * An error can only be caught and survived by rolling back to a state from
 * before it: a subtransaction, as PL/pgSQL's EXCEPTION blocks use.  The
 * step runs in the caller's memory context, so what it allocates outlives
 * the subtransaction.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include "access/xact.h"
#include "utils/resowner.h"

/*
 * Run step(arg) in a subtransaction.  Returns NULL if it succeeded (its
 * effects, locks included, now belong to the caller's transaction), or
 * else the error, with the subtransaction rolled back; the caller frees it
 * or rethrows it with ReThrowError().
 */
ErrorData *
ik_try(void (*step) (void *arg), void *arg)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		step(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();

	MemoryContextSwitchTo(oldcontext);
	CurrentResourceOwner = oldowner;
	return edata;
}

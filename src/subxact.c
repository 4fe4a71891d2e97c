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

#include <stdio.h>

#include "access/xact.h"
#include "utils/guc.h"
#include "utils/resowner.h"

/*
 * Run step(arg) in a subtransaction, and keep what it did (its effects,
 * locks included, then belong to the caller's transaction) only if it
 * returns true; otherwise roll it back, which gives back every lock it
 * took, row locks too.  Returns NULL if the step returned, or else the
 * error, with the subtransaction rolled back; the caller frees it or
 * rethrows it with ReThrowError().
 */
ErrorData *
ik_try_keep(bool (*step) (void *arg), void *arg, bool *kept)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;
	volatile bool keep = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		keep = step(arg);
		if (keep)
			ReleaseCurrentSubTransaction();
		else
			RollbackAndReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		keep = false;
	}
	PG_END_TRY();

	MemoryContextSwitchTo(oldcontext);
	CurrentResourceOwner = oldowner;
	*kept = keep;
	return edata;
}

typedef struct PlainStep
{
	void		(*step) (void *arg);
	void	   *arg;
} PlainStep;

static bool
run_to_keep(void *arg)
{
	PlainStep  *plain = (PlainStep *) arg;

	plain->step(plain->arg);
	return true;
}

/*
 * Run step(arg) in a subtransaction.  Returns NULL if it succeeded (its
 * effects, locks included, now belong to the caller's transaction), or
 * else the error, with the subtransaction rolled back; the caller frees it
 * or rethrows it with ReThrowError().
 */
ErrorData *
ik_try(void (*step) (void *arg), void *arg)
{
	PlainStep	plain = {step, arg};
	bool		kept;

	return ik_try_keep(run_to_keep, &plain, &kept);
}

typedef struct TimedStep
{
	void		(*step) (void *arg);
	void	   *arg;
	int			wait_ms;
} TimedStep;

static void
run_with_lock_timeout(void *arg)
{
	TimedStep  *timed = (TimedStep *) arg;
	char		timeout[32];
	int			nestlevel = NewGUCNestLevel();

	snprintf(timeout, sizeof(timeout), "%d", timed->wait_ms);
	(void) set_config_option("lock_timeout", timeout,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	timed->step(timed->arg);
	AtEOXact_GUC(true, nestlevel);
}

/*
 * Run step(arg), whose lock waits are ordinary heavyweight lock waits,
 * with lock_timeout set to wait_ms for it alone, in a subtransaction so
 * that the timeout's error can be caught.  Returns false if a wait timed
 * out; on success the subtransaction hands what step acquired, locks
 * included, to its parent.  Any other error (cancel, statement timeout,
 * deadlock) propagates unchanged.
 */
bool
ik_within_lock_timeout(void (*step) (void *arg), void *arg, int wait_ms)
{
	TimedStep	timed = {step, arg, wait_ms};
	ErrorData  *edata = ik_try(run_with_lock_timeout, &timed);

	if (edata == NULL)
		return true;
	if (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
		ReThrowError(edata);
	FreeErrorData(edata);
	return false;
}

/*-------------------------------------------------------------------------
 *
 * reap_skips.c
 *	  The rows the reaper could not delete, remembered in shared memory
 *	  so that each is skipped until it is due for another try.
 *
 * A row that a run of reap.c cannot delete (a DBA's trigger refuses, a
 * constraint of another table refers to it) is logged, counted and
 * skipped: retried only after a while, so that one such row does not make
 * every run fail in a loop.  The runs are short-lived workers (reaper.c),
 * so the list lives here, in shared memory, a list per database: the
 * databases that the background reaper serves, which reaper.c names as it
 * gives and takes their slots (ik_reap_skips_keep(), ik_reap_skips_forget()).
 * reap.c reads and adds to this database's list; a database that has
 * none (not reaped in the background, or the library not preloaded) skips
 * nothing across runs.
 *
 * This file calls neither reap.c nor reaper.c: both call it.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

typedef struct SkipList
{
	Oid			dboid;			/* InvalidOid while free */
	int			n;
	IkReapSkip	rows[IK_REAPER_SKIP_SLOTS];
} SkipList;

typedef struct SkipsShared
{
	LWLock	   *lock;
	SkipList	lists[IK_REAPER_DATABASES];
} SkipsShared;

static SkipsShared *skips = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
skips_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(SkipsShared)));
	RequestNamedLWLockTranche("idempotency reap skips", 1);
}

static void
skips_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	skips = ShmemInitStruct("idempotency reap skips", sizeof(SkipsShared),
							&found);
	if (!found)
	{
		memset(skips, 0, sizeof(SkipsShared));
		skips->lock = &(GetNamedLWLockTranche("idempotency reap skips"))->lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

void
ik_reap_skips_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = skips_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = skips_shmem_startup;
}

/* The list of dboid, holding the lock; NULL if it has none. */
static SkipList *
list_of(Oid dboid)
{
	for (int i = 0; i < IK_REAPER_DATABASES; i++)
	{
		if (skips->lists[i].dboid == dboid)
			return &skips->lists[i];
	}
	return NULL;
}

/* dboid is reaped in the background: give it a list, if it has none. */
void
ik_reap_skips_keep(Oid dboid)
{
	SkipList   *list;

	if (skips == NULL)
		return;
	LWLockAcquire(skips->lock, LW_EXCLUSIVE);
	if (list_of(dboid) == NULL && (list = list_of(InvalidOid)) != NULL)
	{
		list->dboid = dboid;
		list->n = 0;
	}
	LWLockRelease(skips->lock);
}

/* dboid is no longer reaped in the background: forget its list. */
void
ik_reap_skips_forget(Oid dboid)
{
	SkipList   *list;

	if (skips == NULL)
		return;
	LWLockAcquire(skips->lock, LW_EXCLUSIVE);
	if ((list = list_of(dboid)) != NULL)
		memset(list, 0, sizeof(SkipList));
	LWLockRelease(skips->lock);
}

/*
 * The rows of this database that could not be deleted and are not yet
 * due for another try, into skipped (IK_REAPER_SKIP_SLOTS entries);
 * returns how many.
 */
int
ik_reap_skipped_rows(IkReapSkip *skipped, TimestampTz now)
{
	SkipList   *list;
	int			n = 0;

	if (skips == NULL)
		return 0;
	LWLockAcquire(skips->lock, LW_SHARED);
	if ((list = list_of(MyDatabaseId)) != NULL)
	{
		for (int i = 0; i < list->n; i++)
		{
			if (list->rows[i].retry_at > now)
				skipped[n++] = list->rows[i];
		}
	}
	LWLockRelease(skips->lock);
	return n;
}

/*
 * Remember a row of this database that could not be deleted, until
 * retry_at; when the list is full the entry due soonest gives way.
 */
void
ik_reap_skip_row(const IkReapSkip *row)
{
	SkipList   *list;
	int			victim = 0;

	if (skips == NULL)
		return;
	LWLockAcquire(skips->lock, LW_EXCLUSIVE);
	if ((list = list_of(MyDatabaseId)) != NULL)
	{
		if (list->n < IK_REAPER_SKIP_SLOTS)
			victim = list->n++;
		else
		{
			for (int i = 1; i < list->n; i++)
			{
				if (list->rows[i].retry_at < list->rows[victim].retry_at)
					victim = i;
			}
		}
		list->rows[victim] = *row;
	}
	LWLockRelease(skips->lock);
}

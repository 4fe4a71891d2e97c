/*-------------------------------------------------------------------------
 *
 * keylock.c
 *	  The per-key lock that makes a duplicate request wait or fail.
 *
 * A claim takes a transaction-level heavyweight lock on its (scope, key)
 * before it returns 'new', and keeps it until the claiming transaction
 * ends.  Because the lock outlives the response row's INSERT until
 * COMMIT, whoever gets the lock next sees the committed row, or none if
 * the holder rolled back.  That is what lets a claim write nothing until
 * complete(): the lock, not a row, covers the in-flight window.
 *
 * The tag is an advisory lock tag whose fourth field (IK_LOCKTAG_SPACE)
 * keeps it apart from pg_advisory_lock()'s key spaces 1 and 2.  It names
 * a 64-bit hash of the scope and key; two in-flight keys that collide
 * merely queue behind each other, and correctness never rests on the hash
 * because the row lookup after the lock compares the real key.
 *
 * Being an ordinary lock, a wait shows in pg_locks and pg_stat_activity,
 * takes part in deadlock detection, and is bounded by the lock-timeout
 * machinery rather than by polling.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include <stdio.h>

#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/guc.h"

/* "IK": fourth locktag field, unused by pg_advisory_lock() */
#define IK_LOCKTAG_SPACE	0x494B

uint64
ik_key_hash(text *scope, text *key)
{
	uint64		h;

	h = hash_bytes_extended((const unsigned char *) VARDATA_ANY(scope),
							VARSIZE_ANY_EXHDR(scope), 0);
	return hash_bytes_extended((const unsigned char *) VARDATA_ANY(key),
							   VARSIZE_ANY_EXHDR(key), h);
}

typedef struct LockWait
{
	const LOCKTAG *tag;
	int			wait_ms;
} LockWait;

static void
acquire_within_timeout(void *arg)
{
	LockWait   *wait = (LockWait *) arg;
	char		timeout[32];
	int			nestlevel = NewGUCNestLevel();

	snprintf(timeout, sizeof(timeout), "%d", wait->wait_ms);
	(void) set_config_option("lock_timeout", timeout,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) LockAcquire(wait->tag, ExclusiveLock, false, false);
	AtEOXact_GUC(true, nestlevel);
}

/*
 * Wait for the lock with lock_timeout set, in a subtransaction so that the
 * timeout's error can be caught and turned into "not acquired".  On
 * success the subtransaction hands the lock to its parent; any other error
 * (cancel, statement timeout, deadlock) propagates unchanged.
 */
static bool
wait_for_lock(const LOCKTAG *tag, int wait_ms)
{
	LockWait	wait = {tag, wait_ms};
	ErrorData  *edata = ik_try(acquire_within_timeout, &wait);

	if (edata == NULL)
		return true;
	if (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
		ReThrowError(edata);
	FreeErrorData(edata);
	return false;
}

/* The key's lock: an advisory lock tag in the extension's own key space. */
static void
key_locktag(LOCKTAG *tag, uint64 keyhash)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) (keyhash >> 32),
						 (uint32) keyhash, IK_LOCKTAG_SPACE);
}

/*
 * Take the key's lock for the rest of the transaction.  Returns false if
 * another transaction still holds it after wait_ms (0: do not wait).
 */
bool
ik_lock_key(uint64 keyhash, int wait_ms)
{
	LOCKTAG		tag;

	key_locktag(&tag, keyhash);
	if (LockAcquire(&tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL)
		return true;
	if (wait_ms <= 0)
		return false;
	return wait_for_lock(&tag, wait_ms);
}

/*
 * Give back one hold of the key's lock taken by ik_lock_key() in this
 * transaction.  A lock the transaction took more than once stays held.
 */
void
ik_unlock_key(uint64 keyhash)
{
	LOCKTAG		tag;

	key_locktag(&tag, keyhash);
	if (!LockRelease(&tag, ExclusiveLock, false))
		elog(ERROR, "idempotency key lock was not held");
}

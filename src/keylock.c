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
 * Each lock takes an entry of the lock table that every backend shares,
 * so one transaction may hold only idempotency.max_key_locks of them
 * (by default half of max_locks_per_transaction): a client that claims
 * thousands of keys in one transaction gets SQLSTATE 53400 rather than
 * filling the table and locking everyone else out.  The locks are counted
 * per subtransaction level, since rolling a subtransaction back releases
 * the locks it took.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include "access/xact.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

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

/*
 * Key locks this transaction took, by subtransaction nesting level (index
 * 0 unused), and their sum.
 */
static int *locks_by_level = NULL;
static int	levels = 0;
static int	locks_held = 0;

static int
key_lock_limit(void)
{
	return ik_max_key_locks >= 0 ? ik_max_key_locks :
		Max(max_locks_per_xact / 2, 1);
}

static void
count_acquired(void)
{
	int			level = GetCurrentTransactionNestLevel();

	if (level >= levels)
	{
		int			n = Max(level + 1, 8);

		locks_by_level = locks_by_level == NULL ?
			MemoryContextAllocZero(TopMemoryContext, sizeof(int) * n) :
			repalloc(locks_by_level, sizeof(int) * n);
		for (int i = levels; i < n; i++)
			locks_by_level[i] = 0;
		levels = n;
	}
	locks_by_level[level]++;
	locks_held++;
}

static void
count_released(void)
{
	int			level = GetCurrentTransactionNestLevel();

	Assert(level < levels && locks_by_level[level] > 0);
	locks_by_level[level]--;
	locks_held--;
}

static void
keylock_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			for (int i = 0; i < levels; i++)
				locks_by_level[i] = 0;
			locks_held = 0;
			break;
		default:
			break;
	}
}

static void
keylock_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();

	if (level >= levels || locks_by_level[level] == 0)
		return;
	if (event == SUBXACT_EVENT_COMMIT_SUB)
		locks_by_level[level - 1] += locks_by_level[level];
	else if (event == SUBXACT_EVENT_ABORT_SUB)
		locks_held -= locks_by_level[level];
	else
		return;
	locks_by_level[level] = 0;
}

void
ik_register_keylock_callbacks(void)
{
	RegisterXactCallback(keylock_xact_callback, NULL);
	RegisterSubXactCallback(keylock_subxact_callback, NULL);
}

static void
acquire_key_lock(void *arg)
{
	(void) LockAcquire((const LOCKTAG *) arg, ExclusiveLock, false, false);
}

/* The key's lock: an advisory lock tag in the extension's own key space. */
static void
key_locktag(LOCKTAG *tag, uint64 keyhash)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) (keyhash >> 32),
						 (uint32) keyhash, IK_LOCKTAG_SPACE);
}

static void
raise_too_many_locks(int limit)
{
	ereport(ERROR,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("too many idempotency keys locked in one transaction"),
			 errdetail("This transaction holds %d idempotency key locks; the limit is %d (idempotency.max_key_locks).",
					   locks_held, limit),
			 errhint("Claim fewer keys per transaction, or have a superuser raise idempotency.max_key_locks together with max_locks_per_transaction.")));
}

/*
 * A lock waited for in a subtransaction went, when the subtransaction
 * committed, to the transaction's resource owner, while one taken at once
 * belongs to the current one (a portal's, say).  Move it to the current
 * owner, so that ik_unlock_key(), which releases the current owner's hold,
 * can give back either.
 */
static void
hold_in_current_owner(const LOCKTAG *tag)
{
	ResourceOwner save = CurrentResourceOwner;

	if (CurrentResourceOwner == CurTransactionResourceOwner)
		return;
	(void) LockAcquire(tag, ExclusiveLock, false, true);
	CurrentResourceOwner = CurTransactionResourceOwner;
	PG_TRY();
	{
		if (!LockRelease(tag, ExclusiveLock, false))
			elog(ERROR, "idempotency key lock was not held");
	}
	PG_FINALLY();
	{
		CurrentResourceOwner = save;
	}
	PG_END_TRY();
}

/*
 * Take the key's lock for the rest of the transaction.  Returns false if
 * another transaction still holds it after wait_ms (0: do not wait);
 * *newly says whether this transaction did not hold it already.
 */
bool
ik_lock_key(uint64 keyhash, int wait_ms, bool *newly)
{
	LOCKTAG		tag;
	LockAcquireResult result;
	int			limit = key_lock_limit();

	key_locktag(&tag, keyhash);
	result = LockAcquire(&tag, ExclusiveLock, false, true);
	*newly = false;
	if (result == LOCKACQUIRE_ALREADY_HELD || result == LOCKACQUIRE_ALREADY_CLEAR)
		return true;
	if (result == LOCKACQUIRE_NOT_AVAIL)
	{
		/* never wait for a lock this transaction could not keep */
		if (locks_held >= limit)
			raise_too_many_locks(limit);
		if (wait_ms <= 0 ||
			!ik_within_lock_timeout(acquire_key_lock, &tag, wait_ms))
			return false;
		hold_in_current_owner(&tag);
	}
	else if (locks_held >= limit)
	{
		LockRelease(&tag, ExclusiveLock, false);
		raise_too_many_locks(limit);
	}
	count_acquired();
	*newly = true;
	return true;
}

/*
 * Give back one hold of the key's lock taken by ik_lock_key() in this
 * transaction; newly is what ik_lock_key() said.  A lock the transaction
 * took more than once stays held.
 */
void
ik_unlock_key(uint64 keyhash, bool newly)
{
	LOCKTAG		tag;

	key_locktag(&tag, keyhash);
	if (!LockRelease(&tag, ExclusiveLock, false))
		elog(ERROR, "idempotency key lock was not held");
	if (newly)
		count_released();
}

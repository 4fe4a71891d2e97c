/*-------------------------------------------------------------------------
 *
 * xactstate.c
 *	  The claims the current transaction holds, and the commit guard.
 *
 * A 'new' claim is a promise to complete() or release() the key before
 * the transaction ends.  The promise is kept in backend memory for the
 * transaction's life; PRE_COMMIT and PRE_PREPARE refuse to end a
 * transaction that broke it, so the charge the claim guarded rolls back
 * with the error.  Subtransactions are followed so that a claim made, or
 * closed, inside a savepoint that is rolled back is undone with it.
 *
 * The guard also refuses to keep writes without their key.  A key freed
 * by release() or by a 5xx complete() is free for a retry once this
 * transaction commits, so whatever else the transaction wrote, a charge
 * above all, must not commit with it: the retry would charge again.  The
 * guard cannot tell a charge from other writes, so the rule is the one
 * that cannot lose money: a transaction that freed the key of a claim it
 * made commits only if it wrote nothing at all (it has no transaction ID;
 * a row lock counts as a write), unless it claimed the key again and
 * stored a response.  A savepoint rolled back undoes a claim together with
 * the writes it guarded, and is the way to give up part of a transaction.
 * A durable claim is another matter: its row is the key, and lease.c
 * frees it only when the claim recorded no recovery point, which is the
 * caller's word that nothing durable happened.
 *
 * A transaction claims one key, or a handful, so a list is the right
 * structure.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include "access/xact.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

/* Claims of the current transaction, in TopTransactionContext. */
static List *claims = NIL;

/*
 * The latest claim of (scope, key) in this transaction.  A key released
 * and claimed again has two entries; the older, closed one stays so that
 * rolling back the savepoint of the newer one leaves the right state.
 */
IkClaim *
ik_claim_find(text *scope, text *key)
{
	IkClaim    *found = NULL;
	ListCell   *lc;

	foreach(lc, claims)
	{
		IkClaim    *claim = (IkClaim *) lfirst(lc);

		if (ik_same_bytes(claim->key, key) && ik_same_bytes(claim->scope, scope))
			found = claim;
	}
	return found;
}

/*
 * Record a new open claim.  Claims of scopes in off or shadow mode are
 * recorded too, so that complete() and release() know the mode they were
 * made in, but the commit guard lets them be.
 */
IkClaim *
ik_claim_open(text *scope, text *key, bytea *fingerprint,
			  TimestampTz created_at, const IkPolicy *policy, bool replace,
			  bool holds_lock)
{
	MemoryContext oldcontext = MemoryContextSwitchTo(TopTransactionContext);
	IkClaim    *claim = palloc0(sizeof(IkClaim));

	claim->scope = DatumGetTextPCopy(PointerGetDatum(scope));
	claim->key = DatumGetTextPCopy(PointerGetDatum(key));
	claim->fingerprint = DatumGetByteaPCopy(PointerGetDatum(fingerprint));
	claim->created_at = created_at;
	claim->policy = *policy;
	claim->replace = replace;
	claim->holds_lock = holds_lock;
	claim->opened_subid = GetCurrentSubTransactionId();
	claim->closed_subid = InvalidSubTransactionId;
	claims = lappend(claims, claim);

	MemoryContextSwitchTo(oldcontext);
	return claim;
}

/* Close a claim; freed says whether release() or a 5xx freed its key. */
void
ik_claim_close(IkClaim *claim, bool freed)
{
	claim->closed_subid = GetCurrentSubTransactionId();
	claim->freed = freed;
}

static void
check_no_open_claim(const char *action)
{
	ListCell   *lc;

	foreach(lc, claims)
	{
		IkClaim    *claim = (IkClaim *) lfirst(lc);

		if (claim->closed_subid != InvalidSubTransactionId ||
			claim->policy.mode != IK_MODE_ENFORCE)
			continue;
		ik_count(IK_ERRORS_IK428, 1);
		ik_scope_count(claim->scope, IK_SCOPE_ERRORS_IK428);
		ereport(ERROR,
				(errcode(ERRCODE_IK_PROTOCOL_VIOLATION),
				 errmsg("cannot %s with idempotency key \"%s\" still claimed",
						action, text_to_cstring(claim->key)),
				 errdetail("Key \"%s\" in scope \"%s\" was claimed in this transaction but neither completed nor released.",
						   text_to_cstring(claim->key),
						   text_to_cstring(claim->scope)),
				 errhint("Call idempotency.complete() or idempotency.release() before the transaction ends.")));
	}
}

static void
raise_write_without_key(const char *action, text *scope, text *key)
{
	ik_count(IK_ERRORS_IK428, 1);
	ik_scope_count(scope, IK_SCOPE_ERRORS_IK428);
	ereport(ERROR,
			(errcode(ERRCODE_IK_PROTOCOL_VIOLATION),
			 errmsg("cannot %s writes of a transaction that freed idempotency key \"%s\"",
					action, text_to_cstring(key)),
			 errdetail("Key \"%s\" in scope \"%s\" was freed in this transaction by release() or a 5xx complete(), and the transaction also wrote data: a retry would find the key free while the writes stay.",
					   text_to_cstring(key), text_to_cstring(scope)),
			 errhint("Roll back the transaction, or a savepoint taken before the claim, to give up the request; or store the response with complete().")));
}

/*
 * The key of a claim that was freed, unless a later claim of it in this
 * transaction stored a response.
 */
static bool
still_freed(IkClaim *claim)
{
	IkClaim    *latest;

	if (!claim->freed || claim->policy.mode != IK_MODE_ENFORCE)
		return false;
	latest = ik_claim_find(claim->scope, claim->key);
	return latest == claim || latest->closed_subid == InvalidSubTransactionId ||
		latest->freed;
}

/* Refuse to keep writes of a transaction that freed a key: file header. */
static void
check_no_write_without_key(const char *action)
{
	bool		wrote = TransactionIdIsValid(GetTopTransactionIdIfAny());
	ListCell   *lc;

	if (!wrote)
		return;
	foreach(lc, claims)
	{
		IkClaim    *claim = (IkClaim *) lfirst(lc);

		if (still_freed(claim))
			raise_write_without_key(action, claim->scope, claim->key);
	}
}

static void
xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			check_no_open_claim("commit");
			check_no_write_without_key("commit");
			break;
		case XACT_EVENT_PRE_PREPARE:
			check_no_open_claim("prepare transaction");
			check_no_write_without_key("prepare");
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* the list lived in TopTransactionContext, gone now */
			claims = NIL;
			break;
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			break;
	}
}

static void
subxact_callback(SubXactEvent event, SubTransactionId mySubid,
				 SubTransactionId parentSubid, void *arg)
{
	ListCell   *lc;

	switch (event)
	{
		case SUBXACT_EVENT_ABORT_SUB:
			foreach(lc, claims)
			{
				IkClaim    *claim = (IkClaim *) lfirst(lc);

				if (claim->opened_subid == mySubid)
					claims = foreach_delete_current(claims, lc);
				else if (claim->closed_subid == mySubid)
					claim->closed_subid = InvalidSubTransactionId;
			}
			break;
		case SUBXACT_EVENT_COMMIT_SUB:
			foreach(lc, claims)
			{
				IkClaim    *claim = (IkClaim *) lfirst(lc);

				if (claim->opened_subid == mySubid)
					claim->opened_subid = parentSubid;
				if (claim->closed_subid == mySubid)
					claim->closed_subid = parentSubid;
			}
			break;
		case SUBXACT_EVENT_START_SUB:
		case SUBXACT_EVENT_PRE_COMMIT_SUB:
			break;
	}
}

void
ik_register_xact_callbacks(void)
{
	RegisterXactCallback(xact_callback, NULL);
	RegisterSubXactCallback(subxact_callback, NULL);
}

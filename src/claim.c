/*-------------------------------------------------------------------------
 *
 * claim.c
 *	  claim(), complete() and release(): the Idempotency-Key protocol.
 *
 * decide() is the claim proper, in four named steps.
 *
 * 1. The judge, judge_row(): a pure decision from one row version read
 *    (no row, or one past retention and not under a live lease: 'gone';
 *    another fingerprint: IK422; a durable claim in progress: 'held' while
 *    its lease is live on the wall clock, else 'lapsed'; a completed row:
 *    a tombstone, IK410, past its replay window, else 'replay').  A live
 *    lease wins over every window: such a row is never answered 'new',
 *    replaced or reaped.
 *
 * 2. The key-lock wait, wait_for_key().  Under READ COMMITTED, when the
 *    key's lock (keylock.c) is free, it is taken and the row read once
 *    under it.  Otherwise the row is read without any lock; 'replay' and
 *    'held' are answered from that read, and for the rest the claim waits
 *    for the key's lock (until its deadline, else IK409) and reads again,
 *    because the holder it waited for can have committed a row in between.
 *    A claim takes the key's lock at most once, and keeps it until it
 *    returns, except for a replay, which gives it back: a replay takes no
 *    lock and writes nothing.
 *
 * 3. The lapsed-lease takeover, take_over_lapsed(), holding the key's
 *    lock, so that no other claim races it; the lease's holder may, by
 *    renewing (checkpoint()) or finishing its claim.  In a subtransaction
 *    the claim locks the row (waiting for the holder's open transaction,
 *    until the deadline, else IK409) and judges the version it locked.
 *    Still 'lapsed': it takes the claim over under a new token, with the
 *    recovery point committed by then, and keeps the subtransaction, so
 *    the row lock and the write stay until its transaction ends ('resume').
 *    Anything else rolls the subtransaction back, which gives back the row
 *    lock at once, and the verdict goes on: 'held' to the poll loop,
 *    'replay' to a replay, 'gone' to a new claim; a row deleted meanwhile
 *    sends the claim back to step 2.
 *
 * 4. The poll loop, poll_live_lease(), for a live lease, whose holder has
 *    no transaction to wait on: sleep (doubling from 1 ms to 100 ms, until
 *    the deadline, else IK409), read again without any row lock, until the
 *    version read is not 'held'; then back to step 2.  The key's lock, if
 *    the claim has it, is kept, so that other duplicates queue behind it;
 *    the lease's holder never needs it.
 *
 * So a claim never holds a row lock on a version whose lease is live, and
 * a holder that checkpoints or completes inside its lease (lease.c locks
 * the row, never the key) waits at most for another claim's step 3 to
 * judge a version, and always succeeds.  Only 'new' (the key's lock) and
 * 'resume' (the key's lock and the row's) return holding locks.
 *
 * If the row is absent the claim is 'new': without a lease nothing is
 * written yet, complete() writes the one row, and the key's lock keeps
 * duplicates out until the transaction ends.  With a lease the claim
 * writes a row in progress at once (lease.c has the rest of durable
 * claims).
 *
 * Under REPEATABLE READ and SERIALIZABLE the reads after a wait cannot use
 * the transaction's snapshot, which does not show a row committed after
 * it, so they are made with a fresh snapshot; a row that the transaction's
 * snapshot does not show (step 2), a row changed under the snapshot (the
 * row lock of step 3), or another version in a poll (step 4) means the
 * caller raced another request, and the claim fails with a serialization
 * error for the caller to retry (and then replay), as PostgreSQL does for
 * a concurrent update.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

PG_FUNCTION_INFO_V1(idempotency_claim);
PG_FUNCTION_INFO_V1(idempotency_complete);
PG_FUNCTION_INFO_V1(idempotency_release);

/* Columns of claim()'s result row. */
#define CLAIM_NATTS 7
#define CLAIM_NARGS 5			/* claim()'s arguments */

/* Longest sleep between two looks at a durable claim a caller waits for. */
#define LEASE_POLL_MAX_MS 100

typedef enum ClaimOutcome
{
	CLAIM_NEW,
	CLAIM_REPLAY,
	CLAIM_RESUME
} ClaimOutcome;

static const char *const outcome_names[] = {"new", "replay", "resume"};

/* What an existing row means to a claim. */
typedef enum RowVerdict
{
	ROW_GONE,					/* past retention: the key is new again */
	ROW_REPLAY,					/* completed, inside the replay window */
	ROW_HELD,					/* a durable claim with a live lease */
	ROW_LAPSED,					/* a durable claim whose lease lapsed */
	ROW_MISMATCH,				/* another request's key: IK422 */
	ROW_EXPIRED					/* a tombstone past its replay window: IK410 */
} RowVerdict;

/* What one claim call asked for. */
typedef struct ClaimRequest
{
	text	   *scope;
	text	   *key;
	bytea	   *fingerprint;
	uint64		keyhash;
	bool		durable;
	int64		lease_ms;		/* when durable */
	int			wait_ms;
	TimestampTz now;			/* transaction start: the key's clock */
	IkPolicy	policy;
} ClaimRequest;

/* timestamptz_to_str() reuses one buffer; messages need several at once */
static char *
time_str(TimestampTz t)
{
	return pstrdup(timestamptz_to_str(t));
}

/*
 * What a claim makes of an existing row.  Leases run on the wall clock,
 * since a worker's lease must lapse however long the claiming transaction
 * is; the windows run on the transaction's clock, as they were set.
 */
static RowVerdict
classify_row(const IkRow *row, const ClaimRequest *req)
{
	bool		lease_live = !row->completed &&
		GetCurrentTimestamp() < row->lease_expires_at;

	if (req->now >= row->retain_until && !lease_live)
		return ROW_GONE;
	if (!ik_fingerprint_matches(row->fingerprint, req->fingerprint))
		return ROW_MISMATCH;
	if (!row->completed)
		return lease_live ? ROW_HELD : ROW_LAPSED;
	if (req->now >= row->expires_at)
		return ROW_EXPIRED;
	return ROW_REPLAY;
}

/* classify_row(), raising the errors an enforced claim raises. */
static RowVerdict
judge_row(const IkRow *row, const ClaimRequest *req)
{
	RowVerdict	verdict = classify_row(row, req);

	if (verdict == ROW_MISMATCH)
		ereport(ERROR,
				(errcode(ERRCODE_IK_FINGERPRINT_MISMATCH),
				 errmsg("idempotency key \"%s\" was used with a different request",
						text_to_cstring(req->key)),
				 errdetail("Key \"%s\" in scope \"%s\" was first used at %s for a request with another fingerprint.",
						   text_to_cstring(req->key), text_to_cstring(req->scope),
						   time_str(row->created_at)),
				 errhint("Use a new idempotency key for a different request.")));
	if (verdict == ROW_EXPIRED)
		ereport(ERROR,
				(errcode(ERRCODE_IK_EXPIRED),
				 errmsg("idempotency key \"%s\" has expired",
						text_to_cstring(req->key)),
				 errdetail("Key \"%s\" in scope \"%s\" was first used at %s; its replay window ended at %s and it is retained until %s.",
						   text_to_cstring(req->key), text_to_cstring(req->scope),
						   time_str(row->created_at),
						   time_str(row->expires_at),
						   time_str(row->retain_until)),
				 errhint("A retry this late is not replayed; send the request with a new idempotency key if it is meant as a new one.")));
	return verdict;
}

static void
raise_in_progress(const ClaimRequest *req, const char *holder)
{
	ereport(ERROR,
			(errcode(ERRCODE_IK_IN_PROGRESS),
			 errmsg("idempotency key \"%s\" is in use by a request in progress",
					text_to_cstring(req->key)),
			 errdetail("%s holds key \"%s\" in scope \"%s\"; waited %d ms.",
					   holder, text_to_cstring(req->key),
					   text_to_cstring(req->scope), req->wait_ms),
			 errhint("Retry once the first request has finished, or claim with a wait interval.")));
}

static void
raise_serialization_failure(const ClaimRequest *req)
{
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not serialize access due to a concurrent claim of idempotency key \"%s\"",
					text_to_cstring(req->key)),
			 errdetail("Another transaction changed key \"%s\" in scope \"%s\" after this transaction's snapshot was taken.",
					   text_to_cstring(req->key), text_to_cstring(req->scope)),
			 errhint("Retry the transaction; the retry replays the other request's response.")));
}

/* What is left of a wait until deadline, in milliseconds. */
static int
ms_left(TimestampTz deadline)
{
	return (int) Max(0, TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
														deadline));
}

/*
 * Sleep before looking again at a key held by a durable claim, whose
 * holder has no transaction to wait on.  Returns false once the deadline
 * has passed.
 */
static bool
sleep_before_next_look(TimestampTz deadline, int *nap_ms)
{
	long		left_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
														  deadline);

	if (left_ms <= 0)
		return false;
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 Min(left_ms, *nap_ms), PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	*nap_ms = Min(*nap_ms * 2, LEASE_POLL_MAX_MS);
	return true;
}

/* The key's lock, as far as one claim took it. */
typedef struct KeyHold
{
	bool		held;
	bool		newly;			/* what ik_lock_key() said */
} KeyHold;

static void
let_go_of_key(const ClaimRequest *req, KeyHold *hold)
{
	if (hold->held)
		ik_unlock_key(req->keyhash, hold->newly);
	hold->held = false;
}

/*
 * The key-lock wait.  Read the key's row and judge it; a row that a
 * claim may write (none, one past retention, a lapsed lease) is read
 * again under the key's lock, taken once per claim and waited for until
 * deadline, because the holder waited for may have committed a row in
 * between.  A completed row replays from the first read, without the
 * lock, and a live lease goes to the poll loop, with the lock if this
 * claim has it by then.  *seen is the version the first read found, which
 * under REPEATABLE READ is the transaction snapshot's (READ COMMITTED,
 * which polls with a fresh snapshot, does not use it).
 */
static RowVerdict
wait_for_key(const ClaimRequest *req, IkRow *row, IkRow *seen, KeyHold *hold,
			 TimestampTz deadline)
{
	bool		xact_snapshot = IsolationUsesXactSnapshot();
	RowVerdict	verdict;

	if (!xact_snapshot && !hold->held)
		hold->held = ik_lock_key(req->keyhash, 0, &hold->newly);
	if (!xact_snapshot && hold->held)
	{
		/*
		 * READ COMMITTED with the key's lock: one read is enough.  Only a
		 * holder of the lock writes the key's row, and the holder before us
		 * has ended, so a fresh snapshot shows whatever it committed.
		 */
		ik_store_lookup(req->scope, req->key, false, row);
		return row->found ? judge_row(row, req) : ROW_GONE;
	}

	/* The key is taken, or the snapshot is the transaction's: read first. */
	ik_store_lookup(req->scope, req->key, false, seen);
	verdict = seen->found ? judge_row(seen, req) : ROW_GONE;
	*row = *seen;
	if (verdict == ROW_REPLAY || verdict == ROW_HELD)
		return verdict;
	if (!hold->held)
	{
		if (!ik_lock_key(req->keyhash, ms_left(deadline), &hold->newly))
			raise_in_progress(req, "Another transaction");
		hold->held = true;
	}
	ik_store_lookup(req->scope, req->key, xact_snapshot, row);
	if (row->found && xact_snapshot &&
		(!seen->found || row->xmin != seen->xmin))
		raise_serialization_failure(req);
	return row->found ? judge_row(row, req) : ROW_GONE;
}

/* A lapsed-lease takeover, run in a subtransaction. */
typedef struct TakeOver
{
	const ClaimRequest *req;
	IkRow	   *row;			/* the lapsed version; then the one locked */
	int			wait_ms;		/* for the row's lock */
	pg_uuid_t  *token;			/* the new holder's, once taken over */
	IkLockResult locked;
	RowVerdict	verdict;		/* of the version locked */
} TakeOver;

static bool
lock_and_take_over(void *arg)
{
	TakeOver   *t = (TakeOver *) arg;
	const ClaimRequest *req = t->req;

	t->locked = ik_store_lock(req->scope, req->key, t->row, t->wait_ms);
	if (t->locked != IK_ROW_LOCKED)
		return false;
	t->verdict = judge_row(t->row, req);
	if (t->verdict != ROW_LAPSED)
		return false;
	ik_lease_take_over(req->scope, req->key, t->row, t->token,
					   req->durable ? req->lease_ms : t->row->lease_ms);
	return true;
}

/*
 * The lapsed-lease takeover, holding the key's lock, so that no other
 * claim races us; the lease's holder may, by renewing or finishing its
 * claim.  In a subtransaction, lock the row, waiting until deadline, and
 * judge the version locked: a lease still lapsed is taken over, with the
 * recovery point committed by then, and the subtransaction, its row lock
 * with it, is kept.  Anything else rolls the subtransaction back, which
 * gives back the row lock at once: a claim never keeps a row lock on a
 * version whose lease is live (its holder's next checkpoint() or
 * complete() would wait for us, then find its lease taken over), nor on a
 * completed one it replays.  Returns false when the row went meanwhile;
 * else *verdict is the locked version's, ROW_LAPSED once taken over.
 */
static bool
take_over_lapsed(const ClaimRequest *req, IkRow *row, pg_uuid_t *token,
				 TimestampTz deadline, RowVerdict *verdict)
{
	TakeOver	t;
	ErrorData  *edata;
	bool		taken;

	t.req = req;
	t.row = row;
	t.wait_ms = ms_left(deadline);
	t.token = token;
	t.locked = IK_ROW_GONE;
	t.verdict = ROW_GONE;
	edata = ik_try_keep(lock_and_take_over, &t, &taken);
	if (edata != NULL)
		ReThrowError(edata);
	if (t.locked == IK_ROW_BUSY)
		raise_in_progress(req, "The durable claim's holder");
	*verdict = t.verdict;
	return t.locked == IK_ROW_LOCKED;
}

/*
 * The poll loop, for a live lease, whose holder has no transaction to
 * wait on: sleep, then read again without any row lock, until the
 * version read is not under a live lease or the deadline has passed.  The
 * key's lock, if this claim has it, is kept, so that other duplicates
 * queue behind this one; the lease's holder does not need it.  Under
 * REPEATABLE READ the transaction's snapshot will not show the end, and a
 * fresh one that shows another version than *seen means the claim raced
 * the holder.
 */
static void
poll_live_lease(const ClaimRequest *req, IkRow *row, const IkRow *seen,
				TimestampTz deadline, int *nap_ms)
{
	bool		xact_snapshot = IsolationUsesXactSnapshot();

	do
	{
		if (!sleep_before_next_look(deadline, nap_ms))
			raise_in_progress(req, "A durable claim with a live lease");
		ik_store_lookup(req->scope, req->key, xact_snapshot, row);
		if (xact_snapshot && (!row->found || row->xmin != seen->xmin))
			raise_serialization_failure(req);
	} while (row->found && judge_row(row, req) == ROW_HELD);
}

/*
 * The claim proper: the key-lock wait, then for a lapsed lease the
 * takeover, and for a live one the poll loop, after which the key is
 * looked at again.  Returns CLAIM_REPLAY with the row to replay, holding
 * no lock; CLAIM_NEW holding the key's lock, with row->found saying
 * whether a row past retention must be overwritten; or CLAIM_RESUME
 * holding the key's lock and the row's, taken over under *token.
 */
static ClaimOutcome
decide(const ClaimRequest *req, IkRow *row, pg_uuid_t *token)
{
	TimestampTz deadline = ik_time_plus_ms(GetCurrentTimestamp(),
										   req->wait_ms);
	int			nap_ms = 1;
	KeyHold		hold = {false, false};
	IkRow		seen;
	RowVerdict	verdict;

	for (;;)
	{
		verdict = wait_for_key(req, row, &seen, &hold, deadline);
		if (verdict == ROW_LAPSED &&
			!take_over_lapsed(req, row, token, deadline, &verdict))
			continue;			/* released meanwhile: look again */

		switch (verdict)
		{
			case ROW_GONE:
				return CLAIM_NEW;
			case ROW_LAPSED:
				return CLAIM_RESUME;
			case ROW_REPLAY:
				let_go_of_key(req, &hold);
				return CLAIM_REPLAY;
			case ROW_HELD:
				poll_live_lease(req, row, &seen, deadline, &nap_ms);
				break;
			case ROW_MISMATCH:
			case ROW_EXPIRED:
				/* judge_row() raised these */
				elog(ERROR, "unexpected verdict %d on an idempotency key",
					 (int) verdict);
		}
	}
}

static Datum
claim_result(FunctionCallInfo fcinfo, ClaimOutcome outcome, const IkRow *row,
			 TimestampTz first_seen, const pg_uuid_t *token)
{
	Oid			rettype = get_fn_expr_rettype(fcinfo->flinfo);
	TupleDesc	tupdesc;
	Datum		values[CLAIM_NATTS];
	bool		nulls[CLAIM_NATTS];
	HeapTuple	tuple;

	/*
	 * idempotency.claim_result, from the type cache: cheaper than
	 * get_call_result_type(), which looks the function up again.
	 */
	if (!OidIsValid(rettype))
		rettype = get_func_rettype(fcinfo->flinfo->fn_oid);
	if (rettype == RECORDOID)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("idempotency.claim() does not return the type this library expects"),
				 errhint("Update the extension with ALTER EXTENSION idempotency UPDATE.")));
	tupdesc = lookup_rowtype_tupdesc(rettype, -1);
	if (tupdesc->natts != CLAIM_NATTS)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("type %s does not have the layout this library expects",
						format_type_be(rettype)),
				 errhint("Update the extension with ALTER EXTENSION idempotency UPDATE.")));

	memset(nulls, true, sizeof(nulls));
	values[0] = CStringGetTextDatum(outcome_names[outcome]);
	nulls[0] = false;
	if (outcome == CLAIM_REPLAY)
	{
		values[1] = Int32GetDatum(row->response.status);
		nulls[1] = false;
		values[2] = PointerGetDatum(row->response.headers);
		nulls[2] = (row->response.headers == NULL);
		values[3] = PointerGetDatum(row->response.body);
		nulls[3] = (row->response.body == NULL);
	}
	if (outcome != CLAIM_NEW && row->recovery_point != NULL)
	{
		values[4] = PointerGetDatum(row->recovery_point);
		nulls[4] = false;
	}
	values[5] = TimestampTzGetDatum(first_seen);
	nulls[5] = false;
	if (token != NULL)
	{
		values[6] = UUIDPGetDatum(token);
		nulls[6] = false;
	}

	tuple = heap_form_tuple(tupdesc, values, nulls);
	ReleaseTupleDesc(tupdesc);
	return HeapTupleGetDatum(tuple);
}

/*
 * Is a row past its retention, so that a new claim of the key replaces
 * it?  Never while a live lease holds it.
 */
static bool
row_gone(const IkRow *row, TimestampTz now)
{
	return now >= row->retain_until &&
		(row->completed || GetCurrentTimestamp() >= row->lease_expires_at);
}

/*
 * A durable claim nobody finished is replaced: record it for
 * reconciliation in this transaction (store.c).
 */
static void
record_replaced(const IkWrite *w, const IkRow *old)
{
	IkAbandoned a;

	a.scope = w->scope;
	a.key = w->key;
	a.recovery_point = old->recovery_point;
	a.lease_token = old->lease_token;
	a.first_seen = old->created_at;
	a.lease_expires_at = old->lease_expires_at;
	a.how = "replaced";
	ik_store_record_abandoned(&a);
}

/*
 * Write the row of a key this transaction holds the lock of.  With
 * replace, a row past retention was there at the claim: it is replaced if
 * it still is (the reaper may have deleted it since), once locked and seen
 * to be still past retention; a durable claim's late worker may have
 * brought it back to life meanwhile, which makes this claim a duplicate.
 */
static void
write_claimed_row(const IkWrite *w, bool replace, TimestampTz now)
{
	IkRow		old;

	if (replace)
	{
		ik_store_lookup(w->scope, w->key, true, &old);
		if (old.found &&
			ik_store_lock(w->scope, w->key, &old, -1) == IK_ROW_LOCKED)
		{
			if (!row_gone(&old, now))
				ereport(ERROR,
						(errcode(ERRCODE_IK_IN_PROGRESS),
						 errmsg("idempotency key \"%s\" is in use by a request in progress",
								text_to_cstring(w->key)),
						 errdetail("The durable claim of key \"%s\" in scope \"%s\" was renewed by its holder after its retention had ended.",
								   text_to_cstring(w->key), text_to_cstring(w->scope))));
			if (!old.completed)
				record_replaced(w, &old);
			ik_store_update(w->scope, w->key, &old, w);
			return;
		}
	}
	ik_store_insert(w);
}

/* Write the row of a new durable claim, and return its token. */
static pg_uuid_t *
start_durable_claim(const ClaimRequest *req, bool replace)
{
	IkWrite		w;
	pg_uuid_t  *token = palloc(sizeof(pg_uuid_t));

	memset(&w, 0, sizeof(w));
	w.scope = req->scope;
	w.key = req->key;
	w.fingerprint = req->fingerprint;
	w.completed = false;
	ik_new_lease_token(&w.lease_token, true, req->policy.cache_5xx);
	w.lease_ms = req->lease_ms;
	w.lease_expires_at = ik_time_plus_ms(GetCurrentTimestamp(), req->lease_ms);
	w.created_at = req->now;
	w.expires_at = ik_time_plus_ms(req->now, req->policy.ttl_ms);
	w.retain_until = ik_retention_for_lease(w.created_at, w.expires_at,
											ik_time_plus_ms(req->now,
															req->policy.retain_ms),
											w.lease_expires_at);
	write_claimed_row(&w, replace, req->now);
	*token = w.lease_token;
	return token;
}

/*
 * A claim in shadow mode: count what enforce would have done, and return
 * 'new' without ever raising or waiting.  The key's lock is taken if it is
 * free, so that a concurrent duplicate counts as a would-be conflict; only
 * the lock's holder records a response (complete()), so that two shadowed
 * duplicates never collide on the row.  Returns whether this claim holds
 * the lock; *replace says whether a row past retention is there.
 */
static bool
shadow_claim(const ClaimRequest *req, bool *replace)
{
	IkRow		row;
	IkClaim    *mine = ik_claim_find(req->scope, req->key);
	bool		newly;

	*replace = false;
	ik_store_lookup(req->scope, req->key, false, &row);
	switch (row.found ? classify_row(&row, req) : ROW_GONE)
	{
		case ROW_REPLAY:
			ik_count(IK_SHADOW_WOULD_REPLAY, 1);
			return false;
		case ROW_MISMATCH:
			ik_count(IK_SHADOW_WOULD_IK422, 1);
			return false;
		case ROW_EXPIRED:
			ik_count(IK_SHADOW_WOULD_IK410, 1);
			return false;
		case ROW_HELD:
			ik_count(IK_SHADOW_WOULD_CONFLICT, 1);
			return false;
		case ROW_LAPSED:
			return false;
		case ROW_GONE:
			*replace = row.found;
			break;
	}
	if ((mine != NULL && mine->closed_subid == InvalidSubTransactionId) ||
		!ik_lock_key(req->keyhash, 0, &newly))
	{
		ik_count(IK_SHADOW_WOULD_CONFLICT, 1);
		return false;
	}
	return true;
}

/* A lease token for a claim that records nothing: off and shadow modes. */
static pg_uuid_t *
unrecorded_token(const ClaimRequest *req)
{
	pg_uuid_t  *token;

	if (!req->durable)
		return NULL;
	token = palloc(sizeof(pg_uuid_t));
	ik_new_lease_token(token, false, false);
	return token;
}

static Datum
claim(FunctionCallInfo fcinfo)
{
	ClaimRequest req;
	bool		no_lease;
	bool		wait_isnull;
	bool		replace;
	bool		holds_lock;
	IkClaim    *mine;
	IkRow		row;
	pg_uuid_t	resumed;

	ik_require_writable("idempotency.claim()");

	req.scope = ik_arg_name(fcinfo, 0, "scope");
	ik_scope_call_scope(req.scope);
	req.key = ik_arg_name(fcinfo, 1, "key");
	req.fingerprint = ik_arg_fingerprint(fcinfo, 2, "fingerprint");
	req.keyhash = ik_key_hash(req.scope, req.key);
	req.lease_ms = ik_arg_interval_ms(fcinfo, 3, "lease", &no_lease);
	req.durable = !no_lease;
	if (req.durable && req.lease_ms <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_IK_INVALID_ARGUMENT),
				 errmsg("argument \"lease\" must be positive")));
	req.wait_ms = (int) ik_arg_interval_ms(fcinfo, 4, "wait", &wait_isnull);
	if (wait_isnull)
		req.wait_ms = ik_lock_timeout_ms;
	req.now = GetCurrentTransactionStartTimestamp();
	ik_policy_for(req.scope, &req.policy);

	switch (req.policy.mode)
	{
		case IK_MODE_OFF:
			if (!req.durable)
				ik_claim_open(req.scope, req.key, req.fingerprint, req.now,
							  &req.policy, false, false);
			return claim_result(fcinfo, CLAIM_NEW, NULL, req.now,
								unrecorded_token(&req));

		case IK_MODE_SHADOW:
			holds_lock = shadow_claim(&req, &replace);
			if (!req.durable)
				ik_claim_open(req.scope, req.key, req.fingerprint, req.now,
							  &req.policy, replace, holds_lock);
			ik_count(IK_CLAIMS_NEW, 1);
			ik_scope_count_call(IK_SCOPE_CLAIMS_SHADOW);
			return claim_result(fcinfo, CLAIM_NEW, NULL, req.now,
								unrecorded_token(&req));

		case IK_MODE_ENFORCE:
			break;
	}

	/* This transaction's own open claim: a duplicate of itself. */
	mine = ik_claim_find(req.scope, req.key);
	if (mine != NULL && mine->closed_subid == InvalidSubTransactionId)
		raise_in_progress(&req, "This transaction");

	switch (decide(&req, &row, &resumed))
	{
		case CLAIM_REPLAY:
			ik_store_fetch_reply(req.scope, req.key, &row);
			ik_count(IK_CLAIMS_REPLAY, 1);
			return claim_result(fcinfo, CLAIM_REPLAY, &row, row.created_at, NULL);

		case CLAIM_RESUME:
			ik_count(IK_CLAIMS_RESUME, 1);
			return claim_result(fcinfo, CLAIM_RESUME, &row, row.created_at,
								&resumed);

		case CLAIM_NEW:
			break;
	}

	if (row.found && !row.completed)
		ik_report_abandoned(req.scope, req.key, row.recovery_point);
	ik_count(IK_CLAIMS_NEW, 1);
	if (req.durable)
		return claim_result(fcinfo, CLAIM_NEW, NULL, req.now,
							start_durable_claim(&req, row.found));
	ik_claim_open(req.scope, req.key, req.fingerprint, req.now, &req.policy,
				  row.found, true);
	return claim_result(fcinfo, CLAIM_NEW, NULL, req.now, NULL);
}

/*
 * SELECT (idempotency.claim(...)).* is expanded by the planner into one
 * call per output column, each its own copy of the call: the second one
 * would find the claim the first made (IK409, "This transaction holds
 * key") and count a phantom call.  The last claim is remembered while the
 * memory of the row it was evaluated for lives (a reset of that memory
 * forgets it), and a copy of the same call (another expression with the
 * same arguments) in the same command returns the first result.  The
 * arguments and the result are the caller's: they live exactly as long.
 */
typedef struct LastClaim
{
	MemoryContextCallback forget;
	FmgrInfo   *flinfo;			/* the call that made it */
	TimestampTz xact_start;
	CommandId	cid;			/* the command id after it */
	Datum		args[CLAIM_NARGS];
	bool		argnull[CLAIM_NARGS];
	Datum		result;
} LastClaim;

static LastClaim *last_claim = NULL;

static void
forget_last_claim(void *arg)
{
	if (last_claim == arg)
		last_claim = NULL;
}

static bool
repeats_last_claim(FunctionCallInfo fcinfo)
{
	static const int16 arglen[CLAIM_NARGS] = {-1, -1, -1,
	sizeof(Interval), sizeof(Interval)};
	LastClaim  *last = last_claim;

	if (last == NULL || last->flinfo == fcinfo->flinfo ||
		last->xact_start != GetCurrentTransactionStartTimestamp() ||
		last->cid != GetCurrentCommandId(false) ||
		fcinfo->nargs != CLAIM_NARGS ||
		!equal(last->flinfo->fn_expr, fcinfo->flinfo->fn_expr))
		return false;
	for (int i = 0; i < CLAIM_NARGS; i++)
	{
		if (last->argnull[i] != PG_ARGISNULL(i))
			return false;
		if (!PG_ARGISNULL(i) &&
			!datum_image_eq(last->args[i], PG_GETARG_DATUM(i), false,
							arglen[i]))
			return false;
	}
	return true;
}

static void
remember_claim(FunctionCallInfo fcinfo, Datum result)
{
	LastClaim  *last = palloc(sizeof(LastClaim));

	last->flinfo = fcinfo->flinfo;
	last->xact_start = GetCurrentTransactionStartTimestamp();
	last->cid = GetCurrentCommandId(false);
	for (int i = 0; i < CLAIM_NARGS; i++)
	{
		last->argnull[i] = PG_ARGISNULL(i);
		last->args[i] = PG_GETARG_DATUM(i);
	}
	last->result = result;
	last->forget.func = forget_last_claim;
	last->forget.arg = last;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &last->forget);
	last_claim = last;
}

/*
 * claim(scope text, key text, fingerprint bytea,
 *		 lease interval DEFAULT NULL, wait interval DEFAULT NULL)
 *
 * The latency histogram counts every claim, failed ones included, with
 * any wait for the key.
 */
Datum
idempotency_claim(PG_FUNCTION_ARGS)
{
	Datum		result;

	/* in FROM (a function scan) a call is evaluated once: nothing to share */
	if (fcinfo->resultinfo != NULL)
		return ik_counted_call(claim, fcinfo, true);
	if (repeats_last_claim(fcinfo))
		return last_claim->result;
	result = ik_counted_call(claim, fcinfo, true);
	if (fcinfo->flinfo->fn_expr != NULL && fcinfo->nargs == CLAIM_NARGS)
		remember_claim(fcinfo, result);
	return result;
}

/* The open claim of (scope, key) in this transaction, or IK428. */
static IkClaim *
open_claim_or_error(text *scope, text *key, const char *funcname)
{
	IkClaim    *claim = ik_claim_find(scope, key);

	if (claim == NULL || claim->closed_subid != InvalidSubTransactionId)
		ereport(ERROR,
				(errcode(ERRCODE_IK_PROTOCOL_VIOLATION),
				 errmsg("idempotency key \"%s\" is not claimed by this transaction",
						text_to_cstring(key)),
				 errdetail("%s() needs an open claim of key \"%s\" in scope \"%s\" from idempotency.claim() in the same transaction.",
						   funcname, text_to_cstring(key),
						   text_to_cstring(scope)),
				 errhint("A durable claim, made with a lease, is closed with its lease_token.")));
	return claim;
}

/* The response a complete() call gives, checked. */
static IkResponse
arg_response(FunctionCallInfo fcinfo)
{
	IkResponse	response;

	response.status = ik_arg_status(fcinfo, 2, "response_status");
	response.body = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	response.headers = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);
	if (response.headers != NULL && !JB_ROOT_IS_OBJECT(response.headers))
		ereport(ERROR,
				(errcode(ERRCODE_IK_INVALID_ARGUMENT),
				 errmsg("argument \"response_headers\" must be a JSON object")));
	return response;
}

/*
 * Store the response of a claim this transaction holds open, or not:
 * returns false for one that is a transient failure (5xx) the policy does
 * not keep, so that a retry runs again.  In shadow mode only the holder
 * of the key's lock records, and the first response of a key is kept.
 */
static bool
store_response(IkClaim *claim, const IkResponse *response)
{
	const IkPolicy *policy = &claim->policy;
	IkWrite		w;

	if (response->status >= 500 && !policy->cache_5xx)
	{
		ik_count(IK_RELEASES_5XX, 1);
		return false;
	}
	ik_count(IK_COMPLETIONS, 1);
	if (policy->mode == IK_MODE_SHADOW && !claim->holds_lock)
		return true;
	memset(&w, 0, sizeof(w));
	w.scope = claim->scope;
	w.key = claim->key;
	w.fingerprint = claim->fingerprint;
	w.completed = true;
	w.response = *response;
	w.created_at = claim->created_at;
	w.expires_at = ik_time_plus_ms(claim->created_at, policy->ttl_ms);
	w.retain_until = ik_time_plus_ms(claim->created_at, policy->retain_ms);
	write_claimed_row(&w, claim->replace, claim->created_at);
	return true;
}

/*
 * complete(scope text, key text, response_status int,
 *			response_body jsonb DEFAULT NULL,
 *			response_headers jsonb DEFAULT NULL,
 *			lease_token uuid DEFAULT NULL) RETURNS text
 *
 * Returns 'stored'; 'released' for a 5xx status, which is not stored so
 * that a retry runs again; 'skipped' for a claim that recorded nothing
 * (off mode).
 */
static Datum
complete(FunctionCallInfo fcinfo)
{
	text	   *scope = ik_arg_name(fcinfo, 0, "scope");
	text	   *key = ik_arg_name(fcinfo, 1, "key");
	IkResponse	response = arg_response(fcinfo);
	IkClaim    *claim;
	const char *result;
	bool		freed = false;

	ik_scope_call_scope(scope);
	ik_require_writable("idempotency.complete()");

	if (!PG_ARGISNULL(5))
		result = ik_lease_complete(scope, key, PG_GETARG_UUID_P(5), &response);
	else
	{
		claim = open_claim_or_error(scope, key, "complete");
		if (claim->policy.mode == IK_MODE_OFF)
			result = "skipped";
		else if (store_response(claim, &response))
			result = "stored";
		else
		{
			result = "released";
			freed = true;
		}
		ik_claim_close(claim, freed);
	}
	PG_RETURN_TEXT_P(cstring_to_text(result));
}

Datum
idempotency_complete(PG_FUNCTION_ARGS)
{
	return ik_counted_call(complete, fcinfo, false);
}

/* release(scope text, key text, lease_token uuid DEFAULT NULL) */
static Datum
release(FunctionCallInfo fcinfo)
{
	text	   *scope = ik_arg_name(fcinfo, 0, "scope");
	text	   *key = ik_arg_name(fcinfo, 1, "key");

	ik_scope_call_scope(scope);
	ik_require_writable("idempotency.release()");

	if (PG_ARGISNULL(2))
		ik_claim_close(open_claim_or_error(scope, key, "release"), true);
	else
		ik_lease_release(scope, key, PG_GETARG_UUID_P(2));
	ik_count(IK_RELEASES, 1);
	PG_RETURN_VOID();
}

Datum
idempotency_release(PG_FUNCTION_ARGS)
{
	return ik_counted_call(release, fcinfo, false);
}

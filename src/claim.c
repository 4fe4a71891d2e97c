/*-------------------------------------------------------------------------
 *
 * claim.c
 *	  claim(), complete() and release(): the Idempotency-Key protocol.
 *
 * A claim first reads the key's row without any lock.  A completed row
 * inside its replay window is a replay, served from that read alone;
 * past the window it is a tombstone (IK410) until its retention ends.
 * Only a key with no live row takes the per-key lock (keylock.c) and reads
 * again, because the holder it may have waited for can have committed a
 * row in between.  If the row is still absent the claim is 'new': nothing
 * is written yet, complete() writes the one row, and the lock keeps
 * duplicates out until the transaction ends.
 *
 * Under REPEATABLE READ and SERIALIZABLE the second read cannot see a row
 * committed after the transaction's snapshot, so it is made with a fresh
 * snapshot instead; a row that the transaction's snapshot does not show
 * means the caller raced another request, and the claim fails with a
 * serialization error for the caller to retry (and then replay), as
 * PostgreSQL does for a concurrent update.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(idempotency_claim);
PG_FUNCTION_INFO_V1(idempotency_complete);
PG_FUNCTION_INFO_V1(idempotency_release);

/* Columns of claim()'s result row. */
#define CLAIM_NATTS 7

typedef enum ClaimOutcome
{
	CLAIM_NEW,
	CLAIM_REPLAY
} ClaimOutcome;

static const char *const outcome_names[] = {"new", "replay"};

static bool
same_bytes(bytea *a, bytea *b)
{
	return VARSIZE_ANY_EXHDR(a) == VARSIZE_ANY_EXHDR(b) &&
		memcmp(VARDATA_ANY(a), VARDATA_ANY(b), VARSIZE_ANY_EXHDR(a)) == 0;
}

/* timestamptz_to_str() reuses one buffer; messages need several at once */
static char *
time_str(TimestampTz t)
{
	return pstrdup(timestamptz_to_str(t));
}

/*
 * What a claim makes of an existing row: a replay, or an error.  Returns
 * false when the row is past retention and the key is new again.
 */
static bool
judge_row(const IkRow *row, text *scope, text *key, bytea *fingerprint,
		  TimestampTz now)
{
	if (now >= row->retain_until)
		return false;

	if (!same_bytes(row->fingerprint, fingerprint))
		ereport(ERROR,
				(errcode(ERRCODE_IK_FINGERPRINT_MISMATCH),
				 errmsg("idempotency key \"%s\" was used with a different request",
						text_to_cstring(key)),
				 errdetail("Key \"%s\" in scope \"%s\" was first used at %s for a request with another fingerprint.",
						   text_to_cstring(key), text_to_cstring(scope),
						   time_str(row->created_at)),
				 errhint("Use a new idempotency key for a different request.")));

	if (now >= row->expires_at)
		ereport(ERROR,
				(errcode(ERRCODE_IK_EXPIRED),
				 errmsg("idempotency key \"%s\" has expired",
						text_to_cstring(key)),
				 errdetail("Key \"%s\" in scope \"%s\" was first used at %s; its replay window ended at %s and it is retained until %s.",
						   text_to_cstring(key), text_to_cstring(scope),
						   time_str(row->created_at),
						   time_str(row->expires_at),
						   time_str(row->retain_until)),
				 errhint("A retry this late is not replayed; send the request with a new idempotency key if it is meant as a new one.")));

	return true;
}

static void
raise_in_progress(text *scope, text *key, int wait_ms)
{
	ereport(ERROR,
			(errcode(ERRCODE_IK_IN_PROGRESS),
			 errmsg("idempotency key \"%s\" is in use by a request in progress",
					text_to_cstring(key)),
			 errdetail("Another transaction holds key \"%s\" in scope \"%s\"; waited %d ms.",
					   text_to_cstring(key), text_to_cstring(scope), wait_ms),
			 errhint("Retry once the first request has finished, or claim with a wait interval.")));
}

static Datum
claim_result(FunctionCallInfo fcinfo, ClaimOutcome outcome, const IkRow *row,
			 TimestampTz first_seen)
{
	TupleDesc	tupdesc;
	Datum		values[CLAIM_NATTS];
	bool		nulls[CLAIM_NATTS];

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	memset(nulls, true, sizeof(nulls));
	values[0] = CStringGetTextDatum(outcome_names[outcome]);
	nulls[0] = false;
	if (outcome == CLAIM_REPLAY)
	{
		values[1] = Int32GetDatum(row->response_status);
		nulls[1] = row->status_isnull;
		values[2] = PointerGetDatum(row->response_headers);
		nulls[2] = (row->response_headers == NULL);
		values[3] = PointerGetDatum(row->response_body);
		nulls[3] = (row->response_body == NULL);
		values[4] = PointerGetDatum(row->recovery_point);
		nulls[4] = (row->recovery_point == NULL);
	}
	values[5] = TimestampTzGetDatum(first_seen);
	nulls[5] = false;
	/* column 6, lease_token, is set by durable claims only */

	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

/*
 * The claim proper.  Returns CLAIM_REPLAY with the row to
 * replay, or CLAIM_NEW holding the key's lock; then row->found says
 * whether a row past retention must be overwritten.
 */
static ClaimOutcome
decide(text *scope, text *key, bytea *fingerprint, int wait_ms,
	   TimestampTz now, IkRow *row)
{
	IkRow		seen;

	ik_store_lookup(scope, key, false, &seen);
	if (seen.found && judge_row(&seen, scope, key, fingerprint, now))
	{
		*row = seen;
		return CLAIM_REPLAY;
	}

	if (!ik_lock_key(ik_key_hash(scope, key), wait_ms))
		raise_in_progress(scope, key, wait_ms);

	ik_store_lookup(scope, key, IsolationUsesXactSnapshot(), row);
	if (row->found && IsolationUsesXactSnapshot() &&
		(!seen.found || row->xmin != seen.xmin))
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to a concurrent claim of idempotency key \"%s\"",
						text_to_cstring(key)),
				 errdetail("Another transaction claimed key \"%s\" in scope \"%s\" after this transaction's snapshot was taken.",
						   text_to_cstring(key), text_to_cstring(scope)),
				 errhint("Retry the transaction; the retry replays the other request's response.")));

	if (row->found && judge_row(row, scope, key, fingerprint, now))
		return CLAIM_REPLAY;
	return CLAIM_NEW;
}

/*
 * claim(scope text, key text, fingerprint bytea,
 *		 lease interval DEFAULT NULL, wait interval DEFAULT NULL)
 */
Datum
idempotency_claim(PG_FUNCTION_ARGS)
{
	text	   *scope = ik_arg_name(fcinfo, 0, "scope");
	text	   *key = ik_arg_name(fcinfo, 1, "key");
	bytea	   *fingerprint = ik_arg_fingerprint(fcinfo, 2, "fingerprint");
	bool		no_lease;
	bool		wait_isnull;
	int			wait_ms;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	IkClaim    *mine;
	IkRow		row;
	ClaimOutcome outcome;

	(void) ik_arg_interval_ms(fcinfo, 3, "lease", &no_lease);
	if (!no_lease)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("durable claims with a lease are not supported by this version")));
	wait_ms = (int) ik_arg_interval_ms(fcinfo, 4, "wait", &wait_isnull);
	if (wait_isnull)
		wait_ms = ik_lock_timeout_ms;

	if (ik_retain_s < ik_ttl_s)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("idempotency.retain must not be shorter than idempotency.ttl"),
				 errdetail("idempotency.retain is %d s and idempotency.ttl is %d s.",
						   ik_retain_s, ik_ttl_s)));

	/* This transaction's own open claim: a duplicate of itself. */
	mine = ik_claim_find(scope, key);
	if (mine != NULL && mine->closed_subid == InvalidSubTransactionId)
		raise_in_progress(scope, key, 0);

	outcome = decide(scope, key, fingerprint, wait_ms, now, &row);

	if (outcome == CLAIM_REPLAY)
		PG_RETURN_DATUM(claim_result(fcinfo, CLAIM_REPLAY, &row,
									 row.created_at));

	ik_claim_open(scope, key, fingerprint, now, ik_ttl_s, ik_retain_s,
				  row.found);
	PG_RETURN_DATUM(claim_result(fcinfo, CLAIM_NEW, NULL, now));
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
						   text_to_cstring(scope))));
	return claim;
}

/*
 * complete(scope text, key text, response_status int,
 *			response_body jsonb DEFAULT NULL,
 *			response_headers jsonb DEFAULT NULL,
 *			lease_token uuid DEFAULT NULL) RETURNS text
 *
 * Returns 'stored', or 'released' for a 5xx status, which is not stored so
 * that a retry runs again.
 */
Datum
idempotency_complete(PG_FUNCTION_ARGS)
{
	text	   *scope = ik_arg_name(fcinfo, 0, "scope");
	text	   *key = ik_arg_name(fcinfo, 1, "key");
	IkResponse	response;
	IkClaim    *claim;

	response.status = ik_arg_status(fcinfo, 2, "response_status");
	response.body = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	response.headers = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);
	if (response.headers != NULL && !JB_ROOT_IS_OBJECT(response.headers))
		ereport(ERROR,
				(errcode(ERRCODE_IK_INVALID_ARGUMENT),
				 errmsg("argument \"response_headers\" must be a JSON object")));
	if (!PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("durable claims with a lease are not supported by this version")));

	claim = open_claim_or_error(scope, key, "complete");

	if (response.status >= 500)
	{
		ik_claim_close(claim);
		PG_RETURN_TEXT_P(cstring_to_text("released"));
	}

	ik_store_save(scope, key, claim->fingerprint, claim->created_at,
				  TimestampTzPlusMilliseconds(claim->created_at,
											  (int64) claim->ttl_s * 1000),
				  TimestampTzPlusMilliseconds(claim->created_at,
											  (int64) claim->retain_s * 1000),
				  claim->replace, &response);
	ik_claim_close(claim);
	PG_RETURN_TEXT_P(cstring_to_text("stored"));
}

/* release(scope text, key text, lease_token uuid DEFAULT NULL) */
Datum
idempotency_release(PG_FUNCTION_ARGS)
{
	text	   *scope = ik_arg_name(fcinfo, 0, "scope");
	text	   *key = ik_arg_name(fcinfo, 1, "key");

	if (!PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("durable claims with a lease are not supported by this version")));

	ik_claim_close(open_claim_or_error(scope, key, "release"));
	PG_RETURN_VOID();
}

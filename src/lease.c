/*-------------------------------------------------------------------------
 *
 * lease.c
 *	  Durable claims: leases, checkpoints, and fencing by lease token.
 *
 * A payment that calls a processor cannot hold one transaction open for
 * the call.  claim(..., lease => interval) therefore writes the key's row
 * in progress at once, with a random lease token, and the caller commits
 * it before calling out.  Later transactions name the token to record a
 * recovery point (checkpoint(), which also renews the lease), and to
 * complete or release the claim.  If the lease lapses, the next claim of
 * the same request resumes it under a new token (claim.c).
 *
 * The token is the fence: every write here locks the row and checks, on
 * the version it locked, that the token still holds it.  Once a claim has
 * been resumed, a slow worker still holding the old token finds another
 * token there and gets IK409; a write that finds no claim in progress at
 * all is a protocol violation (IK428).
 *
 * A token acts on its row in every mode: a claim made under 'enforce' is
 * finished under the rules it was made under, whatever the scope's policy
 * has become since.  The token itself keeps what of those rules the row
 * does not: a claim made under 'off' or 'shadow' recorded nothing, and its
 * token is a version 8 UUID, so that finishing it stays a no-op whatever
 * the mode becomes; a recorded claim's token is a version 7 UUID with one
 * bit of its random part set to the claim's 5xx rule (cache_5xx), which
 * complete() applies.  Version 4 tokens were recorded by libraries before
 * 0.3.0, which kept no 5xx rule: those claims follow the scope's current
 * one, as they always did.  A resume's token inherits the kind and rule of
 * the token it replaces.
 *
 * The windows move with the lease: a row in progress is kept at least a
 * replay window (ttl) past the end of its lease, so that its retention
 * can never end while the lease is live nor right after it lapses.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include "port.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(idempotency_checkpoint);

/* UUID versions of lease tokens (RFC 9562). */
#define TOKEN_VERSION_LEGACY	4	/* recorded, before 0.3.0: no 5xx rule */
#define TOKEN_VERSION_RECORDED	7	/* recorded, with the claim's 5xx rule */
#define TOKEN_VERSION_UNRECORDED 8

/* The bit of a version 7 token's rand_b that is its claim's cache_5xx. */
#define TOKEN_CACHE_5XX_BIT		0x20

static int
token_version(const pg_uuid_t *token)
{
	return token->data[6] >> 4;
}

/* Random bits, then the version and the RFC 9562 variant. */
static void
random_token(pg_uuid_t *token, int version)
{
	if (!pg_strong_random(token->data, UUID_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random lease token")));
	token->data[6] = (token->data[6] & 0x0f) | (version << 4);
	token->data[8] = (token->data[8] & 0x3f) | 0x80;
}

/*
 * A new lease token.  A recorded one is a version 7 UUID: milliseconds
 * since the Unix epoch, then random bits, one of which keeps the 5xx rule.
 */
void
ik_new_lease_token(pg_uuid_t *token, bool recorded, bool cache_5xx)
{
	uint64		unix_ms;

	if (!recorded)
	{
		random_token(token, TOKEN_VERSION_UNRECORDED);
		return;
	}
	random_token(token, TOKEN_VERSION_RECORDED);
	unix_ms = (uint64) (GetCurrentTimestamp() / 1000 +
						(int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) *
						SECS_PER_DAY * 1000);
	for (int i = 0; i < 6; i++)
		token->data[i] = (uint8) (unix_ms >> (8 * (5 - i)));
	if (cache_5xx)
		token->data[8] |= TOKEN_CACHE_5XX_BIT;
	else
		token->data[8] &= ~TOKEN_CACHE_5XX_BIT;
}

/* The token of a resume: of the kind, and with the rule, of the old one. */
static void
next_lease_token(const pg_uuid_t *old, pg_uuid_t *token)
{
	if (token_version(old) == TOKEN_VERSION_RECORDED)
		ik_new_lease_token(token, true,
						   (old->data[8] & TOKEN_CACHE_5XX_BIT) != 0);
	else
		random_token(token, TOKEN_VERSION_LEGACY);
}

static bool
token_unrecorded(const pg_uuid_t *token)
{
	return token_version(token) == TOKEN_VERSION_UNRECORDED;
}

/*
 * The 5xx rule of a token's claim: the one kept in the token, or for a
 * claim recorded before 0.3.0 the scope's current one.
 */
static bool
token_cache_5xx(text *scope, const pg_uuid_t *token)
{
	IkPolicy	policy;

	if (token_version(token) == TOKEN_VERSION_RECORDED)
		return (token->data[8] & TOKEN_CACHE_5XX_BIT) != 0;
	ik_policy_for(scope, &policy);
	return policy.cache_5xx;
}

/*
 * The retention a row needs for a lease that ends at lease_end: its
 * replay window past that end, and never less than it has.
 */
TimestampTz
ik_retention_for_lease(TimestampTz created_at, TimestampTz expires_at,
					   TimestampTz retain_until, TimestampTz lease_end)
{
	int64		ttl_ms;
	TimestampTz needed;

	if (TIMESTAMP_NOT_FINITE(expires_at))
		return retain_until;
	ttl_ms = (expires_at - created_at) / 1000;
	needed = ik_time_plus_ms(lease_end, ttl_ms);
	return Max(retain_until, needed);
}

/* What a row in progress is, as a row to write back changed. */
void
ik_row_to_write(text *scope, text *key, const IkRow *row, IkWrite *w)
{
	memset(w, 0, sizeof(IkWrite));
	w->scope = scope;
	w->key = key;
	w->fingerprint = row->fingerprint;
	w->completed = row->completed;
	w->response = row->response;
	w->recovery_point = row->recovery_point;
	w->lease_token = row->lease_token;
	w->lease_ms = row->lease_ms;
	w->lease_expires_at = row->lease_expires_at;
	w->created_at = row->created_at;
	w->expires_at = row->expires_at;
	w->retain_until = row->retain_until;
}

static bool
holds(const IkRow *row, const pg_uuid_t *token)
{
	return row->found && !row->completed &&
		memcmp(row->lease_token.data, token->data, UUID_LEN) == 0;
}

/*
 * The token does not hold the key: say why.  The key has a durable claim
 * in progress under another token (IK409: this caller was fenced off), or
 * none at all (IK428).
 */
static void
raise_lease_lost(text *scope, text *key, const IkRow *row,
				 const char *funcname)
{
	if (row->found && !row->completed)
		ereport(ERROR,
				(errcode(ERRCODE_IK_IN_PROGRESS),
				 errmsg("lease token of idempotency key \"%s\" is stale",
						text_to_cstring(key)),
				 errdetail("The durable claim of key \"%s\" in scope \"%s\" is held under another lease token: another request resumed it after this token's lease lapsed, or this token never held it.",
						   text_to_cstring(key), text_to_cstring(scope)),
				 errhint("Stop working on this request: another worker holds it now.")));
	ereport(ERROR,
			(errcode(ERRCODE_IK_PROTOCOL_VIOLATION),
			 errmsg("idempotency key \"%s\" has no durable claim in progress",
					text_to_cstring(key)),
			 errdetail("%s() with a lease token needs a durable claim of key \"%s\" in scope \"%s\" in progress; it is %s.",
					   funcname, text_to_cstring(key), text_to_cstring(scope),
					   row->found ? "completed" : "not claimed")));
}

/*
 * Lock the durable claim of (scope, key) that token holds, into *row.
 * Returns false when there is nothing to do: the token's claim recorded
 * nothing (it was made in 'off' or 'shadow' mode, or under a library
 * before version 0.2.0 in a scope that is not enforced now).  Raises
 * IK409 or IK428 when the token does not hold the key.
 */
static bool
lock_lease(text *scope, text *key, const pg_uuid_t *token,
		   const char *funcname, IkRow *row)
{
	for (;;)
	{
		IkPolicy	policy;

		ik_store_lookup(scope, key, false, row);
		if (!holds(row, token))
		{
			if (!row->found || row->completed)
			{
				if (token_unrecorded(token))
					return false;
				ik_policy_for(scope, &policy);
				if (policy.mode != IK_MODE_ENFORCE)
					return false;
			}
			raise_lease_lost(scope, key, row, funcname);
		}
		switch (ik_store_lock(scope, key, row, -1))
		{
			case IK_ROW_LOCKED:
				if (!holds(row, token))
					raise_lease_lost(scope, key, row, funcname);
				return true;
			case IK_ROW_GONE:
				continue;		/* deleted meanwhile: look again */
			case IK_ROW_BUSY:
				break;
		}
		elog(ERROR, "could not lock the durable claim of an idempotency key");
	}
}

/*
 * End the lease of a locked durable claim that recorded a recovery point,
 * and keep its row: the payment may have gone through, so that the next
 * claim resumes from that point, not from scratch.
 */
static void
end_lease_keep_row(text *scope, text *key, const IkRow *row)
{
	IkWrite		w;
	TimestampTz now = GetCurrentTimestamp();

	ik_row_to_write(scope, key, row, &w);
	w.lease_expires_at = Min(row->lease_expires_at, now);
	w.retain_until = ik_retention_for_lease(row->created_at, row->expires_at,
											row->retain_until, now);
	ik_store_update(scope, key, row, &w);
}

/*
 * Store the response of a durable claim.  A transient failure (a 5xx that
 * the claim's rule does not keep) is not stored: a claim that recorded a
 * recovery point keeps its row with the lease ended, since a processor's
 * 502 or 504 is an unknown outcome and the retry must resume from that
 * point; one that recorded none frees the key.  Returns what complete()
 * returns.
 */
const char *
ik_lease_complete(text *scope, text *key, const pg_uuid_t *token,
				  const IkResponse *response)
{
	IkRow		row;
	IkWrite		w;

	if (!lock_lease(scope, key, token, "complete", &row))
		return "skipped";
	if (response->status >= 500 && !token_cache_5xx(scope, token))
	{
		ik_count(IK_RELEASES_5XX, 1);
		if (row.recovery_point == NULL)
			ik_store_delete(scope, key, &row);
		else
			end_lease_keep_row(scope, key, &row);
		return "released";
	}
	ik_row_to_write(scope, key, &row, &w);
	w.completed = true;
	w.response = *response;
	ik_store_update(scope, key, &row, &w);
	ik_count(IK_COMPLETIONS, 1);
	return "stored";
}

/*
 * release() with a lease token: the key is free for a retry, unless the
 * claim recorded a recovery point, which is kept as a 5xx keeps it.
 */
void
ik_lease_release(text *scope, text *key, const pg_uuid_t *token)
{
	IkRow		row;

	if (!lock_lease(scope, key, token, "release", &row))
		return;
	if (row.recovery_point == NULL)
		ik_store_delete(scope, key, &row);
	else
		end_lease_keep_row(scope, key, &row);
}

/*
 * Hand a lapsed durable claim, locked by the caller, to a new holder:
 * a new token, of the kind and rule of the old one, and a new lease, with
 * the windows moved with it.
 */
void
ik_lease_take_over(text *scope, text *key, const IkRow *locked,
				   pg_uuid_t *token, int64 lease_ms)
{
	IkWrite		w;

	next_lease_token(&locked->lease_token, token);
	ik_row_to_write(scope, key, locked, &w);
	w.lease_token = *token;
	w.lease_ms = lease_ms;
	w.lease_expires_at = ik_time_plus_ms(GetCurrentTimestamp(), lease_ms);
	w.retain_until = ik_retention_for_lease(locked->created_at,
											locked->expires_at,
											locked->retain_until,
											w.lease_expires_at);
	ik_store_update(scope, key, locked, &w);
}

/*
 * checkpoint(scope text, key text, recovery_point text, lease_token uuid)
 *
 * Records progress and renews the lease for its duration.
 */
static Datum
checkpoint(FunctionCallInfo fcinfo)
{
	text	   *scope = ik_arg_name(fcinfo, 0, "scope");
	text	   *key = ik_arg_name(fcinfo, 1, "key");
	text	   *recovery_point = ik_arg_text(fcinfo, 2, "recovery_point",
											 IK_MAX_RECOVERY_POINT_BYTES);
	pg_uuid_t  *token = ik_arg_token(fcinfo, 3, "lease_token");
	IkRow		row;
	IkWrite		w;

	ik_scope_call_scope(scope);
	ik_require_writable("idempotency.checkpoint()");

	if (lock_lease(scope, key, token, "checkpoint", &row))
	{
		ik_row_to_write(scope, key, &row, &w);
		w.recovery_point = recovery_point;
		w.lease_expires_at = ik_time_plus_ms(GetCurrentTimestamp(),
											 row.lease_ms);
		w.retain_until = ik_retention_for_lease(row.created_at, row.expires_at,
												row.retain_until,
												w.lease_expires_at);
		ik_store_update(scope, key, &row, &w);
	}
	PG_RETURN_VOID();
}

Datum
idempotency_checkpoint(PG_FUNCTION_ARGS)
{
	return ik_counted_call(checkpoint, fcinfo, false);
}

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
 * The token is the fence: every write here names it in its WHERE clause,
 * so once a claim has been resumed, a slow worker still holding the old
 * token finds nothing to write and gets IK409.  A write that finds no row
 * in progress at all is a protocol violation (IK428).
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include "port.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(idempotency_checkpoint);

/* A version 4 (random) UUID, as gen_random_uuid() makes. */
void
ik_new_lease_token(pg_uuid_t *token)
{
	if (!pg_strong_random(token->data, UUID_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random lease token")));
	token->data[6] = (token->data[6] & 0x0f) | 0x40;
	token->data[8] = (token->data[8] & 0x3f) | 0x80;
}

/*
 * A lease write found nothing to write: say why.  The key has a durable
 * claim in progress under another token (IK409: this caller was fenced
 * off), or none at all (IK428).
 */
static void
raise_lease_lost(text *scope, text *key, const char *funcname)
{
	IkRow		row;

	ik_store_lookup(scope, key, true, &row);
	if (row.found && !row.completed)
		ereport(ERROR,
				(errcode(ERRCODE_IK_IN_PROGRESS),
				 errmsg("lease token of idempotency key \"%s\" is stale",
						text_to_cstring(key)),
				 errdetail("The durable claim of key \"%s\" in scope \"%s\" was resumed under another lease token after this one lapsed.",
						   text_to_cstring(key), text_to_cstring(scope)),
				 errhint("Stop working on this request: another worker holds it now.")));
	ereport(ERROR,
			(errcode(ERRCODE_IK_PROTOCOL_VIOLATION),
			 errmsg("idempotency key \"%s\" has no durable claim in progress",
					text_to_cstring(key)),
			 errdetail("%s() with a lease token needs a durable claim of key \"%s\" in scope \"%s\" in progress; it is %s.",
					   funcname, text_to_cstring(key), text_to_cstring(scope),
					   row.found ? "completed" : "not claimed")));
}

void
ik_lease_complete(text *scope, text *key, pg_uuid_t *token,
				  const IkResponse *response)
{
	if (!ik_store_finish(scope, key, token, response))
		raise_lease_lost(scope, key, "complete");
}

/* release(), or complete() with a 5xx: the key is free for a retry. */
void
ik_lease_release(text *scope, text *key, pg_uuid_t *token)
{
	if (!ik_store_forget(scope, key, token))
		raise_lease_lost(scope, key, "release");
}

/*
 * A durable claim that nobody finished before its retention ended is a
 * payment whose outcome is unknown: someone must reconcile it with the
 * processor.  Say so in the server log, with what is known of it.
 */
void
ik_report_abandoned(text *scope, text *key, text *recovery_point)
{
	ik_count(IK_ABANDONED_CLAIMS, 1);
	ereport(LOG,
			(errmsg("idempotency: abandoned durable claim of key \"%s\" in scope \"%s\"",
					text_to_cstring(key), text_to_cstring(scope)),
			 errdetail("Its last recovery point was %s; the payment must be reconciled.",
					   recovery_point ? quote_literal_cstr(text_to_cstring(recovery_point))
					   : "never recorded")));
}

/*
 * checkpoint(scope text, key text, recovery_point text, lease_token uuid)
 *
 * In off and shadow modes durable claims record nothing, and neither does
 * this.
 */
static Datum
checkpoint(FunctionCallInfo fcinfo)
{
	text	   *scope = ik_arg_name(fcinfo, 0, "scope");
	text	   *key = ik_arg_name(fcinfo, 1, "key");
	text	   *recovery_point = ik_arg_text(fcinfo, 2, "recovery_point",
											 IK_MAX_RECOVERY_POINT_BYTES);
	pg_uuid_t  *token = ik_arg_token(fcinfo, 3, "lease_token");
	IkPolicy	policy;

	ik_require_writable("idempotency.checkpoint()");

	ik_policy_for(scope, &policy);
	if (policy.mode == IK_MODE_ENFORCE &&
		!ik_store_checkpoint(scope, key, token, recovery_point,
							 GetCurrentTimestamp()))
		raise_lease_lost(scope, key, "checkpoint");
	PG_RETURN_VOID();
}

Datum
idempotency_checkpoint(PG_FUNCTION_ARGS)
{
	return ik_counted_call(checkpoint, fcinfo, false);
}

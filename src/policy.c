/*-------------------------------------------------------------------------
 *
 * policy.c
 *	  Which mode, windows and 5xx rule apply to a scope.
 *
 * The GUCs give the defaults; a row of idempotency.policies overrides them
 * column by column for its scope.  Scopes without a row follow
 * idempotency.mode, except that under 'enforce' idempotency.enforce_percent
 * enforces only a stable, hash-chosen share of them and shadows the rest:
 * the same scope always falls on the same side, and raising the percentage
 * only adds scopes.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include "commands/trigger.h"
#include "common/hashfn.h"
#include "utils/builtins.h"
#include "utils/inval.h"

PG_FUNCTION_INFO_V1(idempotency_policies_changed);

/* Seed of the rollout hash; changing it would reshuffle every rollout. */
#define IK_ROLLOUT_SEED 0x49444D50

IkMode
ik_mode_from_name(const char *name)
{
	if (strcmp(name, "off") == 0)
		return IK_MODE_OFF;
	if (strcmp(name, "shadow") == 0)
		return IK_MODE_SHADOW;
	if (strcmp(name, "enforce") == 0)
		return IK_MODE_ENFORCE;
	ereport(ERROR,
			(errcode(ERRCODE_IK_INVALID_ARGUMENT),
			 errmsg("invalid idempotency mode \"%s\"", name),
			 errhint("The modes are off, shadow and enforce.")));
	pg_unreachable();
}

/* Is this scope in the enforced share of the rollout? */
static bool
scope_enforced(text *scope)
{
	uint64		h = hash_bytes_extended((const unsigned char *) VARDATA_ANY(scope),
										VARSIZE_ANY_EXHDR(scope),
										IK_ROLLOUT_SEED);

	return (int) (h % 100) < ik_enforce_percent;
}

void
ik_policy_for(text *scope, IkPolicy *policy)
{
	policy->mode = (IkMode) ik_mode;
	policy->ttl_ms = (int64) ik_ttl_s * 1000;
	policy->retain_ms = (int64) ik_retain_s * 1000;
	policy->cache_5xx = false;

	if (!ik_store_policy(scope, policy) &&
		policy->mode == IK_MODE_ENFORCE && !scope_enforced(scope))
		policy->mode = IK_MODE_SHADOW;

	if (policy->retain_ms < policy->ttl_ms)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("retention of scope \"%s\" is shorter than its replay window",
						text_to_cstring(scope)),
				 errdetail("The retention is %lld ms and the replay window %lld ms, from idempotency.retain and idempotency.ttl or the scope's row in idempotency.policies.",
						   (long long) policy->retain_ms, (long long) policy->ttl_ms)));
}

/*
 * Statement trigger on idempotency.policies.  Changing a table's rows does
 * not invalidate its relcache entry; this trigger does, so that the
 * backends' knowledge of the table (store.c) is refreshed once the change
 * commits, and at once in the changing transaction itself.
 */
Datum
idempotency_policies_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("idempotency.policies_changed() must be called as a trigger")));
	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}

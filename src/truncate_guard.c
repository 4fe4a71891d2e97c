/*-------------------------------------------------------------------------
 *
 * truncate_guard.c
 *	  Refusing a TRUNCATE of idempotency.keys that nobody meant.
 *
 * TRUNCATE of the keys removes the memory of every request, so each
 * retry in flight would be charged again.  A BEFORE TRUNCATE trigger,
 * set ENABLE ALWAYS so that session_replication_role does not switch it
 * off, refuses it unless a superuser set idempotency.allow_truncate in
 * the session.  Calling the trigger loads the library, so the guard holds
 * in sessions that never loaded it, and a placeholder for the setting
 * made by anyone but a superuser is discarded when the library loads.  It
 * stops accidents, not superusers; DROP EXTENSION is not guarded.
 *
 * On a logical-replication subscriber the apply worker passes: it applies
 * what the publisher's guard let through.
 *
 * Under Citus the trigger exists when idempotency.distribute() runs, so
 * Citus copies it to every shard (keys_<shardid>).  A TRUNCATE of the
 * distributed table first truncates the shell on the node where it was
 * issued, where the guard decides; the shards are truncated afterwards by
 * Citus from its own connections, which a superuser's session setting
 * does not reach, so the copies on shards let it pass.  A shard cannot be
 * truncated directly without citus.enable_manual_changes_to_shards.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include "commands/trigger.h"
#include "replication/logicalworker.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

PG_FUNCTION_INFO_V1(idempotency_keys_truncate_guard);

/* Is the relation a Citus shard of the keys, named keys_<shardid>? */
static bool
is_shard(Relation rel)
{
	const char *name = RelationGetRelationName(rel);
	const char *digits = name + strlen("keys_");

	if (strncmp(name, "keys_", strlen("keys_")) != 0 || *digits == '\0')
		return false;
	for (; *digits != '\0'; digits++)
	{
		if (*digits < '0' || *digits > '9')
			return false;
	}
	return true;
}

Datum
idempotency_keys_truncate_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("idempotency.keys_truncate_guard() must be called as a TRUNCATE trigger")));
	if (is_shard(trigdata->tg_relation))
		return PointerGetDatum(NULL);

	/*
	 * A logical-replication apply worker replays a TRUNCATE that the
	 * publisher allowed (its own guard refused any other).  Refused here, it
	 * would stop the subscription for good: the worker retries the same
	 * transaction every few seconds, nothing after it is applied, and the
	 * publisher keeps its WAL.  The subscriber's keys follow the publisher's.
	 */
	if (IsLogicalWorker())
		return PointerGetDatum(NULL);
	if (!ik_allow_truncate)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("TRUNCATE of %s.%s is refused",
						get_namespace_name(RelationGetNamespace(trigdata->tg_relation)),
						RelationGetRelationName(trigdata->tg_relation)),
				 errdetail("It would delete every idempotency key, so every retry of a request already charged would be charged again."),
				 errhint("Delete rows past retention with idempotency.reap(). To truncate anyway, a superuser runs SET idempotency.allow_truncate = on in the session first.")));
	return PointerGetDatum(NULL);
}

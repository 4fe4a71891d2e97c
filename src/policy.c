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
 * A committed change of idempotency.policies applies to the next claim in
 * every session: the table is read with a fresh snapshot (so an open
 * REPEATABLE READ transaction sees the change too), and while it is known
 * to be empty it is not read at all.  What is known is forgotten at every
 * relcache invalidation of the table, which its triggers send for every
 * change (idempotency_policies_changed()): a statement trigger for local
 * changes and TRUNCATE, and a row trigger, since logical replication's
 * apply worker fires row triggers but not statement triggers.
 *
 * Under Citus the table is a reference table: every node reads its own
 * placement of it (citus.c), on which Citus fires the same triggers, and
 * what is known is keyed to the relation actually read.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"
#include "citus.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "compat.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

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

/*
 * Whether idempotency.policies is known to have no rows, learned at the
 * table's invalidation count policies_seen.
 */
static bool policies_known = false;
static bool policies_empty;
static uint64 policies_seen;
static IkTable *policies_seen_table;

/* The shell, or under Citus this node's placement of the reference table. */
static IkTable *
policies_open(Relation *rel)
{
	Relation	shell = ik_table_open(&ik_policies_table, AccessShareLock);
	int64		shardid;
	Oid			placement = ik_citus_policies_placement(ik_policies_table.relid,
														&shardid);
	IkTable    *table;

	if (!OidIsValid(placement))
	{
		*rel = shell;
		return &ik_policies_table;
	}
	table_close(shell, NoLock);
	table = ik_shard_table(&ik_policies_table, placement, shardid);
	*rel = ik_table_open(table, AccessShareLock);
	return table;
}

static bool
has_rows(Relation rel, Snapshot snapshot)
{
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	TableScanDesc scan = table_beginscan(rel, snapshot, 0, NULL);
	bool		found = table_scan_getnextslot(scan, ForwardScanDirection,
											   slot);

	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	return found;
}

/*
 * Apply the policy row of a scope, if there is one, over *policy: each
 * column that is not NULL overrides.  Returns whether there was one.
 */
static bool
read_policy(text *scope, IkPolicy *policy)
{
	IkTable    *table = policies_seen_table;
	Relation	rel;
	Relation	index;
	Snapshot	snapshot;
	ScanKeyData skey;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	bool		found;
	bool		isnull;
	Datum		d;

	/* A change committed since this transaction's last look applies now. */
	AcceptInvalidationMessages();
	if (policies_known && table != NULL &&
		policies_seen == table->invalidations &&
		ik_policies_table.valid && policies_empty)
		return false;

	table = policies_open(&rel);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	if (!policies_known || table != policies_seen_table ||
		policies_seen != table->invalidations)
	{
		uint64		seen = table->invalidations;

		policies_empty = !has_rows(rel, snapshot);
		/* an invalidation while we looked: look again next time */
		policies_known = (seen == table->invalidations);
		policies_seen = seen;
		policies_seen_table = table;
	}
	if (policies_empty)
	{
		UnregisterSnapshot(snapshot);
		table_close(rel, NoLock);
		return false;
	}

	index = index_open(table->lookup_index, AccessShareLock);
	ScanKeyEntryInitialize(&skey, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_TEXTEQ,
						   PointerGetDatum(scope));
	slot = table_slot_create(rel, NULL);
	scan = ik_index_beginscan(rel, index, snapshot, 1);
	index_rescan(scan, &skey, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	if (found)
	{
		slot_getallattrs(slot);
		d = ik_table_value(table, slot, IK_POLICIES_MODE, &isnull);
		if (!isnull)
			policy->mode = ik_mode_from_name(TextDatumGetCString(d));
		d = ik_table_value(table, slot, IK_POLICIES_TTL, &isnull);
		if (!isnull)
			policy->ttl_ms = ik_interval_ms(DatumGetIntervalP(d));
		d = ik_table_value(table, slot, IK_POLICIES_RETAIN, &isnull);
		if (!isnull)
			policy->retain_ms = ik_interval_ms(DatumGetIntervalP(d));
		d = ik_table_value(table, slot, IK_POLICIES_CACHE_5XX, &isnull);
		if (!isnull)
			policy->cache_5xx = DatumGetBool(d);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, NoLock);
	UnregisterSnapshot(snapshot);
	table_close(rel, NoLock);
	return found;
}

/*
 * The last windows raise_retain() warned of in this backend, so that a
 * busy backend logs a bad configuration once, not once per claim.
 */
static int64 warned_ttl_ms = -1;
static int64 warned_retain_ms = -1;
static uint32 warned_scope_hash = 0;

/*
 * A retention shorter than the replay window is a configuration mistake:
 * idempotency.ttl raised in postgresql.conf without idempotency.retain, or
 * a policy row that sets only ttl.  The setting cannot be refused where
 * it is made (a reload assigns the two in any order, and a policy row's
 * defaults may change later), and refusing the claims would stop every
 * payment, replays included.  So the retention is raised to the window,
 * which keeps every promise the window makes, and the mistake is a
 * WARNING, once per backend for each bad pair of windows.
 */
static void
raise_retain(text *scope, IkPolicy *policy, bool from_row)
{
	uint32		scope_hash = from_row ?
		hash_bytes((const unsigned char *) VARDATA_ANY(scope),
				   VARSIZE_ANY_EXHDR(scope)) : 0;

	if (policy->ttl_ms != warned_ttl_ms ||
		policy->retain_ms != warned_retain_ms ||
		scope_hash != warned_scope_hash)
	{
		warned_ttl_ms = policy->ttl_ms;
		warned_retain_ms = policy->retain_ms;
		warned_scope_hash = scope_hash;
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("retention of scope \"%s\" is shorter than its replay window; it is raised to the replay window",
						text_to_cstring(scope)),
				 errdetail("The retention is %lld ms and the replay window %lld ms, from %s.",
						   (long long) policy->retain_ms,
						   (long long) policy->ttl_ms,
						   from_row ?
						   "the scope's row in idempotency.policies and the idempotency.ttl and idempotency.retain defaults" :
						   "idempotency.retain and idempotency.ttl"),
				 errhint("Set idempotency.retain, or the row's retain, to at least the replay window.")));
	}
	policy->retain_ms = policy->ttl_ms;
}

void
ik_policy_for(text *scope, IkPolicy *policy)
{
	bool		from_row;

	policy->mode = (IkMode) ik_mode;
	policy->ttl_ms = (int64) ik_ttl_s * 1000;
	policy->retain_ms = (int64) ik_retain_s * 1000;
	policy->cache_5xx = false;

	from_row = read_policy(scope, policy);
	if (!from_row &&
		policy->mode == IK_MODE_ENFORCE && !scope_enforced(scope))
		policy->mode = IK_MODE_SHADOW;

	if (policy->retain_ms < policy->ttl_ms)
		raise_retain(scope, policy, from_row);
}

/*
 * A row of idempotency.policies whose replay window is longer than the
 * retention it gets (its own, or the default): its claims will raise the
 * retention to the window (raise_retain()).  Say so to whoever writes the
 * row, as the CHECK says it for a row that sets both.
 */
static void
warn_short_retention(TriggerData *trigdata)
{
	Relation	rel = trigdata->tg_relation;
	HeapTuple	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;
	TupleDesc	desc = RelationGetDescr(rel);
	AttrNumber	scope_att = get_attnum(RelationGetRelid(rel), "scope");
	AttrNumber	ttl_att = get_attnum(RelationGetRelid(rel), "ttl");
	AttrNumber	retain_att = get_attnum(RelationGetRelid(rel), "retain");
	int64		ttl_ms = (int64) ik_ttl_s * 1000;
	int64		retain_ms = (int64) ik_retain_s * 1000;
	bool		isnull;
	Datum		d;

	if (scope_att == InvalidAttrNumber || ttl_att == InvalidAttrNumber ||
		retain_att == InvalidAttrNumber)
		return;
	d = heap_getattr(tuple, ttl_att, desc, &isnull);
	if (!isnull)
		ttl_ms = ik_interval_ms(DatumGetIntervalP(d));
	d = heap_getattr(tuple, retain_att, desc, &isnull);
	if (!isnull)
		retain_ms = ik_interval_ms(DatumGetIntervalP(d));
	if (retain_ms >= ttl_ms)
		return;
	d = heap_getattr(tuple, scope_att, desc, &isnull);
	ereport(WARNING,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("retention of scope \"%s\" is shorter than its replay window",
					isnull ? "" : TextDatumGetCString(d)),
			 errdetail("The row's replay window is %lld ms and the retention it gets %lld ms, from idempotency.retain; its claims keep keys for the replay window instead.",
					   (long long) ttl_ms, (long long) retain_ms),
			 errhint("Set the row's retain to at least its ttl.")));
}

/*
 * Statement and row trigger on idempotency.policies.  Changing a table's
 * rows does not invalidate its relcache entry; this trigger does, so that
 * every backend forgets what it knew of the table once the change
 * commits, and the changing transaction at once.
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
	if (TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) &&
		(TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		 TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event)))
		warn_short_retention(trigdata);
	return PointerGetDatum(NULL);
}

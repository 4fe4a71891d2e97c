/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  Counters and the claim-latency histogram, in shared memory.
 *
 * Every counter is a pg_atomic_uint64 in a per-database slot, so counting
 * takes no lock: a backend finds its database's slot once, under the
 * tranche's LWLock, and then only adds.  A database that finds every slot
 * taken, none of them by a dropped database, counts in a last, shared
 * "other databases" slot.
 *
 * Shared memory exists only with the library in shared_preload_libraries.
 * Without it counting does nothing and the view says why.  What is counted,
 * and when, is counting.c's business; this file only keeps the numbers.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(idempotency_stats);
PG_FUNCTION_INFO_V1(idempotency_stats_reset);

/* Databases with slots of their own; the last slot takes the rest. */
#define IK_STATS_SLOTS		64

/* Upper bounds of the claim-latency buckets, in seconds; +Inf follows. */
static const double latency_bounds[] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
	0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10
};
#define IK_LATENCY_BUCKETS ((int) lengthof(latency_bounds) + 1)

typedef struct IkStatsSlot
{
	pg_atomic_uint32 dboid;		/* InvalidOid while free */
	pg_atomic_uint64 counters[IK_NUM_COUNTERS];
	pg_atomic_uint64 latency_buckets[IK_LATENCY_BUCKETS];	/* not cumulative */
	pg_atomic_uint64 latency_sum_ns;
	pg_atomic_uint64 last_reap; /* TimestampTz, 0 if never */
} IkStatsSlot;

typedef struct IkStatsShared
{
	LWLock	   *lock;			/* taken to claim a slot, and to reset */
	pg_atomic_uint64 reset_at;	/* TimestampTz of the last reset */
	IkStatsSlot slots[IK_STATS_SLOTS + 1];
} IkStatsShared;

static IkStatsShared *shared = NULL;
static IkStatsSlot *my_slot = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
stats_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(IkStatsShared)));
	RequestNamedLWLockTranche("idempotency", 1);
}

static void
stats_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("idempotency stats", sizeof(IkStatsShared), &found);
	if (!found)
	{
		shared->lock = &(GetNamedLWLockTranche("idempotency"))->lock;
		pg_atomic_init_u64(&shared->reset_at, (uint64) GetCurrentTimestamp());
		for (int s = 0; s <= IK_STATS_SLOTS; s++)
		{
			IkStatsSlot *slot = &shared->slots[s];

			pg_atomic_init_u32(&slot->dboid, InvalidOid);
			for (int i = 0; i < IK_NUM_COUNTERS; i++)
				pg_atomic_init_u64(&slot->counters[i], 0);
			for (int i = 0; i < IK_LATENCY_BUCKETS; i++)
				pg_atomic_init_u64(&slot->latency_buckets[i], 0);
			pg_atomic_init_u64(&slot->latency_sum_ns, 0);
			pg_atomic_init_u64(&slot->last_reap, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

void
ik_stats_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = stats_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = stats_shmem_startup;
}

static void
zero_slot(IkStatsSlot *slot)
{
	for (int i = 0; i < IK_NUM_COUNTERS; i++)
		pg_atomic_write_u64(&slot->counters[i], 0);
	for (int i = 0; i < IK_LATENCY_BUCKETS; i++)
		pg_atomic_write_u64(&slot->latency_buckets[i], 0);
	pg_atomic_write_u64(&slot->latency_sum_ns, 0);
	pg_atomic_write_u64(&slot->last_reap, 0);
}

/* This database's slot, or a free one taken for it, holding the lock. */
static IkStatsSlot *
own_or_free_slot(void)
{
	for (int s = 0; s < IK_STATS_SLOTS; s++)
	{
		Oid			owner = pg_atomic_read_u32(&shared->slots[s].dboid);

		if (owner == MyDatabaseId)
			return &shared->slots[s];
		if (owner == InvalidOid)
		{
			pg_atomic_write_u32(&shared->slots[s].dboid, MyDatabaseId);
			return &shared->slots[s];
		}
	}
	return NULL;
}

/*
 * This database's slot, found or taken once per backend; NULL without
 * shared memory.  When every slot is taken, one of a database that has
 * since been dropped is recycled.  Which databases exist is a catalog
 * question, asked only when may_read_catalog (ik_stats_prepare(), before
 * a call runs) and never under the lock: a syscache miss may wait for a
 * heavyweight lock on pg_database, which under an LWLock nobody could
 * cancel, and would stall every backend that counts.  Failing that, the
 * shared last slot is used: for good when the catalogs were read, for
 * this count only otherwise.
 */
static IkStatsSlot *
database_slot(bool may_read_catalog)
{
	Oid			dropped[IK_STATS_SLOTS];
	int			ndropped = 0;

	if (my_slot != NULL || shared == NULL || !OidIsValid(MyDatabaseId))
		return my_slot;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	my_slot = own_or_free_slot();
	LWLockRelease(shared->lock);
	if (my_slot != NULL)
		return my_slot;
	if (!may_read_catalog || !IsTransactionState())
		return &shared->slots[IK_STATS_SLOTS];

	for (int s = 0; s < IK_STATS_SLOTS; s++)
	{
		Oid			owner = pg_atomic_read_u32(&shared->slots[s].dboid);

		dropped[s] = InvalidOid;
		if (OidIsValid(owner) &&
			!SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum(owner)))
		{
			dropped[s] = owner;
			ndropped++;
		}
	}

	/* The slots may have changed hands meanwhile: take one still dropped. */
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	my_slot = own_or_free_slot();
	for (int s = 0; s < IK_STATS_SLOTS && my_slot == NULL && ndropped > 0; s++)
	{
		if (OidIsValid(dropped[s]) &&
			pg_atomic_read_u32(&shared->slots[s].dboid) == dropped[s])
		{
			zero_slot(&shared->slots[s]);
			pg_atomic_write_u32(&shared->slots[s].dboid, MyDatabaseId);
			my_slot = &shared->slots[s];
		}
	}
	if (my_slot == NULL)
		my_slot = &shared->slots[IK_STATS_SLOTS];
	LWLockRelease(shared->lock);
	return my_slot;
}

/*
 * Find this database's slot before a SQL-callable function runs, so that
 * what it counts on its way out of an error only adds (counting.c).
 */
void
ik_stats_prepare(void)
{
	(void) database_slot(true);
}

void
ik_stats_add(IkCounter counter, uint64 n)
{
	IkStatsSlot *slot = database_slot(false);

	if (slot == NULL)
		return;
	pg_atomic_fetch_add_u64(&slot->counters[counter], n);
	if (counter == IK_REAPER_RUNS)
		pg_atomic_write_u64(&slot->last_reap, (uint64) GetCurrentTimestamp());
}

/* Count a claim's latency, from started to now. */
void
ik_stats_add_latency(instr_time started)
{
	IkStatsSlot *slot = database_slot(false);
	instr_time	elapsed;
	double		seconds;
	int			b = 0;

	if (slot == NULL)
		return;
	INSTR_TIME_SET_CURRENT(elapsed);
	INSTR_TIME_SUBTRACT(elapsed, started);
	seconds = INSTR_TIME_GET_DOUBLE(elapsed);
	while (b < (int) lengthof(latency_bounds) && seconds > latency_bounds[b])
		b++;
	pg_atomic_fetch_add_u64(&slot->latency_buckets[b], 1);
	pg_atomic_fetch_add_u64(&slot->latency_sum_ns,
							(uint64) INSTR_TIME_GET_MICROSEC(elapsed) * 1000);
}

static void
require_shared_memory(void)
{
	if (shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("idempotency statistics need the library in shared_preload_libraries"),
				 errhint("Add 'idempotency' to shared_preload_libraries and restart the server.")));
}

static ArrayType *
float8_array(const double *values, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * n);

	for (int i = 0; i < n; i++)
		d[i] = Float8GetDatum(values[i]);
	return construct_array(d, n, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL,
						   TYPALIGN_DOUBLE);
}

/* The view's column of each counter. */
static const char *const counter_columns[IK_NUM_COUNTERS] = {
#define IK_DATABASE(name, column, sqlstate) [IK_##name] = column,
#define IK_BOTH(name, column, sqlstate, offence) [IK_##name] = column,
#define IK_SCOPE(name, column, offence)
#include "counters.h"
#undef IK_DATABASE
#undef IK_BOTH
#undef IK_SCOPE
};

/*
 * read_stats() RETURNS SETOF record: one row per database with counters,
 * behind the view idempotency.stats.  The histogram comes as Prometheus
 * wants it: bucket upper bounds (the last is +Inf), cumulative counts,
 * sum and count.  Columns are filled by name, so that the function of
 * every catalog version this library serves gets what it declares (0.1.0
 * has no reaper_skipped_rows).
 */
Datum
idempotency_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	double		bounds[IK_LATENCY_BUCKETS];
	TupleDesc	desc;

	require_shared_memory();
	InitMaterializedSRF(fcinfo, 0);
	desc = rsinfo->setDesc;

	for (int i = 0; i < (int) lengthof(latency_bounds); i++)
		bounds[i] = latency_bounds[i];
	bounds[IK_LATENCY_BUCKETS - 1] = get_float8_infinity();

	for (int s = 0; s <= IK_STATS_SLOTS; s++)
	{
		IkStatsSlot *slot = &shared->slots[s];
		Oid			dboid = pg_atomic_read_u32(&slot->dboid);
		IkNamedValue row[IK_NUM_COUNTERS + 7];
		Datum	   *values;
		bool	   *nulls;
		Datum		cumulative[IK_LATENCY_BUCKETS];
		uint64		running = 0;
		uint64		last_reap = pg_atomic_read_u64(&slot->last_reap);
		int			n = 0;

		if (s < IK_STATS_SLOTS && dboid == InvalidOid)
			continue;

		ik_named(row, &n, "dboid", ObjectIdGetDatum(dboid),
				 s == IK_STATS_SLOTS);
		for (int i = 0; i < IK_NUM_COUNTERS; i++)
			ik_named(row, &n, counter_columns[i],
					 Int64GetDatum((int64) pg_atomic_read_u64(&slot->counters[i])),
					 false);
		ik_named(row, &n, "last_reap",
				 TimestampTzGetDatum((TimestampTz) last_reap),
				 last_reap == 0);
		for (int i = 0; i < IK_LATENCY_BUCKETS; i++)
		{
			running += pg_atomic_read_u64(&slot->latency_buckets[i]);
			cumulative[i] = Int64GetDatum((int64) running);
		}
		ik_named(row, &n, "claim_latency_seconds",
				 PointerGetDatum(float8_array(bounds, IK_LATENCY_BUCKETS)),
				 false);
		ik_named(row, &n, "claim_latency_seconds_bucket",
				 PointerGetDatum(construct_array(cumulative,
												 IK_LATENCY_BUCKETS,
												 INT8OID, sizeof(int64),
												 FLOAT8PASSBYVAL,
												 TYPALIGN_DOUBLE)),
				 false);
		ik_named(row, &n, "claim_latency_seconds_sum",
				 Float8GetDatum(pg_atomic_read_u64(&slot->latency_sum_ns) / 1e9),
				 false);
		ik_named(row, &n, "claim_latency_seconds_count",
				 Int64GetDatum((int64) running), false);
		ik_named(row, &n, "stats_reset",
				 TimestampTzGetDatum((TimestampTz) pg_atomic_read_u64(&shared->reset_at)),
				 false);

		values = palloc(sizeof(Datum) * desc->natts);
		nulls = palloc(sizeof(bool) * desc->natts);
		ik_fill_by_name(desc, row, n, "read_stats", values, nulls);
		tuplestore_putvalues(rsinfo->setResult, desc, values, nulls);
	}
	return (Datum) 0;
}

/* stats_reset(): zero every database's counters. */
Datum
idempotency_stats_reset(PG_FUNCTION_ARGS)
{
	require_shared_memory();

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	for (int s = 0; s <= IK_STATS_SLOTS; s++)
		zero_slot(&shared->slots[s]);
	pg_atomic_write_u64(&shared->reset_at, (uint64) GetCurrentTimestamp());
	LWLockRelease(shared->lock);
	PG_RETURN_VOID();
}

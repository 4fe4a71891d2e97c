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
 * Without it counting does nothing and the view says why.
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
#include "utils/tuplestore.h"

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

/*
 * This database's slot, found or taken once per backend; NULL without
 * shared memory.  When every slot is taken, one of a database that has
 * since been dropped is recycled, which needs the catalogs and so a
 * transaction; failing that, the shared last slot is used.
 */
static IkStatsSlot *
database_slot(void)
{
	if (my_slot != NULL || shared == NULL || !OidIsValid(MyDatabaseId))
		return my_slot;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	for (int s = 0; s < IK_STATS_SLOTS && my_slot == NULL; s++)
	{
		Oid			owner = pg_atomic_read_u32(&shared->slots[s].dboid);

		if (owner == MyDatabaseId)
			my_slot = &shared->slots[s];
		else if (owner == InvalidOid)
		{
			pg_atomic_write_u32(&shared->slots[s].dboid, MyDatabaseId);
			my_slot = &shared->slots[s];
		}
	}
	for (int s = 0; s < IK_STATS_SLOTS && my_slot == NULL && IsTransactionState(); s++)
	{
		Oid			owner = pg_atomic_read_u32(&shared->slots[s].dboid);

		if (!SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum(owner)))
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

void
ik_count(IkCounter counter, uint64 n)
{
	IkStatsSlot *slot = database_slot();

	if (slot == NULL)
		return;
	pg_atomic_fetch_add_u64(&slot->counters[counter], n);
	ik_scope_count_counter(counter, n);
	if (counter == IK_REAPER_RUNS)
		pg_atomic_write_u64(&slot->last_reap, (uint64) GetCurrentTimestamp());
}

/* Count an error of ours by its SQLSTATE; others are not ours to count. */
void
ik_count_error(int sqlerrcode)
{
	switch (sqlerrcode)
	{
		case ERRCODE_IK_INVALID_ARGUMENT:
			ik_count(IK_ERRORS_IK400, 1);
			break;
		case ERRCODE_IK_IN_PROGRESS:
			ik_count(IK_ERRORS_IK409, 1);
			break;
		case ERRCODE_IK_EXPIRED:
			ik_count(IK_ERRORS_IK410, 1);
			break;
		case ERRCODE_IK_FINGERPRINT_MISMATCH:
			ik_count(IK_ERRORS_IK422, 1);
			break;
		case ERRCODE_IK_PROTOCOL_VIOLATION:
			ik_count(IK_ERRORS_IK428, 1);
			break;
	}
}

static void count_claim_latency(instr_time started);

/*
 * Call fn, counting the SQLSTATE of any error of ours that it raises on its
 * way out, and, for a claim, its latency whatever the outcome.  Every
 * SQL-callable function of the extension goes through here; what the call
 * counted for the scope it names goes to scope_stats.c as it ends.
 */
Datum
ik_counted_call(PGFunction fn, FunctionCallInfo fcinfo, bool is_claim)
{
	volatile Datum result = (Datum) 0;
	instr_time	started;
	text	   *outer_scope = ik_scope_call_begin();

	INSTR_TIME_SET_CURRENT(started);
	PG_TRY();
	{
		result = fn(fcinfo);
	}
	PG_CATCH();
	{
		ik_count_error(geterrcode());
		if (is_claim)
			count_claim_latency(started);
		ik_scope_call_end(outer_scope);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (is_claim)
		count_claim_latency(started);
	ik_scope_call_end(outer_scope);
	return result;
}

static void
count_claim_latency(instr_time started)
{
	IkStatsSlot *slot = database_slot();
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
	[IK_CLAIMS_NEW] = "claims_new",
	[IK_CLAIMS_REPLAY] = "claims_replay",
	[IK_CLAIMS_RESUME] = "claims_resume",
	[IK_ERRORS_IK400] = "errors_ik400",
	[IK_ERRORS_IK409] = "errors_ik409",
	[IK_ERRORS_IK410] = "errors_ik410",
	[IK_ERRORS_IK422] = "errors_ik422",
	[IK_ERRORS_IK428] = "errors_ik428",
	[IK_COMPLETIONS] = "completions",
	[IK_RELEASES] = "releases",
	[IK_RELEASES_5XX] = "releases_5xx",
	[IK_SHADOW_WOULD_REPLAY] = "shadow_would_replay",
	[IK_SHADOW_WOULD_CONFLICT] = "shadow_would_conflict",
	[IK_SHADOW_WOULD_IK422] = "shadow_would_ik422",
	[IK_SHADOW_WOULD_IK410] = "shadow_would_ik410",
	[IK_REAPED_ROWS] = "reaped_rows",
	[IK_ABANDONED_CLAIMS] = "abandoned_claims",
	[IK_REAPER_RUNS] = "reaper_runs",
	[IK_REAPER_SKIPPED_ROWS] = "reaper_skipped_rows",
};

/* One database's row of read_stats(), by column name. */
typedef struct StatsRow
{
	const char *name;
	Datum		value;
	bool		isnull;
} StatsRow;

/* Add a column to a row of read_stats(); returns the next free column. */
static int
stats_column(StatsRow *row, int n, const char *name, Datum value, bool isnull)
{
	row[n].name = name;
	row[n].value = value;
	row[n].isnull = isnull;
	return n + 1;
}

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
		StatsRow	row[IK_NUM_COUNTERS + 7];
		Datum	   *values;
		bool	   *nulls;
		Datum		cumulative[IK_LATENCY_BUCKETS];
		uint64		running = 0;
		uint64		last_reap = pg_atomic_read_u64(&slot->last_reap);
		int			n = 0;

		if (s < IK_STATS_SLOTS && dboid == InvalidOid)
			continue;

		n = stats_column(row, n, "dboid", ObjectIdGetDatum(dboid),
						 s == IK_STATS_SLOTS);
		for (int i = 0; i < IK_NUM_COUNTERS; i++)
			n = stats_column(row, n, counter_columns[i],
							 Int64GetDatum((int64) pg_atomic_read_u64(&slot->counters[i])),
							 false);
		n = stats_column(row, n, "last_reap",
						 TimestampTzGetDatum((TimestampTz) last_reap),
						 last_reap == 0);
		for (int i = 0; i < IK_LATENCY_BUCKETS; i++)
		{
			running += pg_atomic_read_u64(&slot->latency_buckets[i]);
			cumulative[i] = Int64GetDatum((int64) running);
		}
		n = stats_column(row, n, "claim_latency_seconds",
						 PointerGetDatum(float8_array(bounds, IK_LATENCY_BUCKETS)),
						 false);
		n = stats_column(row, n, "claim_latency_seconds_bucket",
						 PointerGetDatum(construct_array(cumulative,
														 IK_LATENCY_BUCKETS,
														 INT8OID, sizeof(int64),
														 FLOAT8PASSBYVAL,
														 TYPALIGN_DOUBLE)),
						 false);
		n = stats_column(row, n, "claim_latency_seconds_sum",
						 Float8GetDatum(pg_atomic_read_u64(&slot->latency_sum_ns) / 1e9),
						 false);
		n = stats_column(row, n, "claim_latency_seconds_count",
						 Int64GetDatum((int64) running), false);
		n = stats_column(row, n, "stats_reset",
						 TimestampTzGetDatum((TimestampTz) pg_atomic_read_u64(&shared->reset_at)),
						 false);

		values = palloc(sizeof(Datum) * desc->natts);
		nulls = palloc(sizeof(bool) * desc->natts);
		for (int a = 0; a < desc->natts; a++)
		{
			const char *name = NameStr(TupleDescAttr(desc, a)->attname);
			int			r = 0;

			while (r < n && strcmp(row[r].name, name) != 0)
				r++;
			if (r == n)
				ereport(ERROR,
						(errcode(ERRCODE_IK_TABLE_NEEDS_OPERATOR),
						 errmsg("idempotency.read_stats() declares column \"%s\", which this library does not know",
								name),
						 errhint("Install the extension's files of the version the catalog has, or run ALTER EXTENSION idempotency UPDATE.")));
			values[a] = row[r].value;
			nulls[a] = row[r].isnull;
		}
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

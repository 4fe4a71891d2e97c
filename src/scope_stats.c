/*-------------------------------------------------------------------------
 *
 * scope_stats.c
 *	  Per-scope counters in shared memory: which tenants a rollout would
 *	  affect, and which ones support should look at.
 *
 * The per-database counters of stats.c say that enforce mode would refuse
 * so many requests; these say whose.  A bounded hash table in shared
 * memory, keyed by (database, scope), holds one entry per scope seen, of
 * idempotency.scope_stats_max entries at most (0: none, and no shared
 * memory).  The design follows pg_stat_statements': one LWLock, taken
 * shared to count into an entry that exists and exclusive to add or evict
 * entries; the counters themselves are atomics, so that backends counting
 * into one entry at once need no lock of their own.
 *
 * A SQL-callable function names its scope once it has checked it
 * (ik_scope_call_scope()); every ik_count() of the call that has a
 * per-scope counterpart is then noted in backend memory, and the notes are
 * added to the scope's entry when the call ends, error or not, with one
 * lookup however many counters moved: a new key costs one lookup per
 * transaction.
 *
 * When the table is full, a new scope makes room by evicting a batch of
 * the entries that matter least: those without errors or would-be errors
 * first, least recently seen first; an entry with errors goes only when
 * every other entry has errors too, the one with the fewest first.  So a
 * churn of one-off tenants never pushes out an offender.  Each entry says
 * since when its counts are complete ("tracked since"): a scope that has
 * no entry may have had one that was evicted, so a new entry is complete
 * only since the last eviction (or reset, or server start) before it was
 * made.  The rollout report calls a scope safe only when that covers the
 * whole shadow period.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "compat.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(idempotency_scope_stats);
PG_FUNCTION_INFO_V1(idempotency_scope_stats_info);
PG_FUNCTION_INFO_V1(idempotency_scope_stats_reset);

/* Share of the entries one eviction removes, so that it is rare. */
#define EVICT_PERCENT	5

/* (database, scope): the scope's bytes, in its database's encoding. */
typedef struct ScopeKey
{
	Oid			dboid;
	uint32		len;
	char		scope[IK_MAX_NAME_BYTES];
} ScopeKey;

typedef struct ScopeEntry
{
	ScopeKey	key;			/* first: the hash table's key */
	int			encoding;		/* of the key's database */
	TimestampTz tracked_since;	/* the counts are complete since then */
	pg_atomic_uint64 last_seen; /* TimestampTz of the last count */
	pg_atomic_uint64 offences;	/* errors and would-be errors counted */
	pg_atomic_uint64 counters[IK_SCOPE_NUM_COUNTERS];
} ScopeEntry;

/* An entry as eviction ranks it. */
typedef struct Victim
{
	uint64		offences;
	uint64		last_seen;
	ScopeEntry *entry;
} Victim;

typedef struct ScopeShared
{
	LWLock	   *lock;			/* shared to count, exclusive to add, evict or
								 * reset entries */
	/* the rest is written under the exclusive lock */
	uint64		evictions;
	uint64		evictions_with_errors;
	TimestampTz last_eviction;	/* 0 if none since the reset */
	TimestampTz discarded_at;	/* last eviction, reset or server start */
	TimestampTz stats_reset;
	Size		memory;			/* shared memory of the table, in bytes */
	Victim		victims[FLEXIBLE_ARRAY_MEMBER]; /* eviction's heap, of one
												 * batch */
} ScopeShared;

static ScopeShared *shared = NULL;
static HTAB *entries = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/*
 * The per-scope counterpart of a counter of stats.c, or -1.  A switch, not
 * a table: a counter added there counts nowhere here until it is named.
 */
static int
scope_counter_of(IkCounter counter)
{
	switch (counter)
	{
		case IK_CLAIMS_NEW:
			return IK_SCOPE_CLAIMS_NEW;
		case IK_CLAIMS_REPLAY:
			return IK_SCOPE_CLAIMS_REPLAY;
		case IK_CLAIMS_RESUME:
			return IK_SCOPE_CLAIMS_RESUME;
		case IK_ERRORS_IK409:
			return IK_SCOPE_ERRORS_IK409;
		case IK_ERRORS_IK410:
			return IK_SCOPE_ERRORS_IK410;
		case IK_ERRORS_IK422:
			return IK_SCOPE_ERRORS_IK422;
		case IK_ERRORS_IK428:
			return IK_SCOPE_ERRORS_IK428;
		case IK_RELEASES_5XX:
			return IK_SCOPE_RELEASES_5XX;
		case IK_SHADOW_WOULD_REPLAY:
			return IK_SCOPE_SHADOW_WOULD_REPLAY;
		case IK_SHADOW_WOULD_CONFLICT:
			return IK_SCOPE_SHADOW_WOULD_CONFLICT;
		case IK_SHADOW_WOULD_IK422:
			return IK_SCOPE_SHADOW_WOULD_IK422;
		case IK_SHADOW_WOULD_IK410:
			return IK_SCOPE_SHADOW_WOULD_IK410;
		default:
			return -1;			/* IK400, completions, the reaper's */
	}
}

/*
 * The counters an eviction spares: what enforce refused or would refuse.
 * A scope with any of them is one a rollout owner or support must see.
 */
static const bool is_offence[IK_SCOPE_NUM_COUNTERS] = {
	[IK_SCOPE_ERRORS_IK409] = true,
	[IK_SCOPE_ERRORS_IK410] = true,
	[IK_SCOPE_ERRORS_IK422] = true,
	[IK_SCOPE_ERRORS_IK428] = true,
	[IK_SCOPE_SHADOW_WOULD_CONFLICT] = true,
	[IK_SCOPE_SHADOW_WOULD_IK422] = true,
	[IK_SCOPE_SHADOW_WOULD_IK410] = true,
};

/* The view's column of each counter. */
static const char *const scope_counter_columns[IK_SCOPE_NUM_COUNTERS] = {
	[IK_SCOPE_CLAIMS_NEW] = "claims_new",
	[IK_SCOPE_CLAIMS_REPLAY] = "claims_replay",
	[IK_SCOPE_CLAIMS_RESUME] = "claims_resume",
	[IK_SCOPE_CLAIMS_SHADOW] = "claims_shadow",
	[IK_SCOPE_ERRORS_IK409] = "errors_ik409",
	[IK_SCOPE_ERRORS_IK410] = "errors_ik410",
	[IK_SCOPE_ERRORS_IK422] = "errors_ik422",
	[IK_SCOPE_ERRORS_IK428] = "errors_ik428",
	[IK_SCOPE_RELEASES_5XX] = "releases_5xx",
	[IK_SCOPE_SHADOW_WOULD_REPLAY] = "shadow_would_replay",
	[IK_SCOPE_SHADOW_WOULD_CONFLICT] = "shadow_would_conflict",
	[IK_SCOPE_SHADOW_WOULD_IK422] = "shadow_would_ik422",
	[IK_SCOPE_SHADOW_WOULD_IK410] = "shadow_would_ik410",
};

/*
 * The call in progress: its scope (valid while the call runs), and what it
 * counted so far.
 */
static text *call_scope = NULL;
static uint32 pending[IK_SCOPE_NUM_COUNTERS];
static bool pending_any = false;

static uint32
scope_key_hash(const void *key, Size keysize)
{
	const ScopeKey *k = (const ScopeKey *) key;

	return hash_combine(murmurhash32((uint32) k->dboid),
						hash_bytes((const unsigned char *) k->scope,
								   (int) k->len));
}

static int
scope_key_match(const void *key1, const void *key2, Size keysize)
{
	const ScopeKey *a = (const ScopeKey *) key1;
	const ScopeKey *b = (const ScopeKey *) key2;

	if (a->dboid != b->dboid || a->len != b->len)
		return 1;
	return memcmp(a->scope, b->scope, a->len);
}

/* Entries one eviction removes. */
static int
batch_size(void)
{
	return Max(1, ik_scope_stats_max * EVICT_PERCENT / 100);
}

static Size
header_size(void)
{
	return MAXALIGN(add_size(offsetof(ScopeShared, victims),
							 mul_size(batch_size(), sizeof(Victim))));
}

static Size
memory_size(void)
{
	return add_size(header_size(),
					hash_estimate_size(ik_scope_stats_max, sizeof(ScopeEntry)));
}

static void
scope_stats_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	if (ik_scope_stats_max == 0)
		return;
	RequestAddinShmemSpace(memory_size());
	RequestNamedLWLockTranche("idempotency scope stats", 1);
}

static void
scope_stats_shmem_startup(void)
{
	HASHCTL		info;
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	if (ik_scope_stats_max == 0)
		return;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("idempotency scope stats", header_size(), &found);
	if (!found)
	{
		TimestampTz now = GetCurrentTimestamp();

		shared->lock =
			&(GetNamedLWLockTranche("idempotency scope stats"))->lock;
		shared->evictions = 0;
		shared->evictions_with_errors = 0;
		shared->last_eviction = 0;
		shared->discarded_at = now;
		shared->stats_reset = now;
		shared->memory = memory_size();
	}
	info.keysize = sizeof(ScopeKey);
	info.entrysize = sizeof(ScopeEntry);
	info.hash = scope_key_hash;
	info.match = scope_key_match;
	entries = ik_shmem_init_hash("idempotency scope stats hash",
								 ik_scope_stats_max, ik_scope_stats_max, &info,
								 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE |
								 HASH_FIXED_SIZE);
	LWLockRelease(AddinShmemInitLock);
}

void
ik_scope_stats_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = scope_stats_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = scope_stats_shmem_startup;
}

/* Does a matter more than b, so that b is evicted first? */
static inline bool
matters_more(const Victim *a, const Victim *b)
{
	if (a->offences != b->offences)
		return a->offences > b->offences;
	return a->last_seen > b->last_seen;
}

/* Sift heap[i] down a max-heap of n victims (the one mattering most on top). */
static void
sift_down(Victim *heap, int n, int i)
{
	for (;;)
	{
		int			top = i;
		int			l = 2 * i + 1;
		Victim		tmp;

		if (l < n && matters_more(&heap[l], &heap[top]))
			top = l;
		if (l + 1 < n && matters_more(&heap[l + 1], &heap[top]))
			top = l + 1;
		if (top == i)
			return;
		tmp = heap[i];
		heap[i] = heap[top];
		heap[top] = tmp;
		i = top;
	}
}

static void
sift_up(Victim *heap, int i)
{
	while (i > 0 && matters_more(&heap[i], &heap[(i - 1) / 2]))
	{
		Victim		tmp = heap[i];

		heap[i] = heap[(i - 1) / 2];
		heap[(i - 1) / 2] = tmp;
		i = (i - 1) / 2;
	}
}

/*
 * Remove the batch of entries that matter least, holding the lock
 * exclusively.  They are chosen in one pass over the table, keeping the
 * batch's candidates so far in a max-heap whose top is the one that
 * matters most: an entry that matters less replaces it.  That costs a
 * comparison per entry and rarely more, where sorting the table cost a
 * dozen; the heap lives in shared memory, so that an eviction allocates
 * nothing: it may run on the way out of an error.
 */
static void
evict(void)
{
	Victim	   *heap = shared->victims;
	int			k = batch_size();
	int			n = 0;
	HASH_SEQ_STATUS seq;
	ScopeEntry *e;

	hash_seq_init(&seq, entries);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		Victim		v;

		v.offences = pg_atomic_read_u64(&e->offences);
		v.last_seen = pg_atomic_read_u64(&e->last_seen);
		v.entry = e;
		if (n < k)
		{
			heap[n] = v;
			sift_up(heap, n++);
		}
		else if (matters_more(&heap[0], &v))
		{
			heap[0] = v;
			sift_down(heap, n, 0);
		}
	}

	for (int i = 0; i < n; i++)
	{
		if (heap[i].offences > 0)
			shared->evictions_with_errors++;
		hash_search(entries, &heap[i].entry->key, HASH_REMOVE, NULL);
	}
	shared->evictions += n;
	shared->last_eviction = GetCurrentTimestamp();
	shared->discarded_at = shared->last_eviction;
}

/* Add counts to an entry, holding the lock. */
static void
add_counts(ScopeEntry *e, const uint32 *counts, TimestampTz now)
{
	uint64		offences = 0;
	uint64		seen;

	for (int i = 0; i < IK_SCOPE_NUM_COUNTERS; i++)
	{
		if (counts[i] == 0)
			continue;
		pg_atomic_fetch_add_u64(&e->counters[i], counts[i]);
		if (is_offence[i])
			offences += counts[i];
	}
	if (offences > 0)
		pg_atomic_fetch_add_u64(&e->offences, offences);

	/* last_seen only moves forward, whichever backend writes last */
	seen = pg_atomic_read_u64(&e->last_seen);
	while (seen < (uint64) now &&
		   !pg_atomic_compare_exchange_u64(&e->last_seen, &seen, (uint64) now))
		;
}

static void
init_entry(ScopeEntry *e, TimestampTz tracked_since)
{
	e->encoding = GetDatabaseEncoding();
	e->tracked_since = tracked_since;
	pg_atomic_init_u64(&e->last_seen, 0);
	pg_atomic_init_u64(&e->offences, 0);
	for (int i = 0; i < IK_SCOPE_NUM_COUNTERS; i++)
		pg_atomic_init_u64(&e->counters[i], 0);
}

/* Zero an entry, holding the lock exclusively. */
static void
zero_entry(ScopeEntry *e, TimestampTz tracked_since)
{
	e->tracked_since = tracked_since;
	pg_atomic_write_u64(&e->last_seen, 0);
	pg_atomic_write_u64(&e->offences, 0);
	for (int i = 0; i < IK_SCOPE_NUM_COUNTERS; i++)
		pg_atomic_write_u64(&e->counters[i], 0);
}

/* The key of scope in this database; only the scope's bytes are set. */
static uint32
make_key(text *scope, ScopeKey *key)
{
	key->dboid = MyDatabaseId;
	key->len = VARSIZE_ANY_EXHDR(scope);
	Assert(key->len <= IK_MAX_NAME_BYTES);
	memcpy(key->scope, VARDATA_ANY(scope), key->len);
	return scope_key_hash(key, sizeof(ScopeKey));
}

/*
 * Add counts to the entry of scope in this database, making it if need
 * be.  The common case, an entry that exists, holds the lock shared.
 */
static void
count_into(text *scope, const uint32 *counts)
{
	ScopeKey	key;
	uint32		hash;
	ScopeEntry *e;
	TimestampTz now;
	TimestampTz tracked_since;
	bool		full;
	bool		found;

	if (entries == NULL || !OidIsValid(MyDatabaseId))
		return;
	hash = make_key(scope, &key);
	now = GetCurrentTimestamp();

	LWLockAcquire(shared->lock, LW_SHARED);
	e = hash_search_with_hash_value(entries, &key, hash, HASH_FIND, NULL);
	if (e != NULL)
	{
		add_counts(e, counts, now);
		LWLockRelease(shared->lock);
		return;
	}
	LWLockRelease(shared->lock);

	/*
	 * The scope had no entry a moment ago: whatever it did before the last
	 * discard may have been counted into one that was evicted, but not what
	 * it did since, which would have made an entry.  An eviction made here
	 * cannot remove the scope's, so the time to take is the one before it. A
	 * table that is not full takes the entry at once, found or made.
	 */
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	tracked_since = shared->discarded_at;
	full = hash_get_num_entries(entries) >= ik_scope_stats_max;
	e = full ? hash_search_with_hash_value(entries, &key, hash, HASH_FIND, NULL)
		: NULL;
	if (e == NULL)
	{
		if (full)
			evict();
		memset(key.scope + key.len, 0, IK_MAX_NAME_BYTES - key.len);
		e = hash_search_with_hash_value(entries, &key, hash, HASH_ENTER_NULL,
										&found);
		if (e != NULL && !found)
			init_entry(e, tracked_since);
	}
	if (e != NULL)
		add_counts(e, counts, now);
	LWLockRelease(shared->lock);
}

static void
flush_call(void)
{
	if (pending_any && call_scope != NULL)
		count_into(call_scope, pending);
	memset(pending, 0, sizeof(pending));
	pending_any = false;
}

/*
 * A SQL-callable function starts (stats.c's ik_counted_call()): what an
 * enclosing call counted so far goes to its scope now, and the new call
 * has no scope until it names one.  Returns the enclosing call's scope,
 * for ik_scope_call_end().
 */
text *
ik_scope_call_begin(void)
{
	text	   *outer = call_scope;

	if (pending_any)
		flush_call();
	call_scope = NULL;
	return outer;
}

/* The call ends, normally or by an error: count what it counted. */
void
ik_scope_call_end(text *outer)
{
	if (pending_any)
		flush_call();
	call_scope = outer;
}

/* The call's scope, once checked; counting per scope starts here. */
void
ik_scope_call_scope(text *scope)
{
	if (entries != NULL)
		call_scope = scope;
}

/* stats.c counted counter: note its per-scope counterpart, if any. */
void
ik_scope_count_counter(IkCounter counter, uint64 n)
{
	int			c;

	if (call_scope == NULL)
		return;
	c = scope_counter_of(counter);
	if (c < 0)
		return;
	pending[c] += (uint32) n;
	pending_any = true;
}

/* Count a per-scope counter that has no per-database one, for the call. */
void
ik_scope_count_call(IkScopeCounter counter)
{
	if (call_scope == NULL)
		return;
	pending[counter]++;
	pending_any = true;
}

/* Count one event of scope at once, outside any call (the commit guard). */
void
ik_scope_count(text *scope, IkScopeCounter counter)
{
	uint32		counts[IK_SCOPE_NUM_COUNTERS] = {0};

	counts[counter] = 1;
	count_into(scope, counts);
}

static void
require_table(void)
{
	if (shared == NULL && ik_scope_stats_max == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("idempotency per-scope statistics are disabled"),
				 errdetail("idempotency.scope_stats_max is 0."),
				 errhint("Set idempotency.scope_stats_max above 0 and restart the server.")));
	if (shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("idempotency per-scope statistics need the library in shared_preload_libraries"),
				 errhint("Add 'idempotency' to shared_preload_libraries and restart the server.")));
}

/* A column of a row to return, by name. */
typedef struct NamedValue
{
	const char *name;
	Datum		value;
	bool		isnull;
} NamedValue;

/*
 * Fill values and nulls in the order desc declares, by name, so that the
 * functions of every catalog version get what they declare.
 */
static void
fill_by_name(TupleDesc desc, const NamedValue *row, int n, const char *funcname,
			 Datum *values, bool *nulls)
{
	for (int a = 0; a < desc->natts; a++)
	{
		const char *name = NameStr(TupleDescAttr(desc, a)->attname);
		int			r = 0;

		while (r < n && strcmp(row[r].name, name) != 0)
			r++;
		if (r == n)
			ereport(ERROR,
					(errcode(ERRCODE_IK_TABLE_NEEDS_OPERATOR),
					 errmsg("idempotency.%s() declares column \"%s\", which this library does not know",
							funcname, name),
					 errhint("Install the extension's files of the version the catalog has, or run ALTER EXTENSION idempotency UPDATE.")));
		values[a] = row[r].value;
		nulls[a] = row[r].isnull;
	}
}

/* Add a column to a row; a timestamp of 0 is NULL. */
static void
put(NamedValue *row, int *n, const char *name, Datum value)
{
	row[*n].name = name;
	row[*n].value = value;
	row[*n].isnull = false;
	(*n)++;
}

static void
put_time(NamedValue *row, int *n, const char *name, uint64 t)
{
	put(row, n, name, TimestampTzGetDatum((TimestampTz) t));
	row[*n - 1].isnull = (t == 0);
}

static void
put_count(NamedValue *row, int *n, const char *name, uint64 count)
{
	put(row, n, name, Int64GetDatum((int64) count));
}

/* The scope of an entry as text of this database's encoding. */
static text *
entry_scope(const ScopeEntry *e)
{
	char	   *raw = palloc(e->key.len + 1);
	char	   *converted;

	memcpy(raw, e->key.scope, e->key.len);
	raw[e->key.len] = '\0';
	converted = pg_any_to_server(raw, e->key.len, e->encoding);
	return cstring_to_text(converted);
}

/*
 * read_scope_stats() RETURNS SETOF record: one row per entry, of every
 * database, behind the view idempotency.scope_stats.
 */
Datum
idempotency_scope_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TupleDesc	desc;
	HASH_SEQ_STATUS seq;
	ScopeEntry *e;
	Datum	   *values;
	bool	   *nulls;

	require_table();
	InitMaterializedSRF(fcinfo, 0);
	desc = rsinfo->setDesc;
	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);

	LWLockAcquire(shared->lock, LW_SHARED);
	hash_seq_init(&seq, entries);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		NamedValue	row[IK_SCOPE_NUM_COUNTERS + 4];
		int			n = 0;

		put(row, &n, "dboid", ObjectIdGetDatum(e->key.dboid));
		put(row, &n, "scope", PointerGetDatum(entry_scope(e)));
		for (int i = 0; i < IK_SCOPE_NUM_COUNTERS; i++)
			put_count(row, &n, scope_counter_columns[i],
					  pg_atomic_read_u64(&e->counters[i]));
		put_time(row, &n, "last_seen", pg_atomic_read_u64(&e->last_seen));
		put_time(row, &n, "tracked_since", (uint64) e->tracked_since);

		fill_by_name(desc, row, n, "read_scope_stats", values, nulls);
		tuplestore_putvalues(rsinfo->setResult, desc, values, nulls);
	}
	LWLockRelease(shared->lock);
	return (Datum) 0;
}

/*
 * read_scope_stats_info() RETURNS record: the table as a whole, behind the
 * view idempotency.scope_stats_info.
 */
Datum
idempotency_scope_stats_info(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	NamedValue	row[7];
	Datum	   *values;
	bool	   *nulls;
	int			n = 0;

	require_table();
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		ereport(ERROR,
				(errcode(ERRCODE_IK_TABLE_NEEDS_OPERATOR),
				 errmsg("idempotency.read_scope_stats_info() does not return a row")));
	desc = BlessTupleDesc(desc);
	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);

	LWLockAcquire(shared->lock, LW_SHARED);
	put(row, &n, "max_entries", Int32GetDatum(ik_scope_stats_max));
	put_count(row, &n, "entries", hash_get_num_entries(entries));
	put_count(row, &n, "evictions", shared->evictions);
	put_count(row, &n, "evictions_with_errors", shared->evictions_with_errors);
	put_time(row, &n, "last_eviction", (uint64) shared->last_eviction);
	put_count(row, &n, "shared_memory_bytes", shared->memory);
	put_time(row, &n, "stats_reset", (uint64) shared->stats_reset);
	LWLockRelease(shared->lock);

	fill_by_name(desc, row, n, "read_scope_stats_info", values, nulls);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/*
 * scope_stats_reset(scope text DEFAULT NULL): forget every entry, of every
 * database, and the eviction counters; or, given a scope, zero the
 * counters of that scope in this database, which are then complete from
 * now on.
 */
static Datum
scope_stats_reset(FunctionCallInfo fcinfo)
{
	TimestampTz now;

	require_table();
	now = GetCurrentTimestamp();

	if (PG_ARGISNULL(0))
	{
		HASH_SEQ_STATUS seq;
		ScopeEntry *e;

		LWLockAcquire(shared->lock, LW_EXCLUSIVE);
		hash_seq_init(&seq, entries);
		while ((e = hash_seq_search(&seq)) != NULL)
			hash_search(entries, &e->key, HASH_REMOVE, NULL);
		shared->evictions = 0;
		shared->evictions_with_errors = 0;
		shared->last_eviction = 0;
		shared->discarded_at = now;
		shared->stats_reset = now;
		LWLockRelease(shared->lock);
	}
	else
	{
		text	   *scope = ik_arg_name(fcinfo, 0, "scope");
		ScopeKey	key;
		uint32		hash = make_key(scope, &key);
		ScopeEntry *e;

		LWLockAcquire(shared->lock, LW_EXCLUSIVE);
		e = hash_search_with_hash_value(entries, &key, hash, HASH_FIND, NULL);
		if (e != NULL)
			zero_entry(e, now);
		LWLockRelease(shared->lock);
	}
	PG_RETURN_VOID();
}

Datum
idempotency_scope_stats_reset(PG_FUNCTION_ARGS)
{
	return ik_counted_call(scope_stats_reset, fcinfo, false);
}

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
 What a call counted for its scope reaches this file from counting.c,
 * all at once when the call ends (ik_scope_stats_add()): one lookup
 * however many counters moved, so that a new key costs one lookup per
 * transaction.  The views are scope_stats_views.c's; this file only keeps
 * the table.
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

#include "common/hashfn.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

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
 * The counters an eviction spares: what enforce refused or would refuse.
 * A scope with any of them is one a rollout owner or support must see.
 */
static const bool is_offence[IK_SCOPE_NUM_COUNTERS] = {
#define IK_DATABASE(name, column, sqlstate)
#define IK_BOTH(name, column, sqlstate, offence) [IK_SCOPE_##name] = offence,
#define IK_SCOPE(name, column, offence) [IK_SCOPE_##name] = offence,
#include "counters.h"
#undef IK_DATABASE
#undef IK_BOTH
#undef IK_SCOPE
};

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
	entries = ShmemInitHash("idempotency scope stats hash",
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
void
ik_scope_stats_add(text *scope, const uint32 *counts)
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

/* Is the table there to count into? */
bool
ik_scope_stats_enabled(void)
{
	return entries != NULL;
}

/* Raise the error that says why there is no table, if there is none. */
void
ik_scope_stats_require(void)
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

/*
 * A copy of the entries of database dboid, or of every database when
 * dboid is InvalidOid, in *n palloc'd entries.  Only the copy is made
 * under the lock: what the caller does with the names (converting them
 * between encodings, which may fail) happens after it is released.
 */
IkScopeStatsEntry *
ik_scope_stats_copy(Oid dboid, int *n)
{
	HASH_SEQ_STATUS seq;
	ScopeEntry *e;
	IkScopeStatsEntry *copy;

	ik_scope_stats_require();
	*n = 0;
	LWLockAcquire(shared->lock, LW_SHARED);
	copy = palloc(sizeof(IkScopeStatsEntry) *
				  Max(1, hash_get_num_entries(entries)));
	hash_seq_init(&seq, entries);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		IkScopeStatsEntry *c;

		if (OidIsValid(dboid) && e->key.dboid != dboid)
			continue;
		c = &copy[(*n)++];
		c->dboid = e->key.dboid;
		c->encoding = e->encoding;
		c->len = e->key.len;
		memcpy(c->scope, e->key.scope, e->key.len);
		c->tracked_since = e->tracked_since;
		c->last_seen = (TimestampTz) pg_atomic_read_u64(&e->last_seen);
		for (int i = 0; i < IK_SCOPE_NUM_COUNTERS; i++)
			c->counters[i] = pg_atomic_read_u64(&e->counters[i]);
	}
	LWLockRelease(shared->lock);
	return copy;
}

/* The table as a whole. */
void
ik_scope_stats_read_info(IkScopeStatsInfo *info)
{
	ik_scope_stats_require();
	LWLockAcquire(shared->lock, LW_SHARED);
	info->max_entries = ik_scope_stats_max;
	info->entries = hash_get_num_entries(entries);
	info->evictions = shared->evictions;
	info->evictions_with_errors = shared->evictions_with_errors;
	info->last_eviction = shared->last_eviction;
	info->shared_memory_bytes = shared->memory;
	info->stats_reset = shared->stats_reset;
	LWLockRelease(shared->lock);
}

/* Forget every entry, of every database, and the eviction counters. */
void
ik_scope_stats_reset_all(void)
{
	HASH_SEQ_STATUS seq;
	ScopeEntry *e;
	TimestampTz now = GetCurrentTimestamp();

	ik_scope_stats_require();
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

/* Zero the counters of scope in this database: complete from now on. */
void
ik_scope_stats_reset_scope(text *scope)
{
	ScopeKey	key;
	uint32		hash;
	ScopeEntry *e;

	ik_scope_stats_require();
	hash = make_key(scope, &key);
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	e = hash_search_with_hash_value(entries, &key, hash, HASH_FIND, NULL);
	if (e != NULL)
		zero_entry(e, GetCurrentTimestamp());
	LWLockRelease(shared->lock);
}

/*-------------------------------------------------------------------------
 *
 * idempotency.h
 *	  Declarations shared by the idempotency extension's source files.
 *
 * Each .c file owns one concern; this header is the whole of what they
 * tell one another.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDEMPOTENCY_H
#define IDEMPOTENCY_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "portability/instr_time.h"
#include "storage/itemptr.h"
#include "storage/lockdefs.h"
#include "utils/relcache.h"
#include "utils/timestamp.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

/*
 * SQLSTATEs of the private class IK.  Each maps to one HTTP status, which
 * the README's error table spells out.
 */
/* invalid argument: NULL, empty, too long, control character, bad interval */
#define ERRCODE_IK_INVALID_ARGUMENT		MAKE_SQLSTATE('I','K','4','0','0')
/* the key is held by a request in progress, or a lease token is stale */
#define ERRCODE_IK_IN_PROGRESS			MAKE_SQLSTATE('I','K','4','0','9')
/* the replay window has passed; the key is kept as a tombstone */
#define ERRCODE_IK_EXPIRED				MAKE_SQLSTATE('I','K','4','1','0')
/* the key was first used with a different request fingerprint */
#define ERRCODE_IK_FINGERPRINT_MISMATCH MAKE_SQLSTATE('I','K','4','2','2')
/* the call ran on a Citus node that does not hold the scope's shard */
#define ERRCODE_IK_MISDIRECTED			MAKE_SQLSTATE('I','K','4','2','1')
/* the caller broke the claim protocol */
#define ERRCODE_IK_PROTOCOL_VIOLATION	MAKE_SQLSTATE('I','K','4','2','8')
/* the keys table's shape, or one of its rows, needs an operator */
#define ERRCODE_IK_TABLE_NEEDS_OPERATOR MAKE_SQLSTATE('I','K','5','0','3')

/* Longest scope or key, in bytes, and longest caller-made fingerprint. */
#define IK_MAX_NAME_BYTES	255
#define IK_MAX_FINGERPRINT_BYTES 255
#define IK_MAX_PATH_BYTES	8192
#define IK_MAX_RECOVERY_POINT_BYTES 1024

/* guc.c */
extern int	ik_lock_timeout_ms;
extern int	ik_ttl_s;
extern int	ik_retain_s;
typedef struct IkSecret IkSecret;
extern const IkSecret *ik_fingerprint_secret;
extern const IkSecret *ik_fingerprint_secret_previous;
extern const IkSecret *ik_downstream_secret;
extern const char *ik_secret_value(const IkSecret *secret, const char *name);

/* fingerprint.c */
extern bool ik_fingerprint_matches(const bytea *stored, const bytea *given);
extern int	ik_mode;
extern int	ik_enforce_percent;
extern char *ik_reaper_databases;
extern int	ik_reaper_naptime_s;
extern int	ik_reaper_batch_size;
extern int	ik_reaper_rows_per_second;
extern int	ik_max_key_locks;
extern bool ik_allow_truncate;
extern bool ik_citus_distributed;
extern int	ik_scope_stats_max;
extern void ik_define_gucs(void);

/* validate.c: argument checks that raise IK400 naming the argument */
extern void ik_require_writable(const char *funcname);
extern text *ik_arg_text(FunctionCallInfo fcinfo, int argno,
						 const char *argname, int maxbytes);
extern text *ik_arg_name(FunctionCallInfo fcinfo, int argno,
						 const char *argname);
extern bytea *ik_arg_fingerprint(FunctionCallInfo fcinfo, int argno,
								 const char *argname);
extern int64 ik_interval_ms(const Interval *iv);
extern TimestampTz ik_time_plus_ms(TimestampTz t, int64 ms);
extern int64 ik_arg_interval_ms(FunctionCallInfo fcinfo, int argno,
								const char *argname, bool *isnull);
extern pg_uuid_t *ik_arg_token(FunctionCallInfo fcinfo, int argno,
							   const char *argname);
extern int32 ik_arg_status(FunctionCallInfo fcinfo, int argno,
						   const char *argname);
extern void ik_check_argument_not_null(FunctionCallInfo fcinfo, int argno,
									   const char *argname);

/*
 * Do two varlena values hold the same bytes?  Byte for byte, no collation:
 * for names and fingerprints, which are never compressed or out of line.
 */
static inline bool
ik_same_bytes(const struct varlena *a, const struct varlena *b)
{
	return VARSIZE_ANY_EXHDR(a) == VARSIZE_ANY_EXHDR(b) &&
		memcmp(VARDATA_ANY(a), VARDATA_ANY(b), VARSIZE_ANY_EXHDR(a)) == 0;
}

/* policy.c: mode, windows and 5xx rule of a scope */
typedef enum IkMode
{
	IK_MODE_OFF,
	IK_MODE_SHADOW,
	IK_MODE_ENFORCE
} IkMode;

typedef struct IkPolicy
{
	IkMode		mode;
	int64		ttl_ms;
	int64		retain_ms;
	bool		cache_5xx;
} IkPolicy;

extern IkMode ik_mode_from_name(const char *name);
extern void ik_policy_for(text *scope, IkPolicy *policy);

/* keylock.c: the per-key heavyweight lock */
extern uint64 ik_key_hash(text *scope, text *key);
extern bool ik_lock_key(uint64 keyhash, int wait_ms, bool *newly);
extern void ik_unlock_key(uint64 keyhash, bool newly);
extern void ik_register_keylock_callbacks(void);

/* tables.c: the extension's tables, found by name, checked and cached */
typedef struct IkColumnSpec
{
	const char *name;
	Oid			typid;
	bool		notnull;
} IkColumnSpec;

/* Columns of idempotency.keys that the library reads and writes. */
typedef enum IkKeysColumn
{
	IK_KEYS_SCOPE,
	IK_KEYS_KEY,
	IK_KEYS_FINGERPRINT,
	IK_KEYS_STATE,
	IK_KEYS_RESPONSE_STATUS,
	IK_KEYS_RESPONSE_HEADERS,
	IK_KEYS_RESPONSE_BODY,
	IK_KEYS_RECOVERY_POINT,
	IK_KEYS_LEASE_TOKEN,
	IK_KEYS_LEASE_DURATION,
	IK_KEYS_LEASE_EXPIRES_AT,
	IK_KEYS_CREATED_AT,
	IK_KEYS_EXPIRES_AT,
	IK_KEYS_RETAIN_UNTIL,
	IK_KEYS_NCOLUMNS
} IkKeysColumn;

/* Columns of idempotency.policies. */
typedef enum IkPoliciesColumn
{
	IK_POLICIES_SCOPE,
	IK_POLICIES_MODE,
	IK_POLICIES_TTL,
	IK_POLICIES_RETAIN,
	IK_POLICIES_CACHE_5XX,
	IK_POLICIES_NCOLUMNS
} IkPoliciesColumn;

/* Columns of idempotency.abandoned_claims (0.3.0 on). */
typedef enum IkAbandonedColumn
{
	IK_ABANDONED_SCOPE,
	IK_ABANDONED_KEY,
	IK_ABANDONED_RECOVERY_POINT,
	IK_ABANDONED_LEASE_TOKEN,
	IK_ABANDONED_FIRST_SEEN,
	IK_ABANDONED_LEASE_EXPIRES_AT,
	IK_ABANDONED_ABANDONED_AT,
	IK_ABANDONED_HOW,
	IK_ABANDONED_NCOLUMNS
} IkAbandonedColumn;

typedef struct IkTable
{
	/* what the table must be */
	const char *relname;		/* in schema idempotency */
	const IkColumnSpec *columns;
	int			ncolumns;
	const int  *lookup;			/* columns of the unique index rows are looked
								 * up by */
	int			nlookup;
	int			order_column;	/* written tables: the column rows are scanned
								 * in order of, by order_index */
	bool		written;		/* by the library: keep executor state */
	Oid			fixed_relid;	/* a Citus shard: opened by this OID, not
								 * found by relname in schema idempotency */

	/* what it was found to be; rebuilt after an invalidation */
	bool		valid;
	uint64		invalidations;	/* relcache invalidations seen */
	MemoryContext cxt;
	Oid			relid;
	AttrNumber *attnum;			/* of each column */
	Oid			lookup_index;
	int			lookup_position[2]; /* index column of each lookup column */
	Oid			order_index;	/* a btree index leading with order_column, or
								 * InvalidOid */
	int			nindexes;		/* written tables: every index ... */
	Oid		   *index_oids;
	struct IndexInfo **index_info;	/* ... with expression states compiled */
	struct ExprState **check_exprs; /* compiled CHECK constraints, or NULL */
	int			ndefaults;		/* defaults of the DBA's extra columns */
	AttrNumber *default_attnums;
	struct ExprState **default_exprs;
	struct EState *estate;		/* the executor state every write shares,
								 * holding the compiled expressions */
	MemoryContext query_cxt;	/* its own es_query_cxt */
	MemoryContext write_cxt;	/* its es_query_cxt during a write, reset
								 * after it */
	struct ResultRelInfo *rri;	/* its one result relation */
	Relation   *index_descs;	/* its indexes, opened by each write */
	TupleTableSlot *new_row;	/* the row a write makes */
	bool		runs_code;		/* a write may run a DBA's trigger or function
								 * (owner.c) */
} IkTable;

extern IkTable ik_keys_table;
extern IkTable ik_policies_table;
extern IkTable ik_abandoned_table;
extern bool ik_abandoned_table_exists(void);
extern void ik_tables_register_callbacks(void);
extern Relation ik_table_open(IkTable *table, LOCKMODE lockmode);
extern IkTable *ik_shard_table(const IkTable *shell, Oid relid,
							   int64 shardid);
extern Datum ik_table_value(const IkTable *table, TupleTableSlot *slot,
							int column, bool *isnull);
extern bool ik_extension_installed(void);

/* owner.c: a table's attached code run as its owner, safely */
typedef struct IkOwnerContext
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} IkOwnerContext;
extern void ik_owner_enter(IkOwnerContext *ctx, Oid owner);
extern void ik_owner_leave(IkOwnerContext *ctx);
extern bool ik_calls_user_code(Node *node, void *context);
extern void ik_owner_check_temp_objects(const char *relname);

/* store.c: the one storage path of idempotency.keys */
typedef struct IkResponse
{
	int32		status;
	Jsonb	   *headers;		/* NULL when SQL NULL; as stored (maybe a
								 * TOAST pointer) when read */
	Jsonb	   *body;
} IkResponse;

/* A row as read, checked against the table's invariants. */
typedef struct IkRow
{
	bool		found;
	ItemPointerData tid;		/* the version read */
	TransactionId xmin;			/* row version, to spot concurrent writers */
	bytea	   *fingerprint;
	bool		completed;		/* else a durable claim in progress */
	IkResponse	response;		/* when completed */
	text	   *recovery_point; /* NULL when SQL NULL */
	pg_uuid_t	lease_token;	/* the rest: durable claims in progress */
	int64		lease_ms;
	TimestampTz lease_expires_at;
	TimestampTz created_at;
	TimestampTz expires_at;
	TimestampTz retain_until;
} IkRow;

/* A row to write: a completed response, or a durable claim in progress. */
typedef struct IkWrite
{
	text	   *scope;
	text	   *key;
	bytea	   *fingerprint;
	bool		completed;
	IkResponse	response;		/* when completed */
	text	   *recovery_point; /* NULL when SQL NULL */
	pg_uuid_t	lease_token;	/* when in progress */
	int64		lease_ms;
	TimestampTz lease_expires_at;
	TimestampTz created_at;
	TimestampTz expires_at;
	TimestampTz retain_until;
} IkWrite;

/* What locking a row found. */
typedef enum IkLockResult
{
	IK_ROW_LOCKED,				/* locked; the row is its latest version */
	IK_ROW_GONE,				/* deleted by a transaction that committed */
	IK_ROW_BUSY					/* another transaction holds it past the wait */
} IkLockResult;

/* A row the reaper may delete, as its scan found it. */
typedef struct IkReapCandidate
{
	Oid			relid;			/* the table, or the Citus shard, it is in */
	int64		shardid;		/* 0 when not a shard */
	ItemPointerData tid;
	uint64		keyhash;
	TimestampTz retain_until;
	bool		completed;
	text	   *scope;
	text	   *key;
	text	   *recovery_point;
	pg_uuid_t	lease_token;	/* the rest: durable claims in progress */
	TimestampTz created_at;
	TimestampTz lease_expires_at;
} IkReapCandidate;

/* A durable claim nobody finished, as idempotency.abandoned_claims keeps it. */
typedef struct IkAbandoned
{
	text	   *scope;
	text	   *key;
	text	   *recovery_point; /* NULL when never recorded */
	pg_uuid_t	lease_token;
	TimestampTz first_seen;
	TimestampTz lease_expires_at;
	const char *how;			/* "reaped" or "replaced" */
} IkAbandoned;

extern void ik_store_register_callbacks(void);
extern void ik_store_lookup(text *scope, text *key, bool latest, IkRow *row);
extern void ik_store_fetch_reply(text *scope, text *key, IkRow *row);
extern void ik_store_insert(const IkWrite *w);
extern IkLockResult ik_store_lock(text *scope, text *key, IkRow *row,
								  int wait_ms);
extern void ik_store_update(text *scope, text *key, const IkRow *locked,
							const IkWrite *w);
extern void ik_store_delete(text *scope, text *key, const IkRow *locked);
extern int	ik_store_reap_scan(TimestampTz now, TimestampTz *cursor,
							   int limit, IkReapCandidate *candidates,
							   bool (*skip) (void *arg, uint64 keyhash,
											 TimestampTz retain_until),
							   void *skip_arg);
extern int	ik_store_reap_delete(IkReapCandidate *candidates, int n,
								 bool *deleted);
extern bool ik_store_record_abandoned(const IkAbandoned *a);

/* lease.c: durable claims */
extern void ik_new_lease_token(pg_uuid_t *token, bool recorded,
							   bool cache_5xx);
extern TimestampTz ik_retention_for_lease(TimestampTz created_at,
										  TimestampTz expires_at,
										  TimestampTz retain_until,
										  TimestampTz lease_end);
extern void ik_row_to_write(text *scope, text *key, const IkRow *row,
							IkWrite *w);
extern const char *ik_lease_complete(text *scope, text *key,
									 const pg_uuid_t *token,
									 const IkResponse *response);
extern void ik_lease_release(text *scope, text *key, const pg_uuid_t *token);
extern void ik_lease_take_over(text *scope, text *key, const IkRow *locked,
							   pg_uuid_t *token, int64 lease_ms);

/* xactstate.c: the claims this transaction holds open */
typedef struct IkClaim
{
	text	   *scope;
	text	   *key;
	bytea	   *fingerprint;
	TimestampTz created_at;
	IkPolicy	policy;			/* as it was at the claim */
	bool		replace;		/* a reaped-to-be row must be overwritten */
	bool		holds_lock;		/* of the key: shadowed claims may not */
	bool		freed;			/* closed by release() or a 5xx complete() */
	SubTransactionId opened_subid;	/* subtransaction that claimed it */
	SubTransactionId closed_subid;	/* subtransaction that closed it, or
									 * InvalidSubTransactionId while open */
} IkClaim;

extern void ik_register_xact_callbacks(void);
extern IkClaim *ik_claim_find(text *scope, text *key);
extern IkClaim *ik_claim_open(text *scope, text *key, bytea *fingerprint,
							  TimestampTz created_at, const IkPolicy *policy,
							  bool replace, bool holds_lock);
extern void ik_claim_close(IkClaim *claim, bool freed);


/* The counters (counters.h has the list). */
typedef enum IkCounter
{
#define IK_DATABASE(name, column, sqlstate) IK_##name,
#define IK_BOTH(name, column, sqlstate, offence) IK_##name,
#define IK_SCOPE(name, column, offence)
#include "counters.h"
#undef IK_DATABASE
#undef IK_BOTH
#undef IK_SCOPE
	IK_NUM_COUNTERS
} IkCounter;

typedef enum IkScopeCounter
{
#define IK_DATABASE(name, column, sqlstate)
#define IK_BOTH(name, column, sqlstate, offence) IK_SCOPE_##name,
#define IK_SCOPE(name, column, offence) IK_SCOPE_##name,
#include "counters.h"
#undef IK_DATABASE
#undef IK_BOTH
#undef IK_SCOPE
	IK_SCOPE_NUM_COUNTERS
} IkScopeCounter;

/* named_row.c: rows of the statistics functions, filled by column name */
typedef struct IkNamedValue
{
	const char *name;
	Datum		value;
	bool		isnull;
} IkNamedValue;

extern void ik_named(IkNamedValue *row, int *n, const char *name,
					 Datum value, bool isnull);
extern void ik_fill_by_name(TupleDesc desc, const IkNamedValue *row, int n,
							const char *funcname, Datum *values, bool *nulls);

/* counting.c: what the SQL-callable functions count */
extern void ik_count(IkCounter counter, uint64 n);
extern void ik_count_error(int sqlerrcode);
extern Datum ik_counted_call(PGFunction fn, FunctionCallInfo fcinfo,
							 bool is_claim);
extern void ik_scope_call_scope(text *scope);
extern void ik_scope_count_call(IkScopeCounter counter);
extern void ik_scope_count(text *scope, IkScopeCounter counter);

/* stats.c: counters per database in shared memory (preloaded library only) */
extern void ik_stats_install_hooks(void);
extern void ik_stats_prepare(void);
extern void ik_stats_add(IkCounter counter, uint64 n);
extern void ik_stats_add_latency(instr_time started);

/* scope_stats.c: counters per scope in shared memory (preloaded library only) */
typedef struct IkScopeStatsEntry
{
	Oid			dboid;
	int			encoding;		/* of the scope's bytes: its database's */
	uint32		len;
	char		scope[IK_MAX_NAME_BYTES];
	TimestampTz tracked_since;
	TimestampTz last_seen;
	uint64		counters[IK_SCOPE_NUM_COUNTERS];
} IkScopeStatsEntry;

typedef struct IkScopeStatsInfo
{
	int			max_entries;
	uint64		entries;
	uint64		evictions;
	uint64		evictions_with_errors;
	TimestampTz last_eviction;	/* 0 if none */
	uint64		shared_memory_bytes;
	TimestampTz stats_reset;
} IkScopeStatsInfo;

extern void ik_scope_stats_install_hooks(void);
extern bool ik_scope_stats_enabled(void);
extern void ik_scope_stats_require(void);
extern void ik_scope_stats_add(text *scope, const uint32 *counts);
extern IkScopeStatsEntry *ik_scope_stats_copy(Oid dboid, int *n);
extern void ik_scope_stats_read_info(IkScopeStatsInfo *info);
extern void ik_scope_stats_reset_all(void);
extern void ik_scope_stats_reset_scope(text *scope);

/* oncommit.c: what counts only once it committed */
extern void ik_count_on_commit(IkCounter counter, uint64 n);
extern void ik_report_abandoned(text *scope, text *key, text *recovery_point);
extern void ik_register_oncommit_callbacks(void);

/* subxact.c: surviving an error */
extern ErrorData *ik_try(void (*step) (void *arg), void *arg);
extern ErrorData *ik_try_keep(bool (*step) (void *arg), void *arg,
							  bool *kept);
extern bool ik_within_lock_timeout(void (*step) (void *arg), void *arg,
								   int wait_ms);

/* reap.c: deleting rows past retention */
#define IK_REAPER_RUN_MS	2000	/* longest run of the background reaper */
extern bool ik_reap_run(TimestampTz deadline, TimestampTz *cursor);

/* reap_skips.c: the rows the reaper could not delete (preloaded library only) */
#define IK_REAPER_SKIP_SLOTS 256	/* undeletable rows kept per database */
#define IK_REAPER_DATABASES 32	/* databases the background reaper serves */

typedef struct IkReapSkip
{
	uint64		keyhash;		/* of the row's scope and key */
	TimestampTz retain_until;	/* of the row */
	TimestampTz retry_at;
} IkReapSkip;

extern void ik_reap_skips_install_hooks(void);
extern void ik_reap_skips_keep(Oid dboid);
extern void ik_reap_skips_forget(Oid dboid);
extern int	ik_reap_skipped_rows(IkReapSkip *skipped, TimestampTz now);
extern void ik_reap_skip_row(const IkReapSkip *row);

/* reaper.c: the background reaper (preloaded library only) */
extern bool ik_check_reaper_databases(char **newval, void **extra,
									  GucSource source);
extern void ik_register_reaper_launcher(void);

#endif							/* IDEMPOTENCY_H */

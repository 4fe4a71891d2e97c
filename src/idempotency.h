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
#include "utils/timestamp.h"
#include "fmgr.h"
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
/* the caller broke the claim protocol */
#define ERRCODE_IK_PROTOCOL_VIOLATION	MAKE_SQLSTATE('I','K','4','2','8')

/* Longest scope or key, in bytes, and longest caller-made fingerprint. */
#define IK_MAX_NAME_BYTES	255
#define IK_MAX_FINGERPRINT_BYTES 255
#define IK_MAX_PATH_BYTES	8192
#define IK_MAX_RECOVERY_POINT_BYTES 1024

/* guc.c */
extern int	ik_lock_timeout_ms;
extern int	ik_ttl_s;
extern int	ik_retain_s;
extern char *ik_fingerprint_secret;
extern int	ik_mode;
extern int	ik_enforce_percent;
extern char *ik_reaper_databases;
extern int	ik_reaper_naptime_s;
extern int	ik_reaper_batch_size;
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
extern bool ik_lock_key(uint64 keyhash, int wait_ms);
extern void ik_unlock_key(uint64 keyhash);

/* store.c: rows of idempotency.keys */
typedef struct IkResponse
{
	int32		status;
	Jsonb	   *headers;		/* NULL when SQL NULL */
	Jsonb	   *body;
} IkResponse;

typedef struct IkRow
{
	bool		found;
	TransactionId xmin;			/* row version, to spot concurrent writers */
	bytea	   *fingerprint;
	bool		completed;		/* else a durable claim in progress */
	bool		status_isnull;
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
	pg_uuid_t	lease_token;	/* when in progress */
	int64		lease_ms;
	TimestampTz lease_expires_at;
	TimestampTz created_at;
	TimestampTz expires_at;
	TimestampTz retain_until;
} IkWrite;

extern void ik_store_register_callbacks(void);
extern void ik_store_lookup(text *scope, text *key, bool latest, IkRow *row);
extern void ik_store_write(const IkWrite *row, bool replace);
extern bool ik_store_policy(text *scope, IkPolicy *policy);
extern void ik_store_record(const IkWrite *row, TimestampTz now);
extern bool ik_store_resume(text *scope, text *key, const pg_uuid_t *old_token,
							const pg_uuid_t *new_token, int64 lease_ms,
							TimestampTz lease_expires_at);
extern bool ik_store_checkpoint(text *scope, text *key, const pg_uuid_t *token,
								text *recovery_point, TimestampTz now);
extern bool ik_store_finish(text *scope, text *key, const pg_uuid_t *token,
							const IkResponse *response);
extern bool ik_store_forget(text *scope, text *key, const pg_uuid_t *token);

/* lease.c: durable claims */
extern void ik_new_lease_token(pg_uuid_t *token);
extern void ik_lease_complete(text *scope, text *key, pg_uuid_t *token,
							  const IkResponse *response);
extern void ik_lease_release(text *scope, text *key, pg_uuid_t *token);
extern void ik_report_abandoned(text *scope, text *key, text *recovery_point);

/* xactstate.c: the claims this transaction holds open */
typedef struct IkClaim
{
	text	   *scope;
	text	   *key;
	bytea	   *fingerprint;
	TimestampTz created_at;
	IkPolicy	policy;			/* as it was at the claim */
	bool		replace;		/* a reaped-to-be row must be overwritten */
	SubTransactionId opened_subid;	/* subtransaction that claimed it */
	SubTransactionId closed_subid;	/* subtransaction that closed it, or
									 * InvalidSubTransactionId while open */
} IkClaim;

extern void ik_register_xact_callbacks(void);
extern IkClaim *ik_claim_find(text *scope, text *key);
extern IkClaim *ik_claim_open(text *scope, text *key, bytea *fingerprint,
							  TimestampTz created_at, const IkPolicy *policy,
							  bool replace);
extern void ik_claim_close(IkClaim *claim);


/* stats.c: counters in shared memory (preloaded library only) */
typedef enum IkCounter
{
	IK_CLAIMS_NEW,
	IK_CLAIMS_REPLAY,
	IK_CLAIMS_RESUME,
	IK_ERRORS_IK400,
	IK_ERRORS_IK409,
	IK_ERRORS_IK410,
	IK_ERRORS_IK422,
	IK_ERRORS_IK428,
	IK_COMPLETIONS,
	IK_RELEASES,
	IK_RELEASES_5XX,
	IK_SHADOW_WOULD_REPLAY,
	IK_SHADOW_WOULD_CONFLICT,
	IK_SHADOW_WOULD_IK422,
	IK_SHADOW_WOULD_IK410,
	IK_REAPED_ROWS,
	IK_ABANDONED_CLAIMS,
	IK_REAPER_RUNS,
	IK_NUM_COUNTERS				/* the view's columns follow this order */
} IkCounter;

extern void ik_stats_install_hooks(void);
extern void ik_count(IkCounter counter, uint64 n);
extern void ik_count_error(int sqlerrcode);
extern Datum ik_counted_call(PGFunction fn, FunctionCallInfo fcinfo,
							 bool is_claim);
extern void ik_count_reap(uint64 rows);

/* subxact.c */
extern ErrorData *ik_try(void (*step) (void *arg), void *arg);

/* reap.c */
extern int64 ik_reap_batch(int limit, TimestampTz now);

/* reaper.c: the background reaper (preloaded library only) */
extern bool ik_check_reaper_databases(char **newval, void **extra,
									  GucSource source);
extern void ik_register_reaper_launcher(void);

#endif							/* IDEMPOTENCY_H */

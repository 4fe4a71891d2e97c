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
#include "fmgr.h"
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

/* guc.c */
extern int	ik_lock_timeout_ms;
extern int	ik_ttl_s;
extern int	ik_retain_s;
extern char *ik_fingerprint_secret;
extern void ik_define_gucs(void);

/* validate.c: argument checks that raise IK400 naming the argument */
extern text *ik_arg_text(FunctionCallInfo fcinfo, int argno,
						 const char *argname, int maxbytes);
extern text *ik_arg_name(FunctionCallInfo fcinfo, int argno,
						 const char *argname);
extern bytea *ik_arg_fingerprint(FunctionCallInfo fcinfo, int argno,
								 const char *argname);
extern int64 ik_arg_interval_ms(FunctionCallInfo fcinfo, int argno,
								const char *argname, bool *isnull);
extern int32 ik_arg_status(FunctionCallInfo fcinfo, int argno,
						   const char *argname);
extern void ik_check_argument_not_null(FunctionCallInfo fcinfo, int argno,
									   const char *argname);

/* keylock.c: the per-key heavyweight lock */
extern uint64 ik_key_hash(text *scope, text *key);
extern bool ik_lock_key(uint64 keyhash, int wait_ms);

/* store.c: rows of idempotency.keys, through saved SPI plans */
typedef struct IkRow
{
	bool		found;
	TransactionId xmin;			/* row version, to spot concurrent writers */
	bytea	   *fingerprint;
	bool		completed;		/* else a durable claim in progress */
	bool		status_isnull;
	int32		response_status;
	Jsonb	   *response_headers;	/* NULL when SQL NULL */
	Jsonb	   *response_body;
	text	   *recovery_point;
	TimestampTz created_at;
	TimestampTz expires_at;
	TimestampTz retain_until;
} IkRow;

typedef struct IkResponse
{
	int32		status;
	Jsonb	   *headers;		/* NULL when SQL NULL */
	Jsonb	   *body;
} IkResponse;

extern void ik_store_lookup(text *scope, text *key, bool latest, IkRow *row);
extern void ik_store_save(text *scope, text *key, bytea *fingerprint,
						  TimestampTz created_at, TimestampTz expires_at,
						  TimestampTz retain_until, bool replace,
						  const IkResponse *response);

/* xactstate.c: the claims this transaction holds open */
typedef struct IkClaim
{
	text	   *scope;
	text	   *key;
	bytea	   *fingerprint;
	TimestampTz created_at;
	int			ttl_s;
	int			retain_s;
	bool		replace;		/* a reaped-to-be row must be overwritten */
	SubTransactionId opened_subid;	/* subtransaction that claimed it */
	SubTransactionId closed_subid;	/* subtransaction that closed it, or
									 * InvalidSubTransactionId while open */
} IkClaim;

extern void ik_register_xact_callbacks(void);
extern IkClaim *ik_claim_find(text *scope, text *key);
extern IkClaim *ik_claim_open(text *scope, text *key, bytea *fingerprint,
							  TimestampTz created_at, int ttl_s, int retain_s,
							  bool replace);
extern void ik_claim_close(IkClaim *claim);


#endif							/* IDEMPOTENCY_H */

/*-------------------------------------------------------------------------
 *
 * validate.c
 *	  Argument checks shared by the SQL-callable functions.
 *
 * Every bad argument is an IK400 whose message names the argument, so that
 * an API can turn it into a 400 reply without parsing text.  None of the
 * functions is STRICT: a NULL must be an error, never a NULL result.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include <limits.h>

#include "access/xlog.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "common/int.h"
#include "mb/pg_wchar.h"
#include "utils/timestamp.h"

/*
 * The functions that write refuse to run on a standby, and in a read-only
 * transaction, before anything else: a claim belongs in the transaction of
 * a charge, which cannot run there either.
 */
void
ik_require_writable(const char *funcname)
{
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot run %s on a standby", funcname),
				 errhint("Idempotency keys are claimed on the primary, in the transaction of the charge they guard.")));
	PreventCommandIfReadOnly(funcname);
}

void
ik_check_argument_not_null(FunctionCallInfo fcinfo, int argno,
						   const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_IK_INVALID_ARGUMENT),
				 errmsg("argument \"%s\" must not be null", argname)));
}

/*
 * Text of 1 to maxbytes bytes without control characters, since scopes,
 * keys and paths end up in logs, support tools and HTTP headers.  In a
 * UTF-8 database the C1 controls (U+0080 to U+009F) count too.
 */
text *
ik_arg_text(FunctionCallInfo fcinfo, int argno, const char *argname,
			int maxbytes)
{
	text	   *t;
	const unsigned char *p;
	int			len;
	bool		utf8 = (GetDatabaseEncoding() == PG_UTF8);

	ik_check_argument_not_null(fcinfo, argno, argname);
	t = PG_GETARG_TEXT_PP(argno);
	p = (const unsigned char *) VARDATA_ANY(t);
	len = VARSIZE_ANY_EXHDR(t);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_IK_INVALID_ARGUMENT),
				 errmsg("argument \"%s\" must not be empty", argname)));
	if (len > maxbytes)
		ereport(ERROR,
				(errcode(ERRCODE_IK_INVALID_ARGUMENT),
				 errmsg("argument \"%s\" is too long", argname),
				 errdetail("It is %d bytes long; the limit is %d bytes.",
						   len, maxbytes)));

	for (int i = 0; i < len; i++)
	{
		bool		c1 = utf8 && p[i] == 0xC2 && i + 1 < len &&
			p[i + 1] >= 0x80 && p[i + 1] <= 0x9F;

		if (p[i] < 0x20 || p[i] == 0x7F || c1)
			ereport(ERROR,
					(errcode(ERRCODE_IK_INVALID_ARGUMENT),
					 errmsg("argument \"%s\" contains a control character",
							argname),
					 errdetail("The character at byte offset %d is not allowed.",
							   i)));
	}
	return t;
}

/* A scope or key. */
text *
ik_arg_name(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	return ik_arg_text(fcinfo, argno, argname, IK_MAX_NAME_BYTES);
}

/* A fingerprint made by the caller: 1 to 255 bytes. */
bytea *
ik_arg_fingerprint(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	bytea	   *b;
	int			len;

	ik_check_argument_not_null(fcinfo, argno, argname);
	b = PG_GETARG_BYTEA_PP(argno);
	len = VARSIZE_ANY_EXHDR(b);
	if (len == 0 || len > IK_MAX_FINGERPRINT_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_IK_INVALID_ARGUMENT),
				 errmsg("argument \"%s\" must be 1 to %d bytes long",
						argname, IK_MAX_FINGERPRINT_BYTES),
				 errdetail("It is %d bytes long.", len),
				 errhint("Pass the result of idempotency.fingerprint().")));
	return b;
}

/*
 * An interval as whole milliseconds: its microseconds in all, divided by
 * 1000 and truncated toward zero.  Months count as 30 days, as interval
 * arithmetic does elsewhere in PostgreSQL.  Plain 64-bit arithmetic cannot
 * overflow here, on any platform: the month and day parts are whole
 * milliseconds, at most 2^31 * 31 days (5.8e18 ms) in magnitude, and the
 * time part adds at most 9.3e15 ms.  Only the truncation needs care, since
 * the parts may have opposite signs.
 */
int64
ik_interval_ms(const Interval *iv)
{
	int64		ms = ((int64) iv->month * DAYS_PER_MONTH + iv->day) *
		(USECS_PER_DAY / 1000) + iv->time / 1000;
	int64		rest = iv->time % 1000;

	if (ms > 0 && rest < 0)
		ms--;
	else if (ms < 0 && rest > 0)
		ms++;
	return ms;
}

/*
 * t plus a non-negative number of milliseconds, saturating at the end of
 * time: a replay window or retention that ends past the last representable
 * timestamp never ends, which 'infinity' says exactly.  Plain addition
 * would wrap around into the past and expire the key at once.
 */
TimestampTz
ik_time_plus_ms(TimestampTz t, int64 ms)
{
	int64		us;
	TimestampTz result;

	if (pg_mul_s64_overflow(ms, 1000, &us) ||
		pg_add_s64_overflow(t, us, &result) ||
		!IS_VALID_TIMESTAMP(result))
		return DT_NOEND;
	return result;
}

/*
 * A non-negative interval argument as milliseconds, at most INT_MAX so
 * that it fits a lock timeout.  *isnull reports SQL NULL, which callers
 * give their own meaning.
 */
int64
ik_arg_interval_ms(FunctionCallInfo fcinfo, int argno, const char *argname,
				   bool *isnull)
{
	int64		ms;

	*isnull = PG_ARGISNULL(argno);
	if (*isnull)
		return 0;
	ms = ik_interval_ms(PG_GETARG_INTERVAL_P(argno));
	if (ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_IK_INVALID_ARGUMENT),
				 errmsg("argument \"%s\" must not be negative", argname)));
	if (ms > INT_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_IK_INVALID_ARGUMENT),
				 errmsg("argument \"%s\" is too long", argname),
				 errdetail("The limit is 24 days 20:31:23.647 (%d milliseconds), the longest lock timeout.",
						   INT_MAX)));
	return ms;
}

/* A lease token. */
pg_uuid_t *
ik_arg_token(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	ik_check_argument_not_null(fcinfo, argno, argname);
	return PG_GETARG_UUID_P(argno);
}

/* An HTTP status code. */
int32
ik_arg_status(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	int32		status;

	ik_check_argument_not_null(fcinfo, argno, argname);
	status = PG_GETARG_INT32(argno);
	if (status < 100 || status > 599)
		ereport(ERROR,
				(errcode(ERRCODE_IK_INVALID_ARGUMENT),
				 errmsg("argument \"%s\" must be an HTTP status from 100 to 599",
						argname),
				 errdetail("It is %d.", status)));
	return status;
}

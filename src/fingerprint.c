/*-------------------------------------------------------------------------
 *
 * fingerprint.c
 *	  Request fingerprints: SHA-256, or HMAC-SHA256 under a secret.
 *
 * fingerprint(method, path, body jsonb) hashes a canonical encoding of the
 * request, so that bodies equal as jsonb fingerprint equal.  jsonb itself
 * already drops white space, keeps the last of duplicate keys and sorts
 * object keys; the one thing it keeps that jsonb equality ignores is the
 * spelling of a number (1000 vs 1000.0), which the encoding normalizes.
 *
 * The encoding, version "IKv1", is a prefix code, so no two requests share
 * one:
 *	  "IKv1" 'm' len method-in-upper-case 'p' len path value
 * where a value is 'z' (null), 't', 'f', 's' len bytes (string),
 * 'n' len normalized-digits (number), '[' values ']', or
 * '{' (string value)* '}' in jsonb's key order; len is 4 bytes big-endian.
 *
 * fingerprint(body bytea) hashes the bytes as they are.  Both agree with
 * pgcrypto's digest(..., 'sha256') and hmac(..., 'sha256') over the same
 * bytes; PostgreSQL's own SHA-256 is called directly to spare a function
 * call per request.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include "hasher.h"
#include "utils/builtins.h"
#include "utils/numeric.h"

PG_FUNCTION_INFO_V1(idempotency_fingerprint_request);
PG_FUNCTION_INFO_V1(idempotency_fingerprint_request_text);
PG_FUNCTION_INFO_V1(idempotency_fingerprint_bytes);

#define IK_METHOD_MAX_BYTES 32

static void
hash_scalar(Hasher *h, const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			hasher_tag(h, 'z');
			break;
		case jbvBool:
			hasher_tag(h, v->val.boolean ? 't' : 'f');
			break;
		case jbvString:
			hasher_chunk(h, 's', v->val.string.val, v->val.string.len);
			break;
		case jbvNumeric:
			{
				/* "1000.0" and "1e3" both become "1000" */
				char	   *digits = numeric_normalize(v->val.numeric);

				hasher_chunk(h, 'n', digits, strlen(digits));
				pfree(digits);
				break;
			}
		default:
			elog(ERROR, "unexpected jsonb scalar type %d", (int) v->type);
	}
}

static void
hash_jsonb(Hasher *h, Jsonb *body)
{
	JsonbIterator *it = JsonbIteratorInit(&body->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		raw_scalar = false;

	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		switch (tok)
		{
			case WJB_BEGIN_ARRAY:
				/* a top-level scalar is stored as a one-element array */
				raw_scalar = v.val.array.rawScalar;
				if (!raw_scalar)
					hasher_tag(h, '[');
				break;
			case WJB_END_ARRAY:
				if (!raw_scalar)
					hasher_tag(h, ']');
				raw_scalar = false;
				break;
			case WJB_BEGIN_OBJECT:
				hasher_tag(h, '{');
				break;
			case WJB_END_OBJECT:
				hasher_tag(h, '}');
				break;
			case WJB_KEY:
			case WJB_VALUE:
			case WJB_ELEM:
				hash_scalar(h, &v);
				break;
			case WJB_DONE:
				break;
		}
	}
}

/* HTTP method: an RFC 9110 token of letters, digits and !#$%&'*+-.^_`|~ */
static text *
arg_method(FunctionCallInfo fcinfo, int argno)
{
	text	   *method = ik_arg_text(fcinfo, argno, "method",
									 IK_METHOD_MAX_BYTES);
	const char *p = VARDATA_ANY(method);
	int			len = VARSIZE_ANY_EXHDR(method);

	for (int i = 0; i < len; i++)
	{
		if (!isalnum((unsigned char) p[i]) && !strchr("!#$%&'*+-.^_`|~", p[i]))
			ereport(ERROR,
					(errcode(ERRCODE_IK_INVALID_ARGUMENT),
					 errmsg("argument \"method\" is not an HTTP method token"),
					 errdetail("The character at byte offset %d is not allowed.",
							   i)));
	}
	return method;
}

static bytea *
fingerprint_request_under(const char *secret, text *method, text *path,
						  Jsonb *body)
{
	Hasher		h;
	int			mlen = VARSIZE_ANY_EXHDR(method);
	char		upper[IK_METHOD_MAX_BYTES];

	for (int i = 0; i < mlen; i++)
		upper[i] = pg_ascii_toupper(VARDATA_ANY(method)[i]);

	hasher_init(&h, secret);
	hasher_add(&h, "IKv1", 4);
	hasher_chunk(&h, 'm', upper, mlen);
	hasher_chunk(&h, 'p', VARDATA_ANY(path), VARSIZE_ANY_EXHDR(path));
	hash_jsonb(&h, body);
	return hasher_finish(&h);
}

/*
 * While a rotation runs, a claim must know a retry of a request first
 * claimed under the previous secret; but it gets only the fingerprint
 * under the current one, and cannot compute another from it.  So each
 * fingerprint this session computes while a previous secret is set is
 * remembered with the one under the previous secret, and claim() asks
 * (ik_fingerprint_matches()) whether the fingerprint it was given is one
 * of those whose previous form is the stored one.  A fingerprint made
 * elsewhere is not known here, and matches only itself: that can refuse a
 * retry (IK422), never make two requests one.  claim(...,
 * fingerprint(...)) in one statement, as the README shows, is always
 * known.  The entries are the last few, for the claims of one statement
 * or transaction.
 */
#define ROTATION_MEMO_SIZE 64

typedef struct RotationMemo
{
	uint8		current[PG_SHA256_DIGEST_LENGTH];
	uint8		previous[PG_SHA256_DIGEST_LENGTH];
} RotationMemo;

static RotationMemo rotation_memo[ROTATION_MEMO_SIZE];
static int	rotation_memo_used = 0;
static int	rotation_memo_next = 0;

static void
remember_previous(const bytea *current, const bytea *previous)
{
	RotationMemo *m = &rotation_memo[rotation_memo_next];

	memcpy(m->current, VARDATA(current), PG_SHA256_DIGEST_LENGTH);
	memcpy(m->previous, VARDATA(previous), PG_SHA256_DIGEST_LENGTH);
	rotation_memo_next = (rotation_memo_next + 1) % ROTATION_MEMO_SIZE;
	if (rotation_memo_used < ROTATION_MEMO_SIZE)
		rotation_memo_used++;
}

static const char *
current_secret(void)
{
	return ik_secret_value(ik_fingerprint_secret,
						   "idempotency.fingerprint_secret");
}

/* The previous secret, or NULL when no rotation runs. */
static const char *
previous_secret(void)
{
	const char *previous = ik_secret_value(ik_fingerprint_secret_previous,
										   "idempotency.fingerprint_secret_previous");

	return previous[0] != '\0' ? previous : NULL;
}

/*
 * Whether a claim's fingerprint is that of the request a row was stored
 * for: the same bytes, or, while a rotation runs, a fingerprint this
 * session computed whose form under the previous secret is the stored one.
 */
bool
ik_fingerprint_matches(const bytea *stored, const bytea *given)
{
	if (ik_same_bytes(stored, given))
		return true;
	if (VARSIZE_ANY_EXHDR(stored) != PG_SHA256_DIGEST_LENGTH ||
		VARSIZE_ANY_EXHDR(given) != PG_SHA256_DIGEST_LENGTH ||
		previous_secret() == NULL)
		return false;
	for (int i = 0; i < rotation_memo_used; i++)
	{
		const RotationMemo *m = &rotation_memo[i];

		if (memcmp(m->current, VARDATA_ANY(given), PG_SHA256_DIGEST_LENGTH) == 0 &&
			memcmp(m->previous, VARDATA_ANY(stored), PG_SHA256_DIGEST_LENGTH) == 0)
			return true;
	}
	return false;
}

static bytea *
fingerprint_request(text *method, text *path, Jsonb *body)
{
	bytea	   *fingerprint = fingerprint_request_under(current_secret(),
														method, path, body);
	const char *previous = previous_secret();

	if (previous != NULL)
		remember_previous(fingerprint,
						  fingerprint_request_under(previous, method, path,
													body));
	return fingerprint;
}

/* fingerprint(method text, path text, body jsonb) */
static Datum
fingerprint_jsonb(FunctionCallInfo fcinfo)
{
	text	   *method = arg_method(fcinfo, 0);
	text	   *path = ik_arg_text(fcinfo, 1, "path", IK_MAX_PATH_BYTES);

	ik_check_argument_not_null(fcinfo, 2, "body");
	PG_RETURN_BYTEA_P(fingerprint_request(method, path, PG_GETARG_JSONB_P(2)));
}

/*
 * Parse a body given as text.  Any data error of jsonb's input function
 * (bad syntax, \u0000, a number out of range) becomes an IK400; other
 * errors, such as a cancel, propagate.  The error is caught only to raise
 * another one at once, so no subtransaction is needed: the function stays
 * safe to run in parallel workers, where none can be started.
 */
static Jsonb *
parse_body(text *body)
{
	MemoryContext context = CurrentMemoryContext;
	char	   *cstring = text_to_cstring(body);
	Jsonb	   *volatile jsonb = NULL;

	PG_TRY();
	{
		jsonb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
												   CStringGetDatum(cstring)));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(context);
		edata = CopyErrorData();
		if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
			PG_RE_THROW();
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_IK_INVALID_ARGUMENT),
				 errmsg("argument \"body\" is not valid JSON"),
				 errdetail("%s", edata->message)));
	}
	PG_END_TRY();
	return jsonb;
}

/* fingerprint(method text, path text, body text) */
static Datum
fingerprint_text(FunctionCallInfo fcinfo)
{
	text	   *method = arg_method(fcinfo, 0);
	text	   *path = ik_arg_text(fcinfo, 1, "path", IK_MAX_PATH_BYTES);

	ik_check_argument_not_null(fcinfo, 2, "body");
	PG_RETURN_BYTEA_P(fingerprint_request(method, path,
										  parse_body(PG_GETARG_TEXT_PP(2))));
}

/* fingerprint(body bytea) */
static Datum
fingerprint_bytes(FunctionCallInfo fcinfo)
{
	bytea	   *body;
	Hasher		h;
	bytea	   *fingerprint;
	const char *previous;

	ik_check_argument_not_null(fcinfo, 0, "body");
	body = PG_GETARG_BYTEA_PP(0);
	hasher_init(&h, current_secret());
	hasher_add(&h, VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body));
	fingerprint = hasher_finish(&h);
	previous = previous_secret();
	if (previous != NULL)
	{
		hasher_init(&h, previous);
		hasher_add(&h, VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body));
		remember_previous(fingerprint, hasher_finish(&h));
	}
	PG_RETURN_BYTEA_P(fingerprint);
}

Datum
idempotency_fingerprint_request(PG_FUNCTION_ARGS)
{
	return ik_counted_call(fingerprint_jsonb, fcinfo, false);
}

Datum
idempotency_fingerprint_request_text(PG_FUNCTION_ARGS)
{
	return ik_counted_call(fingerprint_text, fcinfo, false);
}

Datum
idempotency_fingerprint_bytes(PG_FUNCTION_ARGS)
{
	return ik_counted_call(fingerprint_bytes, fcinfo, false);
}

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

#include "common/cryptohash.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "utils/builtins.h"
#include "utils/numeric.h"

PG_FUNCTION_INFO_V1(idempotency_fingerprint_request);
PG_FUNCTION_INFO_V1(idempotency_fingerprint_request_text);
PG_FUNCTION_INFO_V1(idempotency_fingerprint_bytes);

#define IK_METHOD_MAX_BYTES 32

/* SHA-256 or HMAC-SHA256, fed through a buffer to keep calls few. */
typedef struct Hasher
{
	pg_cryptohash_ctx *hash;
	pg_hmac_ctx *hmac;
	int			used;
	uint8		buf[8192];
} Hasher;

static void
hasher_fail(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg("could not %s SHA-256 fingerprint", what)));
}

static void
hasher_init(Hasher *h)
{
	h->used = 0;
	h->hash = NULL;
	h->hmac = NULL;
	if (ik_fingerprint_secret != NULL && ik_fingerprint_secret[0] != '\0')
	{
		h->hmac = pg_hmac_create(PG_SHA256);
		if (h->hmac == NULL ||
			pg_hmac_init(h->hmac, (const uint8 *) ik_fingerprint_secret,
						 strlen(ik_fingerprint_secret)) < 0)
			hasher_fail("initialize");
	}
	else
	{
		h->hash = pg_cryptohash_create(PG_SHA256);
		if (h->hash == NULL || pg_cryptohash_init(h->hash) < 0)
			hasher_fail("initialize");
	}
}

static void
hasher_flush(Hasher *h, const uint8 *data, size_t len)
{
	int			rc;

	if (len == 0)
		return;
	rc = h->hmac ? pg_hmac_update(h->hmac, data, len)
		: pg_cryptohash_update(h->hash, data, len);
	if (rc < 0)
		hasher_fail("compute");
}

static void
hasher_add(Hasher *h, const void *data, size_t len)
{
	if (h->used + len > sizeof(h->buf))
	{
		hasher_flush(h, h->buf, h->used);
		h->used = 0;
		if (len > sizeof(h->buf))
		{
			hasher_flush(h, data, len);
			return;
		}
	}
	memcpy(h->buf + h->used, data, len);
	h->used += len;
}

static void
hasher_tag(Hasher *h, char tag)
{
	hasher_add(h, &tag, 1);
}

/* tag, 4-byte big-endian length, bytes */
static void
hasher_chunk(Hasher *h, char tag, const char *data, uint32 len)
{
	uint8		hdr[5];

	hdr[0] = (uint8) tag;
	hdr[1] = (uint8) (len >> 24);
	hdr[2] = (uint8) (len >> 16);
	hdr[3] = (uint8) (len >> 8);
	hdr[4] = (uint8) len;
	hasher_add(h, hdr, sizeof(hdr));
	hasher_add(h, data, len);
}

static bytea *
hasher_finish(Hasher *h)
{
	bytea	   *result = palloc(VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	uint8	   *dest = (uint8 *) VARDATA(result);
	int			rc;

	hasher_flush(h, h->buf, h->used);
	if (h->hmac)
	{
		rc = pg_hmac_final(h->hmac, dest, PG_SHA256_DIGEST_LENGTH);
		pg_hmac_free(h->hmac);
	}
	else
	{
		rc = pg_cryptohash_final(h->hash, dest, PG_SHA256_DIGEST_LENGTH);
		pg_cryptohash_free(h->hash);
	}
	if (rc < 0)
		hasher_fail("finish");
	SET_VARSIZE(result, VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	return result;
}

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
fingerprint_request(text *method, text *path, Jsonb *body)
{
	Hasher		h;
	int			mlen = VARSIZE_ANY_EXHDR(method);
	char		upper[IK_METHOD_MAX_BYTES];

	for (int i = 0; i < mlen; i++)
		upper[i] = pg_ascii_toupper(VARDATA_ANY(method)[i]);

	hasher_init(&h);
	hasher_add(&h, "IKv1", 4);
	hasher_chunk(&h, 'm', upper, mlen);
	hasher_chunk(&h, 'p', VARDATA_ANY(path), VARSIZE_ANY_EXHDR(path));
	hash_jsonb(&h, body);
	return hasher_finish(&h);
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

	ik_check_argument_not_null(fcinfo, 0, "body");
	body = PG_GETARG_BYTEA_PP(0);
	hasher_init(&h);
	hasher_add(&h, VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body));
	PG_RETURN_BYTEA_P(hasher_finish(&h));
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

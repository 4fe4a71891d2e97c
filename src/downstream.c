/*-------------------------------------------------------------------------
 *
 * downstream.c
 *	  downstream_key(): the idempotency key to send to a payment processor.
 *
 * Our keys protect a request for their retention; after it a retry is a
 * new request.  Processors keep idempotency keys of their own, some for
 * longer (Adyen 31 days), but only for requests that carry one.  A
 * downstream key is that key, derived from the request, so that every
 * attempt at it, whoever makes it and whenever, sends the processor the
 * same key: HMAC-SHA256, under idempotency.downstream_secret, of the
 * scope, the key, the request's fingerprint (the one its key's row was
 * claimed with, under a rotated fingerprint secret) and a purpose (authorize,
 * capture, refund: one request makes several calls), as a prefix code.
 * It is printed as "ikd1_" and the first 160 bits in lower-case base32,
 * 37 characters, which every processor's key format accepts.
 *
 * "ikd1" names the derivation, which never changes; a new one would get a
 * new name.  The secret must not change either, nor differ between the
 * nodes of a cluster, since a changed secret changes every key.  It is
 * not the fingerprint secret, which operators may rotate.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include "hasher.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(idempotency_downstream_key);

#define DOWNSTREAM_PREFIX		"ikd1_"
#define DOWNSTREAM_BITS			160
#define IK_MAX_PURPOSE_BYTES	64

static const char base32[] = "abcdefghijklmnopqrstuvwxyz234567";

/*
 * The fingerprint to derive from: the one the key's row was claimed with
 * when the given one is of the same request (ik_fingerprint_matches(): the
 * same bytes, or the same request under a rotated fingerprint secret), so
 * that a rotation during a durable claim changes no downstream key; the
 * given one when the key has no row, or a row of another request.
 */
static bytea *
claimed_fingerprint(text *scope, text *key, bytea *given)
{
	IkRow		row;

	ik_store_lookup(scope, key, false, &row);
	if (row.found && ik_fingerprint_matches(row.fingerprint, given))
		return row.fingerprint;
	return given;
}

/*
 * downstream_key(scope text, key text, fingerprint bytea, purpose text)
 * RETURNS text
 */
static Datum
downstream_key(FunctionCallInfo fcinfo)
{
	text	   *scope = ik_arg_name(fcinfo, 0, "scope");
	text	   *key = ik_arg_name(fcinfo, 1, "key");
	bytea	   *fingerprint = ik_arg_fingerprint(fcinfo, 2, "fingerprint");
	text	   *purpose = ik_arg_text(fcinfo, 3, "purpose", IK_MAX_PURPOSE_BYTES);
	Hasher		h;
	bytea	   *digest;
	const uint8 *bytes;
	char		out[sizeof(DOWNSTREAM_PREFIX) + DOWNSTREAM_BITS / 5];
	int			n = 0;

	const char *secret = ik_secret_value(ik_downstream_secret,
										 "idempotency.downstream_secret");

	if (secret[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("idempotency.downstream_secret is not set"),
				 errdetail("Downstream keys are derived under a secret of their own, which must never change."),
				 errhint("Set idempotency.downstream_secret once, in postgresql.conf of every node, with the library preloaded.")));

	fingerprint = claimed_fingerprint(scope, key, fingerprint);
	hasher_init(&h, secret);
	hasher_add(&h, "IKd1", 4);
	hasher_chunk(&h, 's', VARDATA_ANY(scope), VARSIZE_ANY_EXHDR(scope));
	hasher_chunk(&h, 'k', VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key));
	hasher_chunk(&h, 'f', VARDATA_ANY(fingerprint), VARSIZE_ANY_EXHDR(fingerprint));
	hasher_chunk(&h, 'p', VARDATA_ANY(purpose), VARSIZE_ANY_EXHDR(purpose));
	digest = hasher_finish(&h);
	bytes = (const uint8 *) VARDATA(digest);

	memcpy(out, DOWNSTREAM_PREFIX, strlen(DOWNSTREAM_PREFIX));
	n = strlen(DOWNSTREAM_PREFIX);
	for (int bit = 0; bit < DOWNSTREAM_BITS; bit += 5)
	{
		int			byte = bit / 8;
		int			shift = bit % 8;
		int			v = (bytes[byte] << 8 | bytes[byte + 1]) >> (11 - shift);

		out[n++] = base32[v & 0x1f];
	}
	out[n] = '\0';
	PG_RETURN_TEXT_P(cstring_to_text(out));
}

Datum
idempotency_downstream_key(PG_FUNCTION_ARGS)
{
	return ik_counted_call(downstream_key, fcinfo, false);
}

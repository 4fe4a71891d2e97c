/*-------------------------------------------------------------------------
 *
 * hasher.c
 *	  SHA-256, or HMAC-SHA256 under a secret, over a prefix-coded message.
 *
 * PostgreSQL's own SHA-256 and HMAC are called directly, rather than
 * pgcrypto's SQL functions, to spare a function call per request; they
 * agree with pgcrypto's digest(..., 'sha256') and hmac(..., 'sha256')
 * over the same bytes.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include "hasher.h"

static void
hasher_fail(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg("could not %s a SHA-256 digest", what)));
}

void
hasher_init(Hasher *h, const char *key)
{
	h->used = 0;
	h->hash = NULL;
	h->hmac = NULL;
	if (key != NULL && key[0] != '\0')
	{
		h->hmac = pg_hmac_create(PG_SHA256);
		if (h->hmac == NULL ||
			pg_hmac_init(h->hmac, (const uint8 *) key, strlen(key)) < 0)
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

void
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

void
hasher_tag(Hasher *h, char tag)
{
	hasher_add(h, &tag, 1);
}

/* tag, 4-byte big-endian length, bytes */
void
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

bytea *
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

/*-------------------------------------------------------------------------
 *
 * hasher.h
 *	  SHA-256, or HMAC-SHA256 under a secret, over a prefix-coded message.
 *
 * Shared by the request fingerprints (fingerprint.c) and the downstream
 * keys (downstream.c): a message is written as tagged chunks, each with
 * its 4-byte big-endian length, so that no two different messages are
 * ever hashed as the same bytes.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDEMPOTENCY_HASHER_H
#define IDEMPOTENCY_HASHER_H

#include "common/cryptohash.h"
#include "common/hmac.h"
#include "common/sha2.h"

/* Fed through a buffer to keep the calls into the digest few. */
typedef struct Hasher
{
	pg_cryptohash_ctx *hash;
	pg_hmac_ctx *hmac;
	int			used;
	uint8		buf[8192];
} Hasher;

/* key NULL or empty: plain SHA-256; otherwise HMAC-SHA256 under it */
extern void hasher_init(Hasher *h, const char *key);
extern void hasher_add(Hasher *h, const void *data, size_t len);
extern void hasher_tag(Hasher *h, char tag);
extern void hasher_chunk(Hasher *h, char tag, const char *data, uint32 len);

/* the digest, PG_SHA256_DIGEST_LENGTH bytes, as a bytea */
extern bytea *hasher_finish(Hasher *h);

#endif							/* IDEMPOTENCY_HASHER_H */

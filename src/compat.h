/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  The differences between the PostgreSQL major versions the extension
 *	  is built against, in one place.
 *
 * The extension is built and tested on PostgreSQL 15 and 18.  Each macro
 * here takes the arguments of the PostgreSQL 15 call it names, with a
 * _compat suffix, and supplies what later releases added; the source files
 * use these names and no version test of their own.  The tests are on 18,
 * the release each change is first built against here; 16 and 17 are
 * neither built nor tested.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDEMPOTENCY_COMPAT_H
#define IDEMPOTENCY_COMPAT_H

#include "access/genam.h"
#include "utils/relcache.h"

#if PG_VERSION_NUM < 150000
#error "idempotency needs PostgreSQL 15 or later"
#endif

#if PG_VERSION_NUM >= 180000

/*
 * 18 asks whether a deferrable primary key will do.  It will not: a claim
 * relies on the key's uniqueness being checked as each row is inserted.
 */
#define RelationGetPrimaryKeyIndex_compat(rel) \
	RelationGetPrimaryKeyIndex((rel), false)

/* 18 takes the instrumentation EXPLAIN ANALYZE reads; there is none here. */
#define index_beginscan_compat(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), NULL, (nkeys), (norderbys))

#else

#define RelationGetPrimaryKeyIndex_compat(rel) \
	RelationGetPrimaryKeyIndex(rel)

#define index_beginscan_compat(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), (nkeys), (norderbys))

#endif

#endif							/* IDEMPOTENCY_COMPAT_H */

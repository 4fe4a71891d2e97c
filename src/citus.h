/*-------------------------------------------------------------------------
 *
 * citus.h
 *	  Where a scope's keys live when idempotency.keys is distributed by
 *	  Citus (citus.c).
 *
 * Without Citus, or with the tables not distributed, every function here
 * answers "the shell itself" from a cached flag, so that the single-node
 * hot path costs nothing more.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDEMPOTENCY_CITUS_H
#define IDEMPOTENCY_CITUS_H

#include "postgres.h"

#include "nodes/pg_list.h"

/* A local shard placement of a distributed table of the extension. */
typedef struct IkShard
{
	int64		shardid;
	Oid			relid;			/* idempotency.<table>_<shardid> */
} IkShard;

extern void ik_citus_register_callbacks(void);

/*
 * The relation holding scope's rows of idempotency.keys on this node:
 * InvalidOid when the table is not distributed (use the shell), else the
 * local shard, its id in *shardid.  A shard that is not on this node is
 * IK421.
 */
extern Oid	ik_citus_keys_shard(Oid shell, text *scope, int64 *shardid);

/*
 * Before writing a shard directly: take Citus's shard-metadata lock in
 * share mode for the rest of the transaction, so that a move or split of
 * the shard waits for us, then check again, with a fresh catalog
 * snapshot, that the placement is still local (IK421 if not).
 */
extern void ik_citus_lock_shard(Oid shell, text *scope, int64 shardid);

/*
 * The local placements of idempotency.keys' shards (a List of IkShard *,
 * in the current memory context), and whether the table is distributed
 * at all; read afresh each time, since shards move.
 */
extern List *ik_citus_local_keys_shards(Oid shell, bool *distributed);

/*
 * The local placement of idempotency.policies when it is a reference
 * table, else InvalidOid (use the shell).
 */
extern Oid	ik_citus_policies_placement(Oid shell, int64 *shardid);

/*
 * reap() on the Citus coordinator of distributed keys: run reap(max_rows)
 * on every worker, each in its own transaction there, and return the sum
 * of what they deleted; -1 when this is not such a coordinator.
 */
extern int64 ik_citus_reap_workers(Oid shell, int32 max_rows);

#endif							/* IDEMPOTENCY_CITUS_H */

/*-------------------------------------------------------------------------
 *
 * scope_stats_views.c
 *	  The SQL face of the per-scope statistics: the views
 *	  idempotency.scope_stats and idempotency.scope_stats_info, and
 *	  idempotency.scope_stats_reset().
 *
 * Scopes are tenant names, and the contract promises that no call reveals
 * another scope's data; the table in shared memory (scope_stats.c) holds
 * the scopes of every database.  So a role sees the entries of its own
 * database only, unless it has the privileges of pg_read_all_stats (as
 * PostgreSQL shows other sessions' queries only to such roles), which
 * sees every database's.
 *
 * A scope is stored in its database's encoding.  The entries are copied
 * out under the table's lock and converted only after it is released;
 * a name that this database's encoding cannot hold (a UTF8 database's
 * "café €uro GmbH" read from a LATIN1 one) is shown as the hex of its
 * bytes, "\x...", so that one name never breaks the view.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(idempotency_scope_stats);
PG_FUNCTION_INFO_V1(idempotency_scope_stats_info);
PG_FUNCTION_INFO_V1(idempotency_scope_stats_reset);

/* The view's column of each counter. */
static const char *const scope_counter_columns[IK_SCOPE_NUM_COUNTERS] = {
#define IK_DATABASE(name, column, sqlstate)
#define IK_BOTH(name, column, sqlstate, offence) [IK_SCOPE_##name] = column,
#define IK_SCOPE(name, column, offence) [IK_SCOPE_##name] = column,
#include "counters.h"
#undef IK_DATABASE
#undef IK_BOTH
#undef IK_SCOPE
};

/* "\x" and the hex of the name's bytes. */
static text *
scope_as_hex(const IkScopeStatsEntry *e)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "\\x");
	for (uint32 i = 0; i < e->len; i++)
		appendStringInfo(&buf, "%02x", (unsigned char) e->scope[i]);
	return cstring_to_text_with_len(buf.data, buf.len);
}

/*
 * The scope of an entry as text of this database's encoding, or its hex
 * when this encoding cannot hold it.  Nothing here raises an error.
 */
static text *
scope_as_text(const IkScopeStatsEntry *e)
{
	int			mine = GetDatabaseEncoding();
	Oid			proc;
	int			size;
	unsigned char *out;

	if (e->encoding == mine ||
		(e->encoding == PG_SQL_ASCII || mine == PG_SQL_ASCII))
	{
		if (pg_verify_mbstr(mine, e->scope, (int) e->len, true))
			return cstring_to_text_with_len(e->scope, (int) e->len);
		return scope_as_hex(e);
	}
	proc = FindDefaultConversionProc(e->encoding, mine);
	if (!OidIsValid(proc))
		return scope_as_hex(e);
	size = (int) e->len * MAX_CONVERSION_GROWTH + 1;
	out = palloc(size);
	if (pg_do_encoding_conversion_buf(proc, e->encoding, mine,
									  (unsigned char *) e->scope, (int) e->len,
									  out, size, true) != (int) e->len)
		return scope_as_hex(e);
	return cstring_to_text((char *) out);
}

/*
 * read_scope_stats() RETURNS SETOF record: one row per entry of this
 * database, or of every database for a role with the privileges of
 * pg_read_all_stats, behind the view idempotency.scope_stats.
 */
Datum
idempotency_scope_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TupleDesc	desc;
	IkScopeStatsEntry *copy;
	int			n;
	Oid			dboid = MyDatabaseId;
	Datum	   *values;
	bool	   *nulls;

	ik_scope_stats_require();
	if (has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS))
		dboid = InvalidOid;
	InitMaterializedSRF(fcinfo, 0);
	desc = rsinfo->setDesc;
	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);

	copy = ik_scope_stats_copy(dboid, &n);
	for (int i = 0; i < n; i++)
	{
		const IkScopeStatsEntry *e = &copy[i];
		IkNamedValue row[IK_SCOPE_NUM_COUNTERS + 4];
		int			c = 0;

		ik_named(row, &c, "dboid", ObjectIdGetDatum(e->dboid), false);
		ik_named(row, &c, "scope", PointerGetDatum(scope_as_text(e)), false);
		for (int k = 0; k < IK_SCOPE_NUM_COUNTERS; k++)
			ik_named(row, &c, scope_counter_columns[k],
					 Int64GetDatum((int64) e->counters[k]), false);
		ik_named(row, &c, "last_seen", TimestampTzGetDatum(e->last_seen),
				 e->last_seen == 0);
		ik_named(row, &c, "tracked_since",
				 TimestampTzGetDatum(e->tracked_since), e->tracked_since == 0);
		ik_fill_by_name(desc, row, c, "read_scope_stats", values, nulls);
		tuplestore_putvalues(rsinfo->setResult, desc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * read_scope_stats_info() RETURNS record: the table as a whole, behind the
 * view idempotency.scope_stats_info.
 */
Datum
idempotency_scope_stats_info(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	IkScopeStatsInfo info;
	IkNamedValue row[7];
	Datum	   *values;
	bool	   *nulls;
	int			n = 0;

	ik_scope_stats_require();
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		ereport(ERROR,
				(errcode(ERRCODE_IK_TABLE_NEEDS_OPERATOR),
				 errmsg("idempotency.read_scope_stats_info() does not return a row")));
	desc = BlessTupleDesc(desc);
	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);

	ik_scope_stats_read_info(&info);
	ik_named(row, &n, "max_entries", Int32GetDatum(info.max_entries), false);
	ik_named(row, &n, "entries", Int64GetDatum((int64) info.entries), false);
	ik_named(row, &n, "evictions", Int64GetDatum((int64) info.evictions),
			 false);
	ik_named(row, &n, "evictions_with_errors",
			 Int64GetDatum((int64) info.evictions_with_errors), false);
	ik_named(row, &n, "last_eviction",
			 TimestampTzGetDatum(info.last_eviction), info.last_eviction == 0);
	ik_named(row, &n, "shared_memory_bytes",
			 Int64GetDatum((int64) info.shared_memory_bytes), false);
	ik_named(row, &n, "stats_reset", TimestampTzGetDatum(info.stats_reset),
			 info.stats_reset == 0);

	ik_fill_by_name(desc, row, n, "read_scope_stats_info", values, nulls);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/*
 * scope_stats_reset(scope text DEFAULT NULL): forget every entry, of every
 * database, and the eviction counters; or, given a scope, zero the
 * counters of that scope in this database, which are then complete from
 * now on.
 */
static Datum
scope_stats_reset(FunctionCallInfo fcinfo)
{
	ik_scope_stats_require();
	if (PG_ARGISNULL(0))
		ik_scope_stats_reset_all();
	else
		ik_scope_stats_reset_scope(ik_arg_name(fcinfo, 0, "scope"));
	PG_RETURN_VOID();
}

Datum
idempotency_scope_stats_reset(PG_FUNCTION_ARGS)
{
	return ik_counted_call(scope_stats_reset, fcinfo, false);
}

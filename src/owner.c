/*-------------------------------------------------------------------------
 *
 * owner.c
 *	  Running what is attached to the extension's tables as their owner,
 *	  safely.
 *
 * The functions that write idempotency.keys are SECURITY DEFINER: they run
 * as the extension's owner, normally a superuser, for a caller that may
 * hold nothing but EXECUTE.  What a DBA attaches to the table (AFTER
 * triggers, defaults, CHECK constraints, index expressions) runs inside
 * those writes, and so does whatever it calls.  Left in the caller's
 * setting, that code would resolve names under the caller's search_path,
 * whose first entry for relations is the caller's own temporary schema: a
 * caller could shadow a table a trigger writes with a temporary one that
 * carries a trigger of its own, and have it run as the owner.
 *
 * So the code runs as PostgreSQL runs a table's code for maintenance
 * (ExecRefreshMatView(), vacuum_rel()): as the table's owner, with
 * search_path = pg_catalog, pg_temp in a GUC nest level of its own, and
 * with SET ROLE refused.  Unlike maintenance, not as a security-restricted
 * operation: that guards the invoker against the owner's code, while here
 * the owner is the trusted side, and it would refuse the deferred trigger
 * of a DEFERRABLE foreign key that references the keys (a charges table's,
 * say), which a write queues.  That is not enough alone: for a name
 * that is not in pg_catalog, pg_temp still comes next, and the temporary
 * schema is the caller's.  A table whose attached code could run queries
 * (a trigger, or a function a DBA wrote) is therefore never written while
 * the calling session holds a temporary table or type (what an unqualified
 * name can find there; functions in pg_temp are found only by a qualified
 * name): the write is refused.
 * Building the table's cache plans its expressions (and inlines SQL
 * functions), so it runs in the same restricted setting.
 *
 * A table with nothing of the kind attached (its own CHECK constraints
 * call immutable built-ins only) is written in the caller's setting: no
 * code runs there that could tell, and the switch would cost a claim
 * about 5 % more instructions.
 *
 * An error leaves the setting to the (sub)transaction's abort, which puts
 * back both the user and the GUC nest level, as it does for the
 * maintenance commands.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_depend.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "compat.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

void
ik_owner_enter(IkOwnerContext *ctx, Oid owner)
{
	GetUserIdAndSecContext(&ctx->save_userid, &ctx->save_sec_context);
	SetUserIdAndSecContext(owner,
						   ctx->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE);
	ctx->save_nestlevel = NewGUCNestLevel();
	ik_restrict_search_path();
}

void
ik_owner_leave(IkOwnerContext *ctx)
{
	AtEOXact_GUC(false, ctx->save_nestlevel);
	SetUserIdAndSecContext(ctx->save_userid, ctx->save_sec_context);
}

/*
 * A function that may run queries: one a user defined (SQL or PL), or a
 * built-in one that is not immutable (query_to_xml() runs a query given
 * as text; the immutable built-ins compute from their arguments alone).
 */
static bool
may_run_queries(Oid funcid, void *context)
{
	return funcid >= FirstNormalObjectId ||
		func_volatile(funcid) != PROVOLATILE_IMMUTABLE;
}

/*
 * Whether an expression calls a function that may run queries, or checks
 * a domain (whose constraints may).
 */
bool
ik_calls_user_code(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, CoerceToDomain) ||
		check_functions_in_node(node, may_run_queries, context))
		return true;
	return expression_tree_walker(node, ik_calls_user_code, context);
}

/*
 * Whether this session's temporary schema holds a relation or a type: the
 * only kinds of object an unqualified name can find there.
 */
static bool
session_has_temp_objects(void)
{
	Oid			temp_namespace;
	Oid			temp_toast_namespace;
	Relation	depend;
	ScanKeyData skey[2];
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		found;

	GetTempNamespaceState(&temp_namespace, &temp_toast_namespace);
	if (!OidIsValid(temp_namespace))
		return false;
	depend = table_open(DependRelationId, AccessShareLock);
	ScanKeyInit(&skey[0], Anum_pg_depend_refclassid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(NamespaceRelationId));
	ScanKeyInit(&skey[1], Anum_pg_depend_refobjid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(temp_namespace));
	scan = systable_beginscan(depend, DependReferenceIndexId, true, NULL,
							  2, skey);
	found = false;
	while (!found && HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		Oid			classid = ((Form_pg_depend) GETSTRUCT(tuple))->classid;

		found = (classid == RelationRelationId || classid == TypeRelationId);
	}
	systable_endscan(scan);
	table_close(depend, AccessShareLock);
	return found;
}

/*
 * Refuse to run a table's attached code as its owner while the calling
 * session's temporary objects could stand in for what that code names.
 */
void
ik_owner_check_temp_objects(const char *relname)
{
	if (session_has_temp_objects())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("idempotency.%s cannot be written by a session that has temporary tables or types",
						relname),
				 errdetail("Triggers or functions attached to idempotency.%s run as its owner, and could find this session's temporary tables or types in place of the objects they name.",
						   relname),
				 errhint("Drop the session's temporary tables and types, or make claims in another session.")));
}

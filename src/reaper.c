/*-------------------------------------------------------------------------
 *
 * reaper.c
 *	  Background workers that delete expired keys: a launcher, and one
 *	  reaper per database in idempotency.reaper_databases.
 *
 * A background worker connects to one database for life, so the launcher,
 * connected to none (it reads only the shared catalog pg_database), starts
 * a dynamic reaper per listed database and stops those no longer listed
 * when the list changes on SIGHUP.  The postmaster restarts a reaper that
 * crashes or is terminated; the launcher restarts one that exited.
 *
 * Each reaper, every idempotency.reaper_naptime, deletes rows past
 * retention in batches of idempotency.reaper_batch_size, each batch its
 * own short transaction (reap.c), and reports itself in pg_stat_activity.
 * A database without the extension is checked each nap, quietly.  Only
 * one reaper per database works at a time: it holds a session lock, which
 * a second reaper (one left behind by a launcher that crashed, say) waits
 * for by trying again each nap.
 *
 * Both start only once recovery has finished, so never on a standby, and
 * after a promotion.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

PGDLLEXPORT void ik_reaper_launcher_main(Datum main_arg);
PGDLLEXPORT void ik_reaper_main(Datum main_arg);

/* "IR": fourth locktag field of the one-reaper-per-database lock */
#define IK_REAPER_LOCK_SPACE	0x4952

/* Seconds before the postmaster restarts a crashed launcher or reaper. */
#define REAPER_RESTART_S		5

/* How often the launcher checks its reapers when nothing wakes it. */
#define LAUNCHER_NAP_MS			10000

/* A reaper the launcher started. */
typedef struct ReaperSlot
{
	Oid			dboid;
	BackgroundWorkerHandle *handle;
} ReaperSlot;

/* Parse idempotency.reaper_databases; a check hook has vetted it. */
static List *
reaper_database_names(void)
{
	char	   *raw = pstrdup(ik_reaper_databases);
	List	   *names = NIL;

	if (!SplitIdentifierString(raw, ',', &names))
		elog(ERROR, "invalid idempotency.reaper_databases");
	return names;
}

bool
ik_check_reaper_databases(char **newval, void **extra, GucSource source)
{
	char	   *raw = pstrdup(*newval);
	List	   *names;
	bool		ok = SplitIdentifierString(raw, ',', &names);

	if (!ok)
		GUC_check_errdetail("List syntax is invalid.");
	list_free(names);
	pfree(raw);
	return ok;
}

/* What the launcher and the reapers have in common. */
static void
describe_worker(BackgroundWorker *worker, const char *function,
				const char *type)
{
	memset(worker, 0, sizeof(BackgroundWorker));
	worker->bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker->bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker->bgw_restart_time = REAPER_RESTART_S;
	snprintf(worker->bgw_library_name, BGW_MAXLEN, "idempotency");
	snprintf(worker->bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker->bgw_name, BGW_MAXLEN, "%s", type);
	snprintf(worker->bgw_type, BGW_MAXLEN, "%s", type);
}

void
ik_register_reaper_launcher(void)
{
	BackgroundWorker worker;

	describe_worker(&worker, "ik_reaper_launcher_main",
					"idempotency reaper launcher");
	RegisterBackgroundWorker(&worker);
}

static BackgroundWorkerHandle *
start_reaper(Oid dboid, const char *dbname)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	describe_worker(&worker, "ik_reaper_main", "idempotency reaper");
	snprintf(worker.bgw_name, BGW_MAXLEN, "idempotency reaper for database %s",
			 dbname);
	worker.bgw_main_arg = ObjectIdGetDatum(dboid);
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		ereport(WARNING,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not start the idempotency reaper for database \"%s\"",
						dbname),
				 errhint("Raise max_worker_processes; the launcher tries again.")));
		return NULL;
	}
	return handle;
}

/* A database the configuration asks for. */
typedef struct WantedDatabase
{
	Oid			dboid;
	char	   *dbname;
} WantedDatabase;

/*
 * The listed databases that exist, allocated in the caller's context.  A
 * listed database that does not exist is reported once per configuration
 * load.  Without a database of its own the launcher cannot use the
 * catalog caches, so it scans pg_database, as the autovacuum launcher
 * does.
 */
static List *
wanted_databases(bool config_changed)
{
	MemoryContext callercontext = CurrentMemoryContext;
	List	   *names = reaper_database_names();
	List	   *wanted = NIL;
	ListCell   *lc;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tuple);

		foreach(lc, names)
		{
			char	   *name = (char *) lfirst(lc);

			if (strcmp(NameStr(db->datname), name) == 0)
			{
				MemoryContext xactcontext = MemoryContextSwitchTo(callercontext);
				WantedDatabase *w = palloc(sizeof(WantedDatabase));

				w->dboid = db->oid;
				w->dbname = pstrdup(name);
				wanted = lappend(wanted, w);
				MemoryContextSwitchTo(xactcontext);
				names = foreach_delete_current(names, lc);
			}
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	MemoryContextSwitchTo(callercontext);

	if (config_changed)
	{
		foreach(lc, names)
			ereport(WARNING,
					(errcode(ERRCODE_UNDEFINED_DATABASE),
					 errmsg("idempotency.reaper_databases names database \"%s\", which does not exist",
							(char *) lfirst(lc))));
	}
	return wanted;
}

/*
 * Bring the running reapers in line with the configured databases: stop
 * those no longer listed, forget those that exited, and start the missing.
 */
static List *
sync_reapers(List *slots, bool config_changed)
{
	List	   *wanted = wanted_databases(config_changed);
	List	   *kept = NIL;
	ListCell   *lc;

	foreach(lc, slots)
	{
		ReaperSlot *slot = (ReaperSlot *) lfirst(lc);
		bool		listed = false;
		ListCell   *lc2;
		pid_t		pid;

		foreach(lc2, wanted)
			listed |= (((WantedDatabase *) lfirst(lc2))->dboid == slot->dboid);
		if (listed &&
			GetBackgroundWorkerPid(slot->handle, &pid) != BGWH_STOPPED)
			kept = lappend(kept, slot);
		else
		{
			TerminateBackgroundWorker(slot->handle);
			pfree(slot->handle);
			pfree(slot);
		}
	}
	list_free(slots);

	foreach(lc, wanted)
	{
		WantedDatabase *db = (WantedDatabase *) lfirst(lc);
		bool		running = false;
		ListCell   *lc2;
		BackgroundWorkerHandle *handle;

		foreach(lc2, kept)
			running |= (((ReaperSlot *) lfirst(lc2))->dboid == db->dboid);
		if (!running && (handle = start_reaper(db->dboid, db->dbname)) != NULL)
		{
			ReaperSlot *slot = palloc(sizeof(ReaperSlot));

			slot->dboid = db->dboid;
			slot->handle = handle;
			kept = lappend(kept, slot);
		}
	}
	list_free_deep(wanted);
	return kept;
}

void
ik_reaper_launcher_main(Datum main_arg)
{
	List	   *slots = NIL;
	bool		config_changed = true;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* no database: the launcher reads only the shared catalog pg_database */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	for (;;)
	{
		slots = sync_reapers(slots, config_changed);
		config_changed = false;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 LAUNCHER_NAP_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			config_changed = true;
		}
	}
}

/* Is this reaper's database still listed? */
static bool
database_still_listed(void)
{
	char	   *mine = get_database_name(MyDatabaseId);
	List	   *names = reaper_database_names();
	ListCell   *lc;

	foreach(lc, names)
	{
		if (mine != NULL && strcmp(mine, (char *) lfirst(lc)) == 0)
			return true;
	}
	return false;
}

/*
 * One round: batches until one comes back short.  Returns without work
 * when the extension is not installed here, or while another reaper holds
 * this database.
 */
static void
reap_round(bool *have_lock)
{
	LOCKTAG		tag;
	int64		deleted;
	int64		total = 0;
	int			found = 0;
	bool		installed;
	TimestampTz cursor = DT_NOBEGIN;

	if (!*have_lock)
	{
		SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 0, 0, IK_REAPER_LOCK_SPACE);
		*have_lock = (LockAcquire(&tag, ExclusiveLock, true, true) !=
					  LOCKACQUIRE_NOT_AVAIL);
		if (!*have_lock)
			return;
	}

	do
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		installed = OidIsValid(get_extension_oid("idempotency", true));
		found = 0;
		if (installed)
		{
			pgstat_report_activity(STATE_RUNNING,
								   "deleting idempotency keys past retention");
			found = ik_reap_batch(ik_reaper_batch_size,
								  GetCurrentTransactionStartTimestamp(),
								  &cursor, &deleted);
			total += deleted;
			if (found < ik_reaper_batch_size)
				ik_count_reap(total);
		}
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_stat(false);
		pgstat_report_activity(STATE_IDLE, NULL);

		if (!installed)
			elog(DEBUG1, "idempotency reaper: extension not installed in this database");
		CHECK_FOR_INTERRUPTS();
	} while (found >= ik_reaper_batch_size);
}

void
ik_reaper_main(Datum main_arg)
{
	bool		have_lock = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(main_arg),
											  InvalidOid, 0);

	for (;;)
	{
		reap_round(&have_lock);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 (long) ik_reaper_naptime_s * 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			bool		listed;

			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			StartTransactionCommand();
			listed = database_still_listed();
			CommitTransactionCommand();
			if (!listed)
				proc_exit(0);
		}
	}
}

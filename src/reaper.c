/*-------------------------------------------------------------------------
 *
 * reaper.c
 *	  The background reaper: a launcher, and a short-lived worker per run
 *	  in each database of idempotency.reaper_databases.
 *
 * As autovacuum does, the launcher stays connected to no database and
 * starts a worker that connects to one database, deletes what is past
 * retention there (reap.c) for at most REAPER_RUN_MS, and exits.  So no
 * database is pinned between runs: DROP DATABASE, ALTER DATABASE RENAME
 * and CREATE DATABASE ... TEMPLATE wait for other sessions to leave for up
 * to five seconds, longer than a run lasts.  One worker runs at a time, so
 * the reaper takes two background worker slots however many databases it
 * serves, and a database never has two reapers.
 *
 * What a database's runs must remember lives in a slot of shared memory:
 * when its next run is due (a naptime after a run that finished the
 * backlog, at once after one that stopped at its time limit, and, after
 * runs that failed, a back-off that doubles up to an hour), the worker
 * running for it, and where a run that stopped with a backlog left off;
 * the rows that could not be deleted are reap_skips.c's, which keeps a
 * list for each database that has a slot here.  A crash
 * restart of the cluster clears it all, with the workers: at most one
 * reaper per database holds across it, since the workers are never
 * restarted by the postmaster, only started by the launcher.
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
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

PGDLLEXPORT void ik_reaper_launcher_main(Datum main_arg);
PGDLLEXPORT void ik_reaper_main(Datum main_arg);

/* Seconds before the postmaster restarts a launcher that exited. */
#define LAUNCHER_RESTART_S		10

/* How often the launcher looks at pg_database when nothing wakes it. */
#define LAUNCHER_NAP_MS			10000

/* The longest back-off after failed runs. */
#define REAPER_MAX_BACKOFF_MS	(3600 * 1000L)


typedef struct ReaperDb
{
	Oid			dboid;			/* InvalidOid while free */
	pid_t		worker_pid;		/* of the worker running for it, or 0 */
	bool		run_finished;	/* the last run ended normally */
	bool		backlog;		/* ... with rows left to delete */
	int			failures;		/* runs in a row that did not end normally */
	TimestampTz next_run;
	TimestampTz cursor;			/* where the next run starts (reap.c) */
} ReaperDb;

typedef struct ReaperShared
{
	LWLock	   *lock;
	ReaperDb	dbs[IK_REAPER_DATABASES];
} ReaperShared;

static ReaperShared *reaper = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
reaper_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(ReaperShared)));
	RequestNamedLWLockTranche("idempotency reaper", 1);
}

static void
reaper_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	reaper = ShmemInitStruct("idempotency reaper", sizeof(ReaperShared), &found);
	if (!found)
	{
		memset(reaper, 0, sizeof(ReaperShared));
		reaper->lock = &(GetNamedLWLockTranche("idempotency reaper"))->lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

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

static void
describe_worker(BackgroundWorker *worker, const char *function,
				const char *type, int restart_s)
{
	memset(worker, 0, sizeof(BackgroundWorker));
	worker->bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker->bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker->bgw_restart_time = restart_s;
	snprintf(worker->bgw_library_name, BGW_MAXLEN, "idempotency");
	snprintf(worker->bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker->bgw_name, BGW_MAXLEN, "%s", type);
	snprintf(worker->bgw_type, BGW_MAXLEN, "%s", type);
}

void
ik_register_reaper_launcher(void)
{
	BackgroundWorker worker;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = reaper_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = reaper_shmem_startup;

	describe_worker(&worker, "ik_reaper_launcher_main",
					"idempotency reaper launcher", LAUNCHER_RESTART_S);
	RegisterBackgroundWorker(&worker);
}

/* A database the configuration lists, as pg_database has it. */
typedef struct ListedDatabase
{
	char	   *name;
	Oid			dboid;			/* InvalidOid if there is none by that name */
	bool		allowconn;
} ListedDatabase;

/*
 * The listed databases, allocated in the caller's context.  Without a
 * database of its own the launcher cannot use the catalog caches, so it
 * scans pg_database, as the autovacuum launcher does.
 */
static List *
listed_databases(void)
{
	MemoryContext callercontext = CurrentMemoryContext;
	List	   *names = reaper_database_names();
	List	   *listed = NIL;
	ListCell   *lc;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;

	foreach(lc, names)
	{
		ListedDatabase *db = palloc0(sizeof(ListedDatabase));

		db->name = pstrdup((char *) lfirst(lc));
		listed = lappend(listed, db);
	}

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database form = (Form_pg_database) GETSTRUCT(tuple);

		foreach(lc, listed)
		{
			ListedDatabase *db = (ListedDatabase *) lfirst(lc);

			if (strcmp(NameStr(form->datname), db->name) == 0)
			{
				db->dboid = form->oid;
				db->allowconn = form->datallowconn;
			}
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	MemoryContextSwitchTo(callercontext);
	return listed;
}

/*
 * What the launcher last said about each listed database, so that a
 * database that is missing, refuses connections or finds no slot is
 * reported once, not at every look; a new list reports afresh.
 */
typedef enum Reported
{
	REPORTED_NOTHING,
	REPORTED_MISSING,
	REPORTED_NOCONN,
	REPORTED_NOSLOT
} Reported;

typedef struct Report
{
	char	   *name;
	Reported	what;
} Report;

static List *reports = NIL;		/* in TopMemoryContext */

static void
report_once(const char *name, Reported what)
{
	ListCell   *lc;
	Report	   *r = NULL;

	foreach(lc, reports)
	{
		if (strcmp(((Report *) lfirst(lc))->name, name) == 0)
			r = (Report *) lfirst(lc);
	}
	if (r == NULL)
	{
		MemoryContext oldcontext = MemoryContextSwitchTo(TopMemoryContext);

		r = palloc0(sizeof(Report));
		r->name = pstrdup(name);
		reports = lappend(reports, r);
		MemoryContextSwitchTo(oldcontext);
	}
	if (r->what == what)
		return;
	r->what = what;
	switch (what)
	{
		case REPORTED_NOTHING:
			break;
		case REPORTED_MISSING:
			ereport(LOG,
					(errmsg("idempotency reaper: database \"%s\" of idempotency.reaper_databases does not exist",
							name),
					 errhint("A database that was dropped or renamed is no longer reaped; list its new name.")));
			break;
		case REPORTED_NOCONN:
			ereport(LOG,
					(errmsg("idempotency reaper: database \"%s\" does not allow connections; it is not reaped",
							name)));
			break;
		case REPORTED_NOSLOT:
			ereport(LOG,
					(errmsg("idempotency reaper: database \"%s\" is not reaped: the reaper serves at most %d databases",
							name, IK_REAPER_DATABASES)));
			break;
	}
}

/*
 * Give each listed database that can be reaped a slot, keep the slots of
 * those still listed, and free the others (once no worker runs there).
 */
static void
assign_slots(List *listed)
{
	ListCell   *lc;

	LWLockAcquire(reaper->lock, LW_EXCLUSIVE);
	for (int s = 0; s < IK_REAPER_DATABASES; s++)
	{
		ReaperDb   *slot = &reaper->dbs[s];
		bool		wanted = false;

		foreach(lc, listed)
		{
			ListedDatabase *db = (ListedDatabase *) lfirst(lc);

			wanted |= (db->allowconn && db->dboid == slot->dboid);
		}
		if (OidIsValid(slot->dboid) && !wanted && slot->worker_pid == 0)
		{
			ik_reap_skips_forget(slot->dboid);
			memset(slot, 0, sizeof(ReaperDb));
		}
	}
	foreach(lc, listed)
	{
		ListedDatabase *db = (ListedDatabase *) lfirst(lc);
		int			free_slot = -1;
		bool		has_slot = false;

		if (!OidIsValid(db->dboid))
		{
			report_once(db->name, REPORTED_MISSING);
			continue;
		}
		if (!db->allowconn)
		{
			report_once(db->name, REPORTED_NOCONN);
			continue;
		}
		for (int s = 0; s < IK_REAPER_DATABASES; s++)
		{
			has_slot |= (reaper->dbs[s].dboid == db->dboid);
			if (free_slot < 0 && !OidIsValid(reaper->dbs[s].dboid))
				free_slot = s;
		}
		if (!has_slot && free_slot < 0)
		{
			report_once(db->name, REPORTED_NOSLOT);
			continue;
		}
		if (!has_slot)
		{
			reaper->dbs[free_slot].dboid = db->dboid;
			ik_reap_skips_keep(db->dboid);
		}
		report_once(db->name, REPORTED_NOTHING);
	}
	LWLockRelease(reaper->lock);
}

static bool
listed(List *dbs, Oid dboid)
{
	ListCell   *lc;

	foreach(lc, dbs)
	{
		ListedDatabase *db = (ListedDatabase *) lfirst(lc);

		if (db->dboid == dboid && db->allowconn)
			return true;
	}
	return false;
}

/*
 * After a run: the next one is due a naptime later, or at once if the run
 * stopped with a backlog, or after a back-off that doubles with each run
 * in a row that did not end normally (an error, a termination).
 */
static void
schedule_after_run(ReaperDb *slot)
{
	TimestampTz now = GetCurrentTimestamp();
	int64		delay_ms;

	if (slot->run_finished)
	{
		slot->failures = 0;
		delay_ms = slot->backlog ? 0 : (int64) ik_reaper_naptime_s * 1000;
	}
	else
	{
		slot->failures = Min(slot->failures + 1, 30);
		delay_ms = Min((int64) ik_reaper_naptime_s * 1000 << slot->failures,
					   REAPER_MAX_BACKOFF_MS);
	}
	slot->next_run = ik_time_plus_ms(now, delay_ms);
}

static BackgroundWorkerHandle *
start_worker(int s)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	ReaperDb   *slot = &reaper->dbs[s];

	describe_worker(&worker, "ik_reaper_main", "idempotency reaper",
					BGW_NEVER_RESTART);
	snprintf(worker.bgw_name, BGW_MAXLEN, "idempotency reaper for database %u",
			 slot->dboid);
	worker.bgw_main_arg = Int32GetDatum(s);
	memcpy(worker.bgw_extra, &slot->dboid, sizeof(Oid));
	worker.bgw_notify_pid = MyProcPid;

	slot->run_finished = false;
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		ereport(WARNING,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not start the idempotency reaper"),
				 errhint("Raise max_worker_processes; the launcher tries again.")));
		return NULL;
	}
	return handle;
}

void
ik_reaper_launcher_main(Datum main_arg)
{
	BackgroundWorkerHandle *running = NULL;
	int			running_slot = -1;
	TimestampTz last_look = 0;
	char	   *reported_list = NULL;
	MemoryContext loop_context;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* no database: the launcher reads only the shared catalog pg_database */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	/*
	 * What one look at the configuration and pg_database allocates lives for
	 * one turn of the loop: the context is reset at the top of each, so that
	 * a launcher running for the server's life allocates nothing that it
	 * keeps but the handle of its worker and what report_once() keeps, both
	 * in TopMemoryContext.
	 */
	loop_context = AllocSetContextCreate(TopMemoryContext,
										 "idempotency reaper launcher loop",
										 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		TimestampTz now;
		TimestampTz wake;
		List	   *dbs = NIL;
		pid_t		pid;
		bool		busy = false;
		int			due = -1;

		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(loop_context);
		MemoryContextSwitchTo(loop_context);
		now = GetCurrentTimestamp();
		wake = ik_time_plus_ms(now, LAUNCHER_NAP_MS);

		if (ConfigReloadPending)
		{
			TimestampTz soonest;

			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (reported_list == NULL ||
				strcmp(reported_list, ik_reaper_databases) != 0)
			{
				ListCell   *lc;

				foreach(lc, reports)
					pfree(((Report *) lfirst(lc))->name);
				list_free_deep(reports);
				reports = NIL;
				if (reported_list != NULL)
					pfree(reported_list);
				reported_list = MemoryContextStrdup(TopMemoryContext,
													ik_reaper_databases);
			}
			last_look = 0;

			/* a shorter naptime applies to the runs already scheduled */
			soonest = ik_time_plus_ms(now, (int64) ik_reaper_naptime_s * 1000);
			LWLockAcquire(reaper->lock, LW_EXCLUSIVE);
			for (int s = 0; s < IK_REAPER_DATABASES; s++)
			{
				if (reaper->dbs[s].failures == 0)
					reaper->dbs[s].next_run = Min(reaper->dbs[s].next_run, soonest);
			}
			LWLockRelease(reaper->lock);
		}
		/* the run this launcher started has ended: schedule the next one */
		if (running != NULL &&
			GetBackgroundWorkerPid(running, &pid) == BGWH_STOPPED)
		{
			LWLockAcquire(reaper->lock, LW_EXCLUSIVE);
			schedule_after_run(&reaper->dbs[running_slot]);
			LWLockRelease(reaper->lock);
			pfree(running);
			running = NULL;
		}

		/* look at pg_database every nap, and before a run may start */
		if (last_look == 0 || running == NULL ||
			TimestampDifferenceExceeds(last_look, now, LAUNCHER_NAP_MS))
		{
			dbs = listed_databases();
			assign_slots(dbs);
			last_look = now;
		}

		/*
		 * Start the run that is due first, unless one is running: ours, or
		 * one a launcher before us started (it clears its slot's pid when it
		 * exits, and a crash restart clears shared memory).
		 */
		LWLockAcquire(reaper->lock, LW_EXCLUSIVE);
		for (int s = 0; s < IK_REAPER_DATABASES; s++)
		{
			ReaperDb   *slot = &reaper->dbs[s];

			if (!OidIsValid(slot->dboid))
				continue;
			busy |= (slot->worker_pid != 0);
			if (dbs != NIL && !listed(dbs, slot->dboid))
				continue;
			if (due < 0 || slot->next_run < reaper->dbs[due].next_run)
				due = s;
		}
		if (running == NULL && !busy && due >= 0)
		{
			if (reaper->dbs[due].next_run <= now)
			{
				MemoryContextSwitchTo(TopMemoryContext);
				running = start_worker(due);
				MemoryContextSwitchTo(loop_context);
				running_slot = due;
				if (running == NULL)
					reaper->dbs[due].next_run = ik_time_plus_ms(now, LAUNCHER_NAP_MS);
			}
			else
				wake = Min(wake, reaper->dbs[due].next_run);
		}
		LWLockRelease(reaper->lock);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 busy && running == NULL ? 1000 :
						 Max(TimestampDifferenceMilliseconds(GetCurrentTimestamp(), wake), 1),
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

static ReaperDb *my_slot = NULL;

/* A worker's exit, however it happens, frees its database for the next. */
static void
release_slot(int code, Datum arg)
{
	LWLockAcquire(reaper->lock, LW_EXCLUSIVE);
	if (my_slot->worker_pid == MyProcPid)
		my_slot->worker_pid = 0;
	LWLockRelease(reaper->lock);
}

void
ik_reaper_main(Datum main_arg)
{
	int			s = DatumGetInt32(main_arg);
	Oid			dboid;
	bool		mine;
	bool		drained;
	TimestampTz cursor;

	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* one worker per database, whoever started it */
	my_slot = &reaper->dbs[s];
	LWLockAcquire(reaper->lock, LW_EXCLUSIVE);
	mine = (my_slot->dboid == dboid &&
			(my_slot->worker_pid == 0 ||
			 BackendPidGetProc(my_slot->worker_pid) == NULL));
	if (mine)
		my_slot->worker_pid = MyProcPid;
	LWLockRelease(reaper->lock);
	if (!mine)
		proc_exit(0);
	before_shmem_exit(release_slot, (Datum) 0);

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("idempotency reaper");

	/* a run with a backlog left starts the next where it stopped */
	cursor = my_slot->backlog ? my_slot->cursor : DT_NOBEGIN;
	drained = ik_reap_run(ik_time_plus_ms(GetCurrentTimestamp(), IK_REAPER_RUN_MS),
						  &cursor);

	LWLockAcquire(reaper->lock, LW_EXCLUSIVE);
	my_slot->backlog = !drained;
	my_slot->cursor = cursor;
	my_slot->run_finished = true;
	LWLockRelease(reaper->lock);
	proc_exit(0);
}

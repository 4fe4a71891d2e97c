/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  The idempotency.* configuration parameters.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include <limits.h>

#include "compat.h"
#include "access/parallel.h"
#include "miscadmin.h"
#include "utils/guc.h"

/* Rollout: the mode of scopes without a policy row, and its share. */
int			ik_mode = IK_MODE_ENFORCE;
int			ik_enforce_percent = 100;

static const struct config_enum_entry mode_options[] = {
	{"off", IK_MODE_OFF, false},
	{"shadow", IK_MODE_SHADOW, false},
	{"enforce", IK_MODE_ENFORCE, false},
	{NULL, 0, false}
};

/* Default wait for a key held by another transaction: none, IK409 at once. */
int			ik_lock_timeout_ms = 0;

/*
 * Replay window and retention, both counted from the first claim.  They
 * are money guarantees, so only a superuser (or a policy row) sets them:
 * an application role that could shorten them could charge twice.
 */
int			ik_ttl_s = 24 * 60 * 60;
int			ik_retain_s = 7 * 24 * 60 * 60;

/* Key locks one transaction may hold; -1: half of max_locks_per_transaction. */
int			ik_max_key_locks = -1;

/* Entries of the per-scope statistics (scope_stats.c); 0: none. */
int			ik_scope_stats_max = 5000;

/* Whether this session may TRUNCATE idempotency.keys (truncate_guard.c). */
bool		ik_allow_truncate = false;
bool		ik_citus_distributed = false;

/*
 * The secrets: the key of the HMAC-SHA256 fingerprints (empty means plain
 * SHA-256), the previous one while a rotation runs, and that of the
 * downstream keys.  Nobody reads them back, superusers included:
 * GUC_SUPERUSER_ONLY alone still shows them to members of
 * pg_read_all_settings, a role monitoring users are commonly given.  Nor
 * are they ever written to the server log: a reload that changes a
 * setting's value logs the line of the file, so the value a secret's
 * setting holds is always empty (no reload changes it), and the secret
 * itself is kept in the setting's extra by check_secret(), from where the
 * assign hooks publish it.
 *
 * That empty value and its source are all a parallel worker gets of the
 * leader's setting: a worker that restores a setting the leader has from
 * anywhere but the default cannot tell a secret from none, and then
 * refuses to hash (ik_secret_value()) rather than hash without it.
 */
struct IkSecret
{
	bool		unknown;		/* a parallel worker's: the leader has one */
	char		value[FLEXIBLE_ARRAY_MEMBER];	/* "" when none */
};

static char *fingerprint_secret_setting = NULL;
static char *fingerprint_secret_previous_setting = NULL;
static char *downstream_secret_setting = NULL;
static const IkSecret no_secret = {false};
const IkSecret *ik_fingerprint_secret = &no_secret;
const IkSecret *ik_fingerprint_secret_previous = &no_secret;
const IkSecret *ik_downstream_secret = &no_secret;

/* The background reaper. */
char	   *ik_reaper_databases = NULL;
int			ik_reaper_naptime_s = 60;
int			ik_reaper_batch_size = 10000;
int			ik_reaper_rows_per_second = 20000;

static bool
check_secret(char **newval, void **extra, GucSource source)
{
	bool		unknown = InitializingParallelWorker &&
		source != PGC_S_DEFAULT;
	const char *value = unknown ? "" : *newval;
	IkSecret   *secret = ik_guc_malloc(offsetof(IkSecret, value) +
									   strlen(value) + 1);
	char	   *shown = ik_guc_strdup("");

	if (secret == NULL || shown == NULL)
	{
		ik_guc_free(secret);
		ik_guc_free(shown);
		return false;
	}
	secret->unknown = unknown;
	strcpy(secret->value, value);
	ik_guc_free(*newval);
	*newval = shown;
	*extra = secret;
	return true;
}

static void
assign_fingerprint_secret(const char *newval, void *extra)
{
	ik_fingerprint_secret = extra ? (const IkSecret *) extra : &no_secret;
}

static void
assign_fingerprint_secret_previous(const char *newval, void *extra)
{
	ik_fingerprint_secret_previous = extra ?
		(const IkSecret *) extra : &no_secret;
}

static void
assign_downstream_secret(const char *newval, void *extra)
{
	ik_downstream_secret = extra ? (const IkSecret *) extra : &no_secret;
}

/* What SHOW says of a secret: only whether one is set. */
static const char *
show_fingerprint_secret(void)
{
	return ik_fingerprint_secret->value[0] == '\0' ? "" : "********";
}

static const char *
show_fingerprint_secret_previous(void)
{
	return ik_fingerprint_secret_previous->value[0] == '\0' ? "" : "********";
}

static const char *
show_downstream_secret(void)
{
	return ik_downstream_secret->value[0] == '\0' ? "" : "********";
}

/*
 * The key a secret's setting holds, "" for none.  In a parallel worker
 * whose leader has a secret, an error: its value does not reach workers.
 */
const char *
ik_secret_value(const IkSecret *secret, const char *name)
{
	if (secret->unknown)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s is not available in a parallel worker", name),
				 errdetail("The secret is never passed to parallel workers, and nothing is hashed without it."),
				 errhint("ALTER EXTENSION idempotency UPDATE marks the functions PARALLEL RESTRICTED, so that they run in the leader; until then, SET max_parallel_workers_per_gather = 0.")));
	return secret->value;
}

void
ik_define_gucs(void)
{
	DefineCustomEnumVariable("idempotency.mode",
							 "Mode of scopes without a row in idempotency.policies: off, shadow or enforce.",
							 "shadow records keys and counts what enforce would do, but never refuses a request.",
							 &ik_mode,
							 IK_MODE_ENFORCE, mode_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("idempotency.enforce_percent",
							"Share of the scopes without a policy row that idempotency.mode = enforce enforces.",
							"A stable, hash-chosen subset; the other scopes are shadowed.",
							&ik_enforce_percent,
							100, 0, 100,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("idempotency.lock_timeout",
							"How long a claim waits for a key that another transaction holds.",
							"Used when claim() is called with wait => NULL. Zero raises IK409 at once.",
							&ik_lock_timeout_ms,
							0, 0, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("idempotency.ttl",
							"Replay window of a key, counted from its first claim.",
							"Inside it a completed key replays its stored response.",
							&ik_ttl_s,
							24 * 60 * 60, 1, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("idempotency.retain",
							"Retention of a key, counted from its first claim.",
							"Between the replay window and retention a claim raises IK410; "
							"after it the key is new. A shorter one than idempotency.ttl is raised to it, with a WARNING.",
							&ik_retain_s,
							7 * 24 * 60 * 60, 1, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("idempotency.max_key_locks",
							"Most idempotency key locks one transaction may hold.",
							"Each takes an entry of the lock table all sessions share. "
							"-1 means half of max_locks_per_transaction.",
							&ik_max_key_locks,
							-1, -1, INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("idempotency.allow_truncate",
							 "Lets this session TRUNCATE idempotency.keys.",
							 "TRUNCATE removes every key, so every retry would charge again.",
							 &ik_allow_truncate,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	/*
	 * Set per database on every node by idempotency.distribute(): a node
	 * whose Citus metadata was dropped looks like a single node, and would
	 * otherwise answer claims from its empty shell (citus.c).
	 */
	DefineCustomBoolVariable("idempotency.citus_distributed",
							 "Says that idempotency.keys is distributed by Citus in this database.",
							 "Set by idempotency.distribute() on every node; a node without Citus metadata then refuses claims.",
							 &ik_citus_distributed,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	/*
	 * A size of shared memory, so only the postmaster sets it, and only a
	 * preloaded library may define such a setting: a backend that loads the
	 * library later has no table anyway.
	 */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("idempotency.scope_stats_max",
								"Most scopes the per-scope statistics keep in shared memory.",
								"0 keeps none.",
								&ik_scope_stats_max,
								5000, 0, 1000000,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);

	DefineCustomStringVariable("idempotency.fingerprint_secret",
							   "Key of the HMAC-SHA256 request fingerprints.",
							   "Empty means plain SHA-256. Set it in postgresql.conf with the "
							   "library in shared_preload_libraries.",
							   &fingerprint_secret_setting,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL |
							   GUC_NOT_IN_SAMPLE,
							   check_secret, assign_fingerprint_secret,
							   show_fingerprint_secret);

	DefineCustomStringVariable("idempotency.fingerprint_secret_previous",
							   "Previous key of the HMAC-SHA256 request fingerprints, while a rotation runs.",
							   "A retry whose fingerprint under it matches the stored one is the same request. "
							   "Keep it for idempotency.retain after changing the secret, then drop it.",
							   &fingerprint_secret_previous_setting,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL |
							   GUC_NOT_IN_SAMPLE,
							   check_secret, assign_fingerprint_secret_previous,
							   show_fingerprint_secret_previous);

	DefineCustomStringVariable("idempotency.downstream_secret",
							   "Key of the downstream keys sent to payment processors.",
							   "Set it once, the same on every node, and never change it: "
							   "the same request must get the same key for as long as the "
							   "processor remembers keys.",
							   &downstream_secret_setting,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL |
							   GUC_NOT_IN_SAMPLE,
							   check_secret, assign_downstream_secret,
							   show_downstream_secret);

	DefineCustomStringVariable("idempotency.reaper_databases",
							   "Databases whose expired keys the background reaper deletes.",
							   "A comma-separated list; needs the library in shared_preload_libraries.",
							   &ik_reaper_databases,
							   "postgres",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   ik_check_reaper_databases, NULL, NULL);

	DefineCustomIntVariable("idempotency.reaper_naptime",
							"Time between two rounds of the background reaper.",
							NULL,
							&ik_reaper_naptime_s,
							60, 1, INT_MAX / 1000,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("idempotency.reaper_batch_size",
							"Rows the reaper, or reap(), deletes per batch.",
							"The background reaper commits each batch on its own.",
							&ik_reaper_batch_size,
							10000, 1, 1000000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("idempotency.reaper_rows_per_second",
							"Most rows per second the background reaper deletes.",
							"A throttle that keeps claims' latency while a backlog is reaped; 0 means no limit.",
							&ik_reaper_rows_per_second,
							20000, 0, INT_MAX,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("idempotency");
}

/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  The idempotency.* configuration parameters.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include <limits.h>

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

/* Whether this session may TRUNCATE idempotency.keys (truncate_guard.c). */
bool		ik_allow_truncate = false;

/* Key for HMAC-SHA256 fingerprints; empty means plain SHA-256. */
char	   *ik_fingerprint_secret = NULL;

/* The background reaper. */
char	   *ik_reaper_databases = NULL;
int			ik_reaper_naptime_s = 60;
int			ik_reaper_batch_size = 10000;

/*
 * Nobody reads the secret back, superusers included: GUC_SUPERUSER_ONLY
 * alone still shows it to members of pg_read_all_settings, a role that
 * monitoring users are commonly given.
 */
static const char *
show_fingerprint_secret(void)
{
	if (ik_fingerprint_secret == NULL || ik_fingerprint_secret[0] == '\0')
		return "";
	return "********";
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
							"after it the key is new. Must not be shorter than idempotency.ttl.",
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

	DefineCustomStringVariable("idempotency.fingerprint_secret",
							   "Key of the HMAC-SHA256 request fingerprints.",
							   "Empty means plain SHA-256. Set it in postgresql.conf with the "
							   "library in shared_preload_libraries.",
							   &ik_fingerprint_secret,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL |
							   GUC_NOT_IN_SAMPLE,
							   NULL, NULL, show_fingerprint_secret);

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

	MarkGUCPrefixReserved("idempotency");
}

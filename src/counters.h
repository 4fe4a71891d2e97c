/*-------------------------------------------------------------------------
 *
 * counters.h
 *	  The one list of the extension's counters.
 *
 * Each counter is named here once, as PostgreSQL's cmdtaglist.h names its
 * command tags, and this list is expanded into every table that needs it:
 * the enums of idempotency.h, the columns of idempotency.stats (stats.c)
 * and idempotency.scope_stats (scope_stats_views.c), which per-database
 * counter counts per scope too and which counts an eviction spares
 * (scope_stats.c), and which SQLSTATE each error counter counts
 * (counting.c).  Adding a counter is one line here and its column in the
 * views of the install script.
 *
 * Three kinds of line, so that each expansion takes only what it needs:
 *
 *	IK_DATABASE(name, column, sqlstate)
 *		counted per database only (idempotency.stats);
 *	IK_BOTH(name, column, sqlstate, offence)
 *		counted per database and per scope (idempotency.scope_stats too);
 *	IK_SCOPE(name, column, offence)
 *		counted per scope only.
 *
 * name makes the enum member (IK_name, and IK_SCOPE_name for a per-scope
 * counter); column is the views' column; sqlstate is the error of ours
 * that the counter counts, or 0; offence says whether the count is
 * something enforce refused or would refuse, which an eviction of the
 * per-scope table spares.  The order is the views' column order.
 *
 * No include guard: it is meant to be included several times, with the
 * three macros defined differently each time.
 *
 *-------------------------------------------------------------------------
 */

/* claims, by outcome */
IK_BOTH(CLAIMS_NEW, "claims_new", 0, false)
IK_BOTH(CLAIMS_REPLAY, "claims_replay", 0, false)
IK_BOTH(CLAIMS_RESUME, "claims_resume", 0, false)
/* of the new claims, those made in shadow mode */
IK_SCOPE(CLAIMS_SHADOW, "claims_shadow", false)
/* errors of ours, by SQLSTATE */
IK_DATABASE(ERRORS_IK400, "errors_ik400", ERRCODE_IK_INVALID_ARGUMENT)
IK_BOTH(ERRORS_IK409, "errors_ik409", ERRCODE_IK_IN_PROGRESS, true)
IK_BOTH(ERRORS_IK410, "errors_ik410", ERRCODE_IK_EXPIRED, true)
IK_BOTH(ERRORS_IK422, "errors_ik422", ERRCODE_IK_FINGERPRINT_MISMATCH, true)
IK_BOTH(ERRORS_IK428, "errors_ik428", ERRCODE_IK_PROTOCOL_VIOLATION, true)
/* how claims ended */
IK_DATABASE(COMPLETIONS, "completions", 0)
IK_DATABASE(RELEASES, "releases", 0)
IK_BOTH(RELEASES_5XX, "releases_5xx", 0, false)
/* what enforce would have done to shadowed claims */
IK_BOTH(SHADOW_WOULD_REPLAY, "shadow_would_replay", 0, false)
IK_BOTH(SHADOW_WOULD_CONFLICT, "shadow_would_conflict", 0, true)
IK_BOTH(SHADOW_WOULD_IK422, "shadow_would_ik422", 0, true)
IK_BOTH(SHADOW_WOULD_IK410, "shadow_would_ik410", 0, true)
/* the reaper */
IK_DATABASE(REAPED_ROWS, "reaped_rows", 0)
IK_DATABASE(ABANDONED_CLAIMS, "abandoned_claims", 0)
IK_DATABASE(REAPER_RUNS, "reaper_runs", 0)		/* also sets last_reap */
IK_DATABASE(REAPER_SKIPPED_ROWS, "reaper_skipped_rows", 0)

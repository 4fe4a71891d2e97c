#!/usr/bin/env bash
# `make rollout-report`: for a database whose scopes run in shadow mode, the
# scopes that enforcing would affect, as a rollout owner reads it: per
# scope, its shadowed claims, what enforce would have refused (409, 422,
# 410) or replayed, since when its counts are complete, and a
# recommendation (idempotency.rollout_report()); around it, how much of the
# shadow period the statistics cover and what eviction may have hidden.
#
#   SHADOW_SINCE  when the scopes were switched to shadow (required): a scope is
#                 called safe only if its counts are complete since then
#   ROLLOUT_DB    the database (default: libpq's PGDATABASE)
#   PG_CONFIG     picks psql (default: the psql on PATH)
# The connection is libpq's environment (PGHOST, PGPORT, PGUSER, ...), as a
# role with the rollout owner's grants (README.md).  Exit status 1 on an
# error, else 0 whatever the recommendations.
set -euo pipefail
since=${SHADOW_SINCE-}
[ -n "$since" ] || { echo "rollout-report: set SHADOW_SINCE to the time the scopes were switched to shadow mode" >&2; exit 1; }
[ -z "${ROLLOUT_DB-}" ] || export PGDATABASE=$ROLLOUT_DB
psql=psql
[ -z "${PG_CONFIG-}" ] || psql="$("$PG_CONFIG" --bindir)/psql"

out=$("$psql" -X -q -v ON_ERROR_STOP=1 -v since="$since" <<'SQL'
\pset pager off
\pset footer off
\pset tuples_only on
\pset format unaligned
CREATE TEMP TABLE report AS
	SELECT * FROM idempotency.rollout_report(:'since');
SELECT format('Rollout report for database %s, shadow period since %s',
			  current_database(), date_trunc('second', :'since'::timestamptz));
SELECT format('Per-scope statistics since %s: %s of %s entries in use, %s evictions (%s of them of scopes with errors)%s',
			  date_trunc('second', i.stats_reset), i.entries, i.max_entries, i.evictions,
			  i.evictions_with_errors,
			  CASE WHEN i.last_eviction IS NULL THEN ''
				   ELSE ', the last at ' || date_trunc('second', i.last_eviction) END)
  FROM idempotency.scope_stats_info i;
SELECT 'WARNING: the statistics start after the shadow period began (a restart or a reset): no scope is called safe.'
  FROM idempotency.scope_stats_info i WHERE i.stats_reset > :'since'::timestamptz;
SELECT format('WARNING: %s entries of scopes with errors were evicted; raise idempotency.scope_stats_max.',
			  i.evictions_with_errors)
  FROM idempotency.scope_stats_info i WHERE i.evictions_with_errors > 0;
SELECT 'Scopes evicted and not seen since are not listed, nor scopes without shadowed claims.'
  FROM idempotency.scope_stats_info i WHERE i.evictions > 0;
SELECT '';
\pset tuples_only off
\pset format aligned
SELECT scope, shadow_claims AS "shadow claims", would_409 AS "would 409",
	   would_422 AS "would 422", would_410 AS "would 410",
	   would_replay AS "would replay",
	   date_trunc('second', tracked_since) AS "tracked since", recommendation
  FROM report;
\pset tuples_only on
\pset format unaligned
SELECT format('Summary: %s of %s scopes safe to enforce, %s to investigate.',
			  count(*) FILTER (WHERE recommendation = 'safe to enforce'), count(*),
			  count(*) FILTER (WHERE recommendation <> 'safe to enforce'))
  FROM report;
SQL
)
printf '%s\n' "$out"

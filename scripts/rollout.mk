# `make rollout-report SHADOW_SINCE='2026-12-01 09:00+00' [DB=payments]`: which
# shadowed scopes enforcing would affect, read from a running server's
# per-scope statistics (scripts/rollout-report.sh; the connection is libpq's
# environment, PGHOST, PGPORT, PGUSER, with DB for PGDATABASE).
# Included from the Makefile:
#     include scripts/rollout.mk

# Do not take over the default goal, wherever this file is included.
idempotency_rollout_saved_goal := $(.DEFAULT_GOAL)

.PHONY: rollout-report
#> use rollout-report which shadowed scopes enforcing would affect (SHADOW_SINCE=..., DB=...)
rollout-report:
	PG_CONFIG='$(PG_CONFIG)' SHADOW_SINCE='$(SHADOW_SINCE)' ROLLOUT_DB='$(DB)' \
		bash scripts/rollout-report.sh

.DEFAULT_GOAL := $(idempotency_rollout_saved_goal)

# `make test-citus`: the TAP tests in t/citus/ on real Citus clusters on loopback
# (scripts/test-citus.sh), against the Citus installed in PG_CONFIG's PostgreSQL;
# without one it says it skipped and passes.
# `make bench-citus`: the Citus baseline (scripts/bench-citus.pl), the same way;
# its table lands in bench/results/citus.md.
# Included from the Makefile:
#     include scripts/citus.mk

# Do not take over the default goal, wherever this file is included.
idempotency_citus_saved_goal := $(.DEFAULT_GOAL)

.PHONY: test-citus bench-citus
#> test test-citus t/citus/ against the installed Citus; skips, passing, without one
test-citus:
	MAKE='$(MAKE)' PG_CONFIG='$(PG_CONFIG)' bash scripts/test-citus.sh
#> bench bench-citus the Citus baseline against the installed Citus (bench/results/citus.md)
bench-citus:
	MAKE='$(MAKE)' PG_CONFIG='$(PG_CONFIG)' bash scripts/test-citus.sh --bench

.DEFAULT_GOAL := $(idempotency_citus_saved_goal)

# fuzz/fuzz.mk: fuzzing targets, included from the Makefile with
#     include fuzz/fuzz.mk
# after `include $(PGXS)`.
#
#   make fuzz                     sqlsmith + ikfuzz side by side, 60 s each
#   make fuzz FUZZ_SECONDS=20     a short pass (CI)
#   make fuzz FUZZ_SEED=123       replay a pass (the seed is printed)
#   make fuzz-sqlsmith / fuzz-api only one of the two fuzzers (as does
#                                 make fuzz FUZZ_WHAT=sqlsmith or api)
#
# Each runs fuzz/run.sh: build from a copy of the tree, a private install,
# a throwaway cluster, the fuzzers, then a check of the server log for
# crashes.  Other knobs: FUZZ_INCLUDE_KNOWN=1, FUZZ_KEEP=1, FUZZ_CFLAGS.
# docs/fuzzing.md has the details.

FUZZ_SECONDS ?= 60
FUZZ_SEED ?=
FUZZ_WHAT ?= all
FUZZ_ENV = MAKE='$(MAKE)' PG_CONFIG='$(PG_CONFIG)' FUZZ_SECONDS='$(FUZZ_SECONDS)' FUZZ_SEED='$(FUZZ_SEED)'

.PHONY: fuzz fuzz-sqlsmith fuzz-api
#> test fuzz sqlsmith and the API fuzzer side by side (FUZZ_SECONDS each, default 60)
fuzz:
	$(FUZZ_ENV) FUZZ_WHAT='$(FUZZ_WHAT)' bash fuzz/run.sh
#> test fuzz-sqlsmith sqlsmith alone
fuzz-sqlsmith:
	$(FUZZ_ENV) FUZZ_WHAT=sqlsmith bash fuzz/run.sh
#> test fuzz-api the API fuzzer fuzz/ikfuzz alone
fuzz-api:
	$(FUZZ_ENV) FUZZ_WHAT=api bash fuzz/run.sh

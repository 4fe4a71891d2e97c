# bench/bench.mk: the benchmark (issue 6), included from the Makefile with
#     include bench/bench.mk
# after `include $(PGXS)` and bench/drivers.mk.
#
#   make bench         the full run, about 25 minutes (not in CI): results in
#                      bench/results/ (results.md, throughput.png, *.csv)
#   make bench-smoke   the same, a second per case (CI): bench/results/smoke/
#   make bench-scope-stats  ext-new with the per-scope statistics against the
#                      same build without them (bench/scope-stats-cost.sh)
#
# Both run bench/run.sh as root on Debian 12: set-up, build, a throwaway
# cluster and redis-server; its header lists the BENCH_* knobs, which can
# be given on the command line (make bench BENCH_ROUNDS=3).

BENCH_ENV = MAKE='$(MAKE)' PG_CONFIG='$(PG_CONFIG)'
BENCH_SMOKE = BENCH_ROUNDS=1 BENCH_SECONDS=1 BENCH_CLIENTS='1 8' \
	BENCH_SCALE_ROWS=100000 BENCH_DC_SECONDS=5 BENCH_RESULTS=bench/results/smoke

.PHONY: bench bench-smoke bench-scope-stats
bench:
	$(BENCH_ENV) bash bench/run.sh
bench-smoke:
	$(BENCH_ENV) $(BENCH_SMOKE) bash bench/run.sh
bench-scope-stats:
	$(BENCH_ENV) bash bench/scope-stats-cost.sh

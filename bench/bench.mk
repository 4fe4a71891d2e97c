# bench/bench.mk: the benchmark (issue 6), included from the Makefile with
#     include bench/bench.mk
# after `include $(PGXS)` and bench/drivers.mk.
#
#   make bench         the full run, about 25 minutes (not in CI): results in
#                      bench/results/ (results.md, throughput.png, *.csv)
#   make bench-smoke   the same, a second per case (CI): bench/results/smoke/
#   make bench-scope-stats  ext-new with the per-scope statistics against the
#                      same build without them (bench/scope-stats-cost.sh)
#   make bench-callgrind  instructions per transaction of each case, one
#                      client, under callgrind (bench/callgrind.sh)
#   make bench-reaper  claims' latency while the reaper deletes a backlog of
#                      10 million expired keys, and its rate (bench/reaper.sh)
#   make bench-upgrade how long ALTER EXTENSION ... UPDATE from 0.1.0 holds
#                      its locks on 10 million keys, and the VALIDATE
#                      (bench/upgrade-lock.sh)
#
# All run as root on Debian 12, in a throwaway cluster; bench/run.sh's
# header lists the BENCH_* knobs, which can be given on the command line
# (make bench BENCH_ROUNDS=3).  Each installs the extension it measures into
# a private overlay of the PostgreSQL directories (scripts/private-install.sh),
# not the system's, so that it neither disturbs nor measures another
# worktree's build; IDEMPOTENCY_PRIVATE_INSTALL=0 installs as before.

BENCH_ENV = MAKE='$(MAKE)' PG_CONFIG='$(PG_CONFIG)'
BENCH_PRIVATE = bash scripts/private-install.sh
BENCH_SMOKE = BENCH_ROUNDS=1 BENCH_SECONDS=1 BENCH_CLIENTS='1 8' \
	BENCH_SCALE_ROWS=100000 BENCH_DC_SECONDS=5 BENCH_RESULTS=bench/results/smoke

.PHONY: bench bench-smoke bench-scope-stats bench-callgrind bench-reaper bench-upgrade
#> bench bench the full benchmark against the alternatives, about 25 minutes (bench/results/)
bench:
	$(BENCH_ENV) $(BENCH_PRIVATE) bash bench/run.sh
#> bench bench-smoke the same, a second per case (CI)
bench-smoke:
	$(BENCH_ENV) $(BENCH_SMOKE) $(BENCH_PRIVATE) bash bench/run.sh
#> bench bench-scope-stats ext-new with the per-scope statistics against the build without them
bench-scope-stats:
	$(BENCH_ENV) bash bench/scope-stats-cost.sh
#> bench bench-callgrind instructions per transaction of each case, under callgrind
bench-callgrind:
	$(BENCH_ENV) $(BENCH_PRIVATE) bash -c '$(MAKE) --no-print-directory install >/dev/null && bash bench/callgrind.sh'
#> bench bench-reaper claims' latency while the reaper deletes 10 million expired keys
bench-reaper:
	$(BENCH_ENV) $(BENCH_PRIVATE) bash bench/reaper.sh
#> bench bench-upgrade the locks ALTER EXTENSION UPDATE from 0.1.0 holds on 10 million keys
bench-upgrade:
	$(BENCH_ENV) $(BENCH_PRIVATE) bash bench/upgrade-lock.sh

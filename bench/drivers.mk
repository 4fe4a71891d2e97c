# bench/drivers.mk: the benchmark's C drivers, for what pgbench cannot do.
# Included from the Makefile (after `include $(PGXS)`, so that PGXS keeps
# the default goal) with
#     include bench/drivers.mk
# or used alone:
#     make -f bench/drivers.mk bench-drivers
#
#   bench/redisfront    throughput and latency of the Redis-in-front design
#   bench/doublecharge  double charges of each design under concurrency and
#                       faults
#
# Both need libpq (libpq-dev) and hiredis (libhiredis-dev), and both are
# linked with bench/driver.c, what they share; it is compiled into each
# binary in one command, so that there is no object file to clean.
# BENCH_DRIVERS lists the binaries, for the Makefile's EXTRA_CLEAN.

PG_CONFIG ?= pg_config

BENCH_DRIVERS = bench/redisfront bench/doublecharge
BENCH_DRIVER_CFLAGS = -O2 -Wall -Wextra -Werror -pthread \
	-I$(shell $(PG_CONFIG) --includedir)
BENCH_DRIVER_LIBS = -L$(shell $(PG_CONFIG) --libdir) -lpq -lhiredis -lm

.PHONY: bench-drivers
#> bench bench-drivers the benchmark's C drivers (bench/redisfront, bench/doublecharge)
bench-drivers: $(BENCH_DRIVERS)

$(BENCH_DRIVERS): bench/%: bench/%.c bench/driver.c bench/driver.h \
		bench/drivers.mk
	$(CC) $(BENCH_DRIVER_CFLAGS) -o $@ $< bench/driver.c $(BENCH_DRIVER_LIBS)

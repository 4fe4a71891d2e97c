# idempotency: PGXS build.  `make demo` and `make test` are the entry points
# documented at the top of README.md; both run scripts/setup-debian.sh first.

EXTENSION = idempotency
MODULE_big = idempotency
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
DATA = $(sort $(wildcard idempotency--*.sql))
PGFILEDESC = "idempotency - Idempotency-Key claims in the payment transaction"

PG_CPPFLAGS = -I$(srcdir)/src
# -Wextra with PostgreSQL's headers warns of their unused parameters
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter

REGRESS = $(sort $(basename $(notdir $(wildcard sql/*.sql))))
REGRESS_OPTS = --encoding=UTF8 --load-extension=pgcrypto --load-extension=idempotency
ISOLATION = $(sort $(basename $(notdir $(wildcard specs/*.spec))))
ISOLATION_OPTS = --load-extension=pgcrypto --load-extension=idempotency

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
include fuzz/fuzz.mk
include scripts/sanitize.mk
include scripts/release.mk
include scripts/indent.mk
include scripts/citus.mk
include model/model.mk
include scripts/rollout.mk
include bench/drivers.mk
include bench/bench.mk
include examples/payment-api/example.mk
EXTRA_CLEAN += $(BENCH_DRIVERS)

# ---------------------------------------------------------------------------
# Entry points (as root on Debian 12; CI runs `make test` from .ci/run).
#   make demo  - set up, build, install, run demo/payment_flow.sql in a throwaway cluster
#   make test  - set up, build, install, run pg_regress + isolation (pg_virtualenv,
#                library preloaded) and TAP t/*.pl (prove as the postgres user)
#   make bench - set up, build, install, then the benchmark against the alternatives
#                in a throwaway cluster (bench/bench.mk; make bench-smoke in CI)
#   make indent / make check-indent - PostgreSQL's pgindent over src/ in place, or only
#                its diff, failing if any file would change (scripts/indent.mk)
# `make installcheck` still runs regress + isolation against your own running cluster
# (which needs shared_preload_libraries = 'idempotency').  TAP_TESTS is deliberately
# not set: PostgreSQL refuses to run as root, so scripts/test.sh runs prove itself.
.PHONY: demo test setup
setup:
	bash scripts/setup-debian.sh
demo:
	MAKE='$(MAKE)' bash scripts/demo.sh
test:
	MAKE='$(MAKE)' bash $(IDEMPOTENCY_TEST_SCRIPT)

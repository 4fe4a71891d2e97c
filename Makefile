# idempotency: PGXS build.  `make demo` and `make test` are the entry points
# documented at the top of README.md; both run scripts/setup-debian.sh first.

EXTENSION = idempotency
EXTVERSION = $(shell sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" $(srcdir)/idempotency.control)
MODULE_big = idempotency
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
# The install script of the current version is built from the released one
# before it and the update scripts since (scripts/install-script.sh); the
# released and update scripts are installed as they are.
DATA_built = idempotency--$(EXTVERSION).sql
DATA = $(filter-out $(DATA_built),$(sort $(wildcard idempotency--*.sql)))
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

$(DATA_built): scripts/install-script.sh $(filter-out $(DATA_built),$(wildcard idempotency--*.sql))
	bash scripts/install-script.sh $(EXTVERSION) >$@.tmp && mv $@.tmp $@
include fuzz/fuzz.mk
include scripts/sanitize.mk
include scripts/release.mk
include scripts/majors.mk
include scripts/indent.mk
include scripts/citus.mk
include model/model.mk
include scripts/rollout.mk
include bench/drivers.mk
include bench/bench.mk
include examples/payment-api/example.mk
include trusted/trusted.mk
EXTRA_CLEAN += $(BENCH_DRIVERS)

# ---------------------------------------------------------------------------
# Entry points (as root on Debian 12; CI runs `make test` from .ci/run).
# `make help` lists every target, grouped, from the "#> GROUP TARGET
# DESCRIPTION" line above its rule here or in an included file
# (scripts/help.sh; `make check-release` fails on a target without one).
# The two a newcomer needs, both running scripts/setup-debian.sh first:
#   make demo  - build, install, run demo/payment_flow.sql in a throwaway cluster
#   make test  - build, install, run every suite (pg_regress + isolation with the
#                library preloaded, TAP as the postgres user, release checks, the
#                example API); TAP_TESTS is deliberately not set: PostgreSQL refuses
#                to run as root, so scripts/test.sh runs prove itself.
# PGXS's own targets:
#> use all build the extension
#> use install install it into PG_CONFIG's PostgreSQL
#> use uninstall remove what install installed
#> use clean remove the build's files
#> test installcheck regress + isolation against your running cluster (preloaded)
.PHONY: help
#> use help this list
help:
	@bash scripts/help.sh $(MAKEFILE_LIST)
.PHONY: demo test setup
#> use setup the Debian packages every target needs (scripts/setup-debian.sh)
setup:
	bash scripts/setup-debian.sh
#> use demo set up, build, install, run demo/payment_flow.sql in a throwaway cluster
demo:
	MAKE='$(MAKE)' bash scripts/demo.sh
#> test test set up, build, install, then every suite: regress, isolation, TAP, release checks, the example API
test:
	MAKE='$(MAKE)' bash $(IDEMPOTENCY_TEST_SCRIPT)

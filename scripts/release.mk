# PostgreSQL 18, pg_upgrade, packages and the release checks.  Included from the Makefile:
#     include scripts/release.mk
#
#   make pg18          PostgreSQL 18 from ../shared/toolchain, built once and cached
#                      (scripts/toolchain.sh), and copied to /usr/local/pgsql-18 when that
#                      does not exist, so that `make PG_CONFIG=/usr/local/pgsql-18/bin/pg_config`
#                      builds against it
#   make test-pg18     the whole suite on PostgreSQL 18 with assertions: regress, isolation,
#                      TAP, the fuzz smoke and the pg_upgrade test (scripts/test-cassert.sh --pg 18)
#   make test-upgrade  only the pg_upgrade test: 15 to 18, --copy and --link (t/upgrade/)
#   make deb           the Debian package, built from a copy of the tree into dist/
#   make test-deb      builds it, installs it with dpkg in a private mount namespace and runs
#                      CREATE EXTENSION, the demo and the regression suites against it
#   make dist          the PGXN release archive dist/idempotency-VERSION.zip (git archive)
#   make check-release the version in META.json, debian/changelog and README.md against
#                      idempotency.control, the license everywhere, and the release archive
#
# The version is the control file's default_version, read here and by every script.

# Do not take over the default goal, wherever this file is included.
idempotency_release_saved_goal := $(.DEFAULT_GOAL)

EXTVERSION = $(shell sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" $(srcdir)/idempotency.control)

.PHONY: pg18 test-pg18 test-upgrade deb test-deb dist check-release
pg18:
	bash scripts/toolchain.sh postgresql-18 --link /usr/local/pgsql-18
test-pg18:
	bash scripts/test-cassert.sh --pg 18
test-upgrade:
	SUITES=upgrade bash scripts/test-cassert.sh --pg 18
deb:
	bash scripts/deb.sh build
test-deb:
	bash scripts/deb.sh test
dist: trusted
	@test -n "$(EXTVERSION)" || { echo "no default_version in idempotency.control" >&2; exit 1; }
	mkdir -p dist
	git archive --format=zip --prefix=idempotency-$(EXTVERSION)/ \
		--output=dist/idempotency-$(EXTVERSION).zip HEAD
	@echo "dist/idempotency-$(EXTVERSION).zip"
check-release:
	bash scripts/check-release.sh

.DEFAULT_GOAL := $(idempotency_release_saved_goal)

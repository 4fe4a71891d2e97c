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
#                      CREATE EXTENSION, the demo and the regression suites against it; then
#                      the packages of 17 (trixie) and of 18 and 19 (sid), each built and
#                      installed in its chroot (scripts/test-major.sh, SUITES=deb)
#   make dist          the PGXN release archive dist/idempotency-VERSION.zip (git archive)
#   make check-release the version in META.json, debian/changelog and README.md against
#                      idempotency.control, the license everywhere, and the release archive
#
# The version is the control file's default_version, read here and by every script.

# Do not take over the default goal, wherever this file is included.
idempotency_release_saved_goal := $(.DEFAULT_GOAL)

.PHONY: pg18 test-pg18 test-upgrade deb test-deb dist check-release
#> release pg18 PostgreSQL 18 from ../shared/toolchain, built once and cached
pg18:
	bash scripts/toolchain.sh postgresql-18 --link /usr/local/pgsql-18
#> test test-pg18 the whole suite on PostgreSQL 18 with assertions, the fuzz smoke, pg_upgrade from 15
test-pg18:
	bash scripts/test-cassert.sh --pg 18
#> test test-upgrade only the pg_upgrade test: 15 to 18, --copy and --link
test-upgrade:
	SUITES=upgrade bash scripts/test-cassert.sh --pg 18
#> release deb the Debian package, into dist/
deb:
	bash scripts/deb.sh build
#> release test-deb the Debian package built, installed with dpkg, tested
test-deb:
	bash scripts/deb.sh test
	SUITES=deb bash scripts/test-major.sh 17
	SUITES=deb bash scripts/test-major.sh 19
#> release dist the PGXN archive dist/idempotency-VERSION.zip
dist: trusted
	@test -n "$(EXTVERSION)" || { echo "no default_version in idempotency.control" >&2; exit 1; }
	mkdir -p dist
	git archive --format=zip --prefix=idempotency-$(EXTVERSION)/ \
		--output=dist/idempotency-$(EXTVERSION).zip HEAD
	@echo "dist/idempotency-$(EXTVERSION).zip"
#> release check-release the version and license said alike everywhere, and the archive
check-release:
	bash scripts/check-release.sh

.DEFAULT_GOAL := $(idempotency_release_saved_goal)

# PostgreSQL 17 and 19, which Debian 12 does not package, each in a cached chroot of the
# Debian suite that does (scripts/test-major.sh).  Included from the Makefile:
#     include scripts/majors.mk
#
#   make test-pg17   Debian 13 (trixie)'s postgresql-17: regress, isolation, TAP, and
#                    pg_upgrade from 15 (built in the chroot from Debian's 15.18 source)
#   make test-pg19   experimental's postgresql-19 in a sid chroot: regress, isolation, TAP,
#                    and pg_upgrade from sid's postgresql-18
#
# SUITES="deb regress isolation tap upgrade" (the default) picks suites; TAP_TESTS a subset
# of t/.  Each builds and installs the Debian package of its majors in the chroot.

# Do not take over the default goal, wherever this file is included.
idempotency_majors_saved_goal := $(.DEFAULT_GOAL)

.PHONY: test-pg17 test-pg19
#> test test-pg17 the whole suite on PostgreSQL 17 in a Debian 13 chroot, the package, pg_upgrade from 15
test-pg17:
	bash scripts/test-major.sh 17
#> test test-pg19 the whole suite on PostgreSQL 19 in a sid chroot, the package, pg_upgrade from 18
test-pg19:
	bash scripts/test-major.sh 19

.DEFAULT_GOAL := $(idempotency_majors_saved_goal)

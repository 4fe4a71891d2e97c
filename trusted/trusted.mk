# The trusted edition (trusted/README.md).  Included from the Makefile:
#     include trusted/trusted.mk
#
#   make trusted       dist/trusted/idempotency.sql and dist/trusted/idempotency-pgtle.sql,
#                      generated from trusted/idempotency.sql (trusted/build.sh)
#   make test-trusted  its tests (trusted/test.sh): installed by a role that is not a
#                      superuser, plpgsql_check, the contract suites, bit-identical
#                      fingerprints beside the C edition, pg_cron reaping, the dump crossing

idempotency_trusted_saved_goal := $(.DEFAULT_GOAL)

.PHONY: trusted test-trusted
#> release trusted the trusted edition: dist/trusted/idempotency.sql and its pg_tle script
trusted:
	bash trusted/build.sh dist/trusted
#> test test-trusted the trusted edition's tests: non-superuser install, contract suites, same bytes as C
test-trusted: trusted
	MAKE='$(MAKE)' bash trusted/test.sh

.DEFAULT_GOAL := $(idempotency_trusted_saved_goal)

# Memory-safety test modes (docs/memory-safety.md).  Included from the Makefile:
#     include scripts/sanitize.mk
# Each target runs set-up (Debian packages), the build of an assert-enabled PostgreSQL 15 in a
# private prefix (once: reused while its build stamp matches), the build of the extension
# from a copy of the tree, and pg_regress + isolation + TAP, then scans the server logs;
# it exits non-zero on any failure or report and ends with "tests: N passed, M failed".
#   make test-cassert    assertions (--enable-cassert --enable-debug)
#   make test-sanitize   the same server, the extension with ASan + UBSan
#   make test-valgrind   the same server under valgrind memcheck (slow)
# `make test SANITIZE=1` runs test-sanitize when the test recipe runs
# $(IDEMPOTENCY_TEST_SCRIPT) instead of scripts/test.sh.

# Do not take over the default goal, wherever this file is included.
idempotency_saved_goal := $(.DEFAULT_GOAL)

IDEMPOTENCY_TEST_SCRIPT = $(if $(filter-out 0,$(SANITIZE)),scripts/test-sanitize.sh,scripts/test.sh)

.PHONY: test-cassert test-sanitize test-valgrind
#> test test-cassert the whole suite on an assert-enabled PostgreSQL 15, logs scanned
test-cassert:
	bash scripts/test-cassert.sh
#> test test-sanitize the same with the extension built with ASan and UBSan
test-sanitize:
	bash scripts/test-sanitize.sh
#> test test-valgrind the same with the server under valgrind memcheck (slow)
test-valgrind:
	bash scripts/test-valgrind.sh

.DEFAULT_GOAL := $(idempotency_saved_goal)

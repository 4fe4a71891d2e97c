#!/usr/bin/env bash
# `make test-valgrind`: the whole suite (pg_regress, isolation, TAP) with every server process
# of the assert-enabled PostgreSQL 15 (built with USE_VALGRIND) under valgrind memcheck,
# PostgreSQL's own suppressions plus scripts/valgrind.supp; any valgrind error, assertion
# failure or crash fails the run.  Slow: see docs/memory-safety.md.
# See scripts/test-cassert.sh for the settings.
exec bash "$(dirname "$0")/test-cassert.sh" --mode valgrind "$@"

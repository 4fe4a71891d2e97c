#!/usr/bin/env bash
# `make test-sanitize` (and `make test SANITIZE=1`): the whole suite (pg_regress, isolation,
# TAP) with the extension compiled with AddressSanitizer and UndefinedBehaviorSanitizer
# (gcc, -fno-sanitize-recover=all), loaded into the assert-enabled PostgreSQL 15 with the ASan
# runtime preloaded; any report, assertion failure or crash fails the run.
# See scripts/test-cassert.sh for the settings and docs/memory-safety.md.
exec bash "$(dirname "$0")/test-cassert.sh" --mode sanitize "$@"

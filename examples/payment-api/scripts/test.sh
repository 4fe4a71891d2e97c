#!/usr/bin/env bash
# The example's tests (run by `make test` as its "example" suite, and by
# `make test-example`): npm ci, then node's test runner over test/*.test.js, one file
# at a time, each with its own throwaway cluster from PG_CONFIG (default: pg_config
# on PATH), which must have the extension installed.  The runner's TAP output ends
# with "# pass N" and "# fail M".  CHAOS_SECONDS and CHAOS_CLIENTS size the chaos run.
set -euo pipefail
. "$(dirname "$0")/node-deps.sh"
cd "$example_dir"
export PG_CONFIG=${PG_CONFIG:-pg_config}
exec node --test --test-concurrency=1 --test-reporter=tap test/*.test.js

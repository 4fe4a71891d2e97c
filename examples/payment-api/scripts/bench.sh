#!/usr/bin/env bash
# `make bench-api`: builds and installs the extension, then scripts/bench.js: the API
# with idempotency enforced against the same API with idempotency.mode = off, in
# interleaved rounds; results in bench-results/.  Knobs (environment):
#   BENCH_API_ROUNDS (5), BENCH_API_SECONDS (5), BENCH_API_CLIENTS ("1 16"),
#   BENCH_API_PROCESSOR_LATENCY_MS (0), BENCH_API_RESULTS (bench-results)
set -euo pipefail
. "$(dirname "$0")/install-extension.sh"
. "$(dirname "$0")/node-deps.sh"
exec node "$example_dir/scripts/bench.js"

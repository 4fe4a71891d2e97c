#!/usr/bin/env bash
# `make demo`: set up, build, install, then run demo/payment_flow.sql in a throwaway
# cluster (pg_virtualenv) with shared_preload_libraries = 'idempotency'.
set -euo pipefail
cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}

# Re-entry point inside pg_virtualenv: create the extensions, then run the demo.
# ON_ERROR_STOP is off in the demo itself, since it shows the expected errors.
if [ "${1-}" = --in-virtualenv ]; then
  psql -X -e -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION pgcrypto' -c 'CREATE EXTENSION idempotency'
  exec psql -X -e -f demo/payment_flow.sql 2>&1
fi

bash scripts/setup-debian.sh
$MAKE --no-print-directory
$MAKE --no-print-directory install
major=$("${PG_CONFIG:-pg_config}" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
exec pg_virtualenv -t -v "$major" -o shared_preload_libraries=idempotency \
  bash "$PWD/scripts/demo.sh" --in-virtualenv

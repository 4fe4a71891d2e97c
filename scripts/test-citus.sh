#!/usr/bin/env bash
# `make test-citus`: the TAP tests in t/citus/ on real Citus clusters on loopback
# (coordinator + workers, each test starting its own; t/citus/CitusCluster.pm),
# against the Citus installed in the PostgreSQL named by PG_CONFIG (Citus 13.2 on
# 15, 14.0 on 17 and 18).  Nothing here builds or downloads Citus: its users
# install it from its own packages, and a developer installs it by hand (README,
# "Scaling out with Citus").  Without it this says
#     skipped: Citus is not installed in PG_CONFIG
# and exits 0, so that CI keeps the step on a machine without Citus.
#
# Set-up as `make test` does it (Debian packages), the extension built and
# installed, and prove run as the unprivileged postgres user in a copy of the
# tree, as scripts/test.sh runs t/*.pl.  Run as root.
#
# With --bench (make bench-citus) it runs scripts/bench-citus.pl instead, the same way,
# and leaves its table in bench/results/citus.md.
#
# The extension is installed in a private mount namespace (scripts/private-install.sh),
# where /usr/lib/postgresql and /usr/share/postgresql are overlays on a temporary
# directory: its nodes see this tree's build, and neither the system's PostgreSQL nor
# another worktree's tests running at the same time see it (IDEMPOTENCY_PRIVATE_INSTALL=0,
# or a machine without such namespaces, installs into the system instead, and t/citus/005
# skips: its test-only update is installed in the namespace only).
#
# Settings (environment): PG_CONFIG (default pg_config: the system's PostgreSQL 15),
# PROVE_FLAGS (e.g. -v), TAP_TESTS="t/citus/001_x.pl ..." to run a subset;
# BENCH_CITUS_* (scripts/bench-citus.pl).
set -euo pipefail
cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}
PG_CONFIG=${PG_CONFIG:-pg_config}
suite=citus
if [ "${1-}" = --bench ]; then suite=bench-citus; fi

if [ "$(id -u)" -ne 0 ]; then
  echo "test-citus: run as root (it installs packages and the extension, and runs the nodes as postgres)" >&2
  exit 2
fi
# Nothing of the calling make (-k, -n, PG_CONFIG=...) reaches the builds here.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES

# Set up outside the private namespace; the rest runs again inside it
# (scripts/private-install.sh).
if [ -z "${IDEMPOTENCY_IN_PRIVATE_INSTALL-}" ] && [ -z "${IDEMPOTENCY_CITUS_READY-}" ]; then
  bash scripts/setup-debian.sh
  # An installed Citus is its library and its control file in this PostgreSQL.
  if [ ! -f "$("$PG_CONFIG" --pkglibdir)/citus.so" ] ||
     [ ! -f "$("$PG_CONFIG" --sharedir)/extension/citus.control" ]; then
    echo "test-citus: skipped: Citus is not installed in $(command -v "$PG_CONFIG" || echo "$PG_CONFIG")" \
         "($("$PG_CONFIG" --version))"
    echo "test-citus: 0 passed, 0 failed, 1 skipped"
    exit 0
  fi
  IDEMPOTENCY_CITUS_READY=1 exec bash scripts/private-install.sh bash "$0" "$@"
fi

bindir=$("$PG_CONFIG" --bindir)
pgxs=$(cd "$(dirname "$("$PG_CONFIG" --pgxs)")/../.." && pwd)   # .../lib/pgxs
tapdir=$(mktemp -d /tmp/idempotency-citus.XXXXXX)
trap 'rm -rf "$tapdir"' EXIT
tar -cf - --exclude=./.git --exclude=./tmp_check --exclude=./results --exclude=./output_iso \
    --exclude='*.o' --exclude='*.so' --exclude='*.bc' . | tar -C "$tapdir" -xf -
$MAKE -s -C "$tapdir" --no-print-directory PG_CONFIG="$PG_CONFIG"
$MAKE -s -C "$tapdir" --no-print-directory PG_CONFIG="$PG_CONFIG" install
# A test-only next version for t/citus/005 (the update of a distributed
# install), in the private namespace's overlay only: never in the system.
if [ -n "${IDEMPOTENCY_IN_PRIVATE_INSTALL-}" ]; then
  cp t/citus/update-test.sql \
     "$("$PG_CONFIG" --sharedir)/extension/idempotency--0.3.0--0.3.0citustest.sql"
fi

. scripts/summary.sh

if [ $suite = bench-citus ]; then
  tests=(scripts/bench-citus.pl)
  export BENCH_CITUS_OUT=$tapdir/citus.md
else
  tests=(${TAP_TESTS:-t/citus/*.pl})
fi
chown -R postgres: "$tapdir"   # the nodes run as postgres, in its copy of the tree
rm -rf tmp_check
start=$(date +%s)
rc=0
(cd "$tapdir" && runuser -u postgres -- env PATH="$bindir:$PATH" TESTDIR="$tapdir" \
    PG_REGRESS="$pgxs/src/test/regress/pg_regress" \
    prove -I "$pgxs/src/test/perl/" ${PROVE_FLAGS-} "${tests[@]}") 2>&1 | tee "$tapdir/prove.log" || rc=$?
[ -d "$tapdir/tmp_check" ] && cp -r "$tapdir/tmp_check" tmp_check   # the nodes' logs
if [ $suite = bench-citus ] && [ -f "$BENCH_CITUS_OUT" ]; then
  mkdir -p bench/results && cp "$BENCH_CITUS_OUT" bench/results/citus.md
fi
elapsed=$(( $(date +%s) - start ))
failed=$(grep -cE '^[^ ]+\.pl +\(Wstat' "$tapdir/prove.log" || true)
if [ $rc -eq 0 ]; then
  record $suite PASS ${#tests[@]} 0 "(${#tests[@]} test files passed in ${elapsed}s)"
else
  [ "$failed" -gt 0 ] || failed=1
  record $suite FAIL $((${#tests[@]} - failed)) "$failed" \
    "($failed of ${#tests[@]} test files failed in ${elapsed}s; node logs in tmp_check/log)"
fi
print_summary
exit $status

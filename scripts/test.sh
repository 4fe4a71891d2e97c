#!/usr/bin/env bash
# `make test`: set up, build, install, then run every suite:
#   pg_regress (sql/) and isolation (specs/) via PGXS installcheck in a throwaway
#   pg_virtualenv cluster with shared_preload_libraries = 'idempotency';
#   TAP (t/*.pl) with prove as the unprivileged postgres user (PostgreSQL refuses root);
#   the release checks (scripts/check-release.sh: version, license, release archive);
#   the reference payment API's tests (examples/payment-api/scripts/test.sh);
#   the trusted edition's tests (trusted/test.sh).
# Every suite runs even if an earlier one fails; exit status is non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}

# Re-entry point: runs inside pg_virtualenv (PGHOST/PGPORT/... point at the temp cluster).
# Regress and isolation run as separate installchecks so one failing does not hide the other.
if [ "${1-}" = --in-virtualenv ]; then
  logdir=$2
  run_suite() {  # run_suite NAME MAKE-ARGS...: output in NAME.log, exit code in NAME.rc
    local name=$1 rc=0; shift
    $MAKE --no-print-directory installcheck "$@" 2>&1 | tee "$logdir/$name.log" || rc=$?
    echo $rc >"$logdir/$name.rc"
  }
  [ -z "$(ls sql/*.sql 2>/dev/null)" ] || run_suite regress ISOLATION=
  [ -z "$(ls specs/*.spec 2>/dev/null)" ] || run_suite isolation REGRESS=
  # Non-zero if a suite failed, so that pg_virtualenv prints the server log's tail.
  ! grep -qv '^0$' "$logdir"/*.rc 2>/dev/null
  exit
fi

bash scripts/setup-debian.sh
$MAKE --no-print-directory
$MAKE --no-print-directory install

PG_CONFIG=${PG_CONFIG:-pg_config}
bindir=$("$PG_CONFIG" --bindir)
pgxs=$(cd "$(dirname "$("$PG_CONFIG" --pgxs)")/../.." && pwd)   # .../lib/pgxs
major=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
logdir=$(mktemp -d /tmp/idempotency-test.XXXXXX)
tapdir=
cleanup() { rm -rf "$logdir" ${tapdir:+"$tapdir"}; }
trap cleanup EXIT

. scripts/summary.sh

# --- pg_regress + isolation -------------------------------------------------
echo "=== pg_regress + isolation (pg_virtualenv, shared_preload_libraries=idempotency) ==="
rc=0
pg_virtualenv -t -v "$major" -o shared_preload_libraries=idempotency \
  bash "$PWD/scripts/test.sh" --in-virtualenv "$logdir" || rc=$?
for suite in regress isolation; do
  if [ $suite = regress ]; then files=(sql/*.sql); diffs=regression.diffs
  else files=(specs/*.spec); diffs=output_iso/regression.diffs; fi
  if [ ! -e "${files[0]}" ]; then record $suite SKIP 0 0 "(no ${files[0]})"; continue; fi
  if [ ! -f "$logdir/$suite.rc" ]; then  # the throwaway cluster failed before this suite
    record $suite FAIL 0 1 "(did not run: pg_virtualenv exited $rc)"; continue
  fi
  read -r p f < <(regress_counts "$logdir/$suite.log" "$(cat "$logdir/$suite.rc")")
  if [ "$(cat "$logdir/$suite.rc")" -eq 0 ] && [ "$f" -eq 0 ]; then
    record $suite PASS "$p" 0 "($p passed)"
  else
    [ "$f" -gt 0 ] || f=1
    record $suite FAIL "$p" "$f" "($p passed, $f failed; see $diffs)"
    if [ -s "$diffs" ]; then echo "=== $diffs ==="; cat "$diffs"
    else echo "($suite: no $diffs; a missing expected/*.out? see the $suite output above)"; fi
  fi
done

# --- TAP ---------------------------------------------------------------------
echo "=== TAP (prove as postgres) ==="
shopt -s nullglob; tap=(t/*.pl); shopt -u nullglob
if [ ${#tap[@]} -eq 0 ]; then
  echo "no t/*.pl: TAP skipped"; record tap SKIP 0 0 "(no t/*.pl)"
else
  # A copy of the tree owned by the postgres user (as prove_installcheck, with TESTDIR there).
  tapdir=$(mktemp -d /tmp/idempotency-tap.XXXXXX)
  tar -cf - --exclude=./.git --exclude=./tmp_check --exclude=./results --exclude=./output_iso . \
    | tar -C "$tapdir" -xf -
  runas=()
  if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$tapdir"; runas=(runuser -u postgres --); fi
  rm -rf tmp_check
  rc=0
  (cd "$tapdir" && "${runas[@]}" env PATH="$bindir:$PATH" TESTDIR="$tapdir" \
      PG_REGRESS="$pgxs/src/test/regress/pg_regress" \
      prove -I "$pgxs/src/test/perl/" -I . ${PROVE_FLAGS-} "${tap[@]}") 2>&1 | tee "$logdir/tap.log" || rc=$?
  [ -d "$tapdir/tmp_check" ] && cp -r "$tapdir/tmp_check" tmp_check   # keep logs for inspection
  # Failed test programs are listed in prove's "Test Summary Report" as "t/NAME.pl (Wstat: ...".
  failed_tests=$(grep -oE '^t/[^ ]+\.pl +\(Wstat' "$logdir/tap.log" | sed 's/ .*//' || true)
  failed=$(printf '%s' "$failed_tests" | grep -c . || true)
  if [ $rc -eq 0 ]; then record tap PASS ${#tap[@]} 0 "(${#tap[@]} test files passed)"
  else
    [ "$failed" -gt 0 ] || failed=1
    record tap FAIL $((${#tap[@]} - failed)) "$failed" "($failed of ${#tap[@]} test files failed; logs in tmp_check/log)"
    # Print the logs of each failed test program (named in prove's summary report).
    for t in $failed_tests; do
      name=$(basename "$t" .pl)
      for f in tmp_check/log/*"$name"*; do
        [ -f "$f" ] || continue
        echo "=== $f (last 200 lines) ==="; tail -n 200 "$f"
      done
    done
  fi
fi

# --- release checks ---------------------------------------------------------
# The version and the license said alike everywhere, and the release archive.
echo "=== release checks (scripts/check-release.sh) ==="
rc=0
MAKE=$MAKE PG_CONFIG=$PG_CONFIG bash scripts/check-release.sh 2>&1 | tee "$logdir/release.log" || rc=$?
read -r p f < <(sed -nE 's/^check-release: ([0-9]+) passed, ([0-9]+) failed$/\1 \2/p' "$logdir/release.log" |
                grep . || echo "0 1")
if [ $rc -eq 0 ] && [ "$f" -eq 0 ]; then record release PASS "$p" 0 "($p checks passed)"
else
  [ "$f" -gt 0 ] || f=1
  record release FAIL "$p" "$f" "($f of $((p + f)) checks failed; see above)"
fi

# --- the reference payment API (examples/payment-api) ---------------------------
# Its own throwaway clusters from $PG_CONFIG, the extension installed above; node's
# test runner ends its TAP output with "# pass N" and "# fail M".
echo "=== example: examples/payment-api (node --test, the stripe client) ==="
rc=0
PG_CONFIG="$PG_CONFIG" bash examples/payment-api/scripts/test.sh 2>&1 | tee "$logdir/example.log" || rc=$?
p=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$logdir/example.log" | tail -n1)
f=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$logdir/example.log" | tail -n1)
p=${p:-0}; f=${f:-0}
if [ $rc -eq 0 ] && [ "$f" -eq 0 ] && [ "$p" -gt 0 ]; then record example PASS "$p" 0 "($p passed)"
else
  [ "$f" -gt 0 ] || f=1
  record example FAIL "$p" "$f" "($p passed, $f failed; see the example output above)"
fi

# --- the trusted edition (trusted/test.sh) ------------------------------------
# Its own throwaway cluster, pg_cron preloaded; the last line of its output is
# "trusted: N passed, M failed".
echo "=== trusted edition (trusted/test.sh) ==="
rc=0
MAKE=$MAKE bash trusted/test.sh 2>&1 | tee "$logdir/trusted.log" || rc=$?
read -r p f < <(sed -nE 's/^trusted: ([0-9]+) passed, ([0-9]+) failed$/\1 \2/p' "$logdir/trusted.log" |
                grep . || echo "0 1")
if [ $rc -eq 0 ] && [ "$f" -eq 0 ] && [ "$p" -gt 0 ]; then record trusted PASS "$p" 0 "($p checks passed)"
else
  [ "$f" -gt 0 ] || f=1
  record trusted FAIL "$p" "$f" "($f of $((p + f)) checks failed; see the trusted output above)"
fi

echo "=== summary ==="
print_summary
exit $status

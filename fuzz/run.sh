#!/usr/bin/env bash
# `make fuzz`: a bounded fuzz pass against a throwaway cluster.
#
#   1. builds the extension and installs it into a private copy of the
#      PostgreSQL installation under a temp directory (the system's
#      PostgreSQL is not touched, so this can run beside `make test`);
#   2. starts a cluster there (initdb, Unix socket only, no TCP), with
#      shared_preload_libraries = 'idempotency' and the reaper working
#      every second, as the postgres user when run as root;
#   3. runs, at the same time and for FUZZ_SECONDS each:
#        sqlsmith  random SQL from Debian's sqlsmith, as an unprivileged
#                  role, in a database with keys, policies and views that
#                  call the extension (fuzz/sqlsmith-setup.sql);
#        ikfuzz    the extension's own API fuzzer (fuzz/*.c) and its
#                  invariants, in another database;
#   4. fails on a crash, PANIC, assertion failure or sanitizer report in the
#      server log (fuzz/crash-patterns.txt), on any ikfuzz failure, or when
#      either fuzzer did not run.  Query errors from sqlsmith are normal.
#
# Environment: FUZZ_SECONDS (default 60), FUZZ_SEED (default: random; both
# fuzzers use it, and it is printed for replay), FUZZ_WHAT (all, sqlsmith or
# api), FUZZ_INCLUDE_KNOWN=1 (also generate inputs of known, unfixed
# findings: docs/fuzzing.md), FUZZ_KEEP=1 (keep the temp directory),
# FUZZ_CFLAGS (extra compiler flags for the extension, e.g.
# -fsanitize=undefined), PG_CONFIG, MAKE.  docs/fuzzing.md has the details.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
MAKE=${MAKE:-make}
PG_CONFIG=${PG_CONFIG:-pg_config}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_WHAT=${FUZZ_WHAT:-all}
FUZZ_SEED=${FUZZ_SEED:-}
case $FUZZ_SECONDS in ''|*[!0-9]*) echo "fuzz: FUZZ_SECONDS must be a whole number" >&2; exit 2 ;; esac
case $FUZZ_WHAT in all|sqlsmith|api) ;; *) echo "fuzz: FUZZ_WHAT is all, sqlsmith or api" >&2; exit 2 ;; esac
if [ -z "$FUZZ_SEED" ]; then
  FUZZ_SEED=$(( $(od -An -N4 -tu4 /dev/urandom) % 2000000000 ))
fi
case $FUZZ_SEED in *[!0-9]*) echo "fuzz: FUZZ_SEED must be a whole number" >&2; exit 2 ;; esac
t_start=$(date +%s)

log() { echo "fuzz: $*"; }

# --- packages ------------------------------------------------------------------
# What the pass needs; installed when missing and running as root (Debian 12).
packages=(build-essential postgresql-15 postgresql-server-dev-15 libpq-dev)
[ "$FUZZ_WHAT" = api ] || packages+=(sqlsmith)
missing=()
for p in "${packages[@]}"; do
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" = installed ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "fuzz: missing packages: ${missing[*]}; install them or run as root" >&2
    exit 2
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

bindir=$("$PG_CONFIG" --bindir)
pkglibdir=$("$PG_CONFIG" --pkglibdir)
sharedir=$("$PG_CONFIG" --sharedir)

# --- work directory, and cleanup of everything started here --------------------
work=$(mktemp -d /tmp/idempotency-fuzz.XXXXXX)
chmod 755 "$work"
runas=()
if [ "$(id -u)" -eq 0 ]; then
  runas=(runuser -u postgres --)
fi
pgbin=           # the private installation's bindir, once made
data=$work/data
server_log=$work/server.log
children=()
status=1
cleanup() {
  local rc=$?
  for pid in "${children[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ -n "$pgbin" ] && [ -f "$data/postmaster.pid" ]; then
    "${runas[@]}" "$pgbin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  if [ "${FUZZ_KEEP:-}" = 1 ]; then
    log "kept $work"
  elif [ $status -ne 0 ] && [ -d "$work" ]; then
    # keep the logs (and core files) of a failed pass, drop the big parts
    mv "$work"/data/core* "$work"/ 2>/dev/null || true
    rm -rf "$work/data" "$work/stage" "$work/build"
    log "logs of this pass are in $work"
  else
    rm -rf "$work"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build, and install into a private copy of the installation ----------------
# The extension is built from a copy of the tree (so FUZZ_CFLAGS always take
# effect and the tree's own build products are left alone).  PostgreSQL finds
# its lib and share directories relative to its binary, so a copy of bin/,
# lib/ and share/ under $work/stage is a second installation.
log "building the extension and ikfuzz"
build=$work/build
mkdir -p "$build"
tar -cf - --exclude=./.git --exclude=./tmp_check --exclude=./results --exclude=./output_iso \
    --exclude='*.o' --exclude='*.so' --exclude='*.bc' . | tar -C "$build" -xf -
make_ext=($MAKE -C "$build" --no-print-directory -j"$(nproc)" with_llvm=no PG_CONFIG="$PG_CONFIG")
[ -z "${FUZZ_CFLAGS:-}" ] || make_ext+=(PG_CFLAGS="-Wall -Wextra -Werror -Wno-unused-parameter $FUZZ_CFLAGS")
"${make_ext[@]}" >"$work/build.log" 2>&1 \
  || { cat "$work/build.log"; echo "fuzz: build failed" >&2; exit 2; }
stage=$work/stage
mkdir -p "$stage$(dirname "$bindir")" "$stage$(dirname "$sharedir")" "$stage$(dirname "$pkglibdir")"
cp -a "$bindir" "$stage$bindir"
[ -d "$stage$pkglibdir" ] || cp -a "$pkglibdir" "$stage$pkglibdir"
cp -a "$sharedir" "$stage$sharedir"
"${make_ext[@]}" install DESTDIR="$stage" >>"$work/build.log" 2>&1 \
  || { cat "$work/build.log"; echo "fuzz: install into $stage failed" >&2; exit 2; }
pgbin=$stage$bindir
[ "$("$pgbin/pg_config" --pkglibdir)" = "$stage$pkglibdir" ] \
  || { echo "fuzz: the private installation does not relocate" >&2; exit 2; }
cc -O2 -g -Wall -Wextra -Wno-unused-parameter -I"$("$PG_CONFIG" --includedir)" \
  -o "$work/ikfuzz" fuzz/*.c -L"$("$PG_CONFIG" --libdir)" -lpq 2>>"$work/build.log" \
  || { cat "$work/build.log"; echo "fuzz: could not build ikfuzz from fuzz/*.c" >&2; exit 2; }
chmod -R a+rX "$work"

# --- the throwaway cluster ------------------------------------------------------
[ ${#runas[@]} -eq 0 ] || chown postgres: "$work"
"${runas[@]}" "$pgbin/initdb" -D "$data" -A trust -U postgres -E UTF8 --locale=C --no-sync \
  >"$work/initdb.log" 2>&1 || { cat "$work/initdb.log"; exit 2; }
port=$(( 40000 + $(od -An -N2 -tu2 /dev/urandom) % 20000 ))
cat >>"$data/postgresql.conf" <<EOF
# fuzz/run.sh
listen_addresses = ''
unix_socket_directories = '$work'
port = $port
shared_preload_libraries = 'idempotency'
idempotency.reaper_databases = 'smith,apifuzz'
idempotency.reaper_naptime = 1
idempotency.reaper_batch_size = 50
restart_after_crash = off
fsync = off
synchronous_commit = off
max_connections = 30
log_line_prefix = '%m [%p] [%b] %e '
log_min_error_statement = error
EOF
# -c: allow core files (in $data), for a backtrace with gdb after a crash
"${runas[@]}" "$pgbin/pg_ctl" -D "$data" -l "$server_log" -c -w -t 60 start >/dev/null \
  || { cat "$server_log"; echo "fuzz: the cluster did not start" >&2; exit 2; }
export PGHOST=$work PGPORT=$port PGUSER=postgres
psql=("$pgbin/psql" -X -q -v ON_ERROR_STOP=1)
"${psql[@]}" -d postgres -c "CREATE DATABASE smith TEMPLATE template0" \
  -c "CREATE DATABASE apifuzz TEMPLATE template0"
"${psql[@]}" -d smith -f fuzz/sqlsmith-setup.sql >"$work/setup.log" 2>&1 \
  || { cat "$work/setup.log"; echo "fuzz: fuzz/sqlsmith-setup.sql failed" >&2; exit 2; }
"${psql[@]}" -d apifuzz -c "CREATE EXTENSION idempotency CASCADE" 2>/dev/null

log "seed $FUZZ_SEED, $FUZZ_SECONDS s per fuzzer ($FUZZ_WHAT); PostgreSQL $("$pgbin/pg_config" --version | cut -d' ' -f2), socket $work, port $port"

# --- the fuzzers, side by side --------------------------------------------------
smith_rc=skip; api_rc=skip
if [ "$FUZZ_WHAT" != api ]; then
  # Bounded by time (timeout) and by count; sqlsmith's seed is an int.
  # --exclude-catalog: its queries read the extension's tables and views
  # (and charges) instead of mostly pg_catalog; functions still come from
  # the whole catalog.
  timeout -k 10 "$FUZZ_SECONDS" sqlsmith --verbose --exclude-catalog \
    --target="host=$work port=$port dbname=smith user=fuzz" \
    --seed=$(( FUZZ_SEED % 2147483647 )) --max-queries=$(( FUZZ_SECONDS * 400 + 1000 )) \
    >"$work/sqlsmith.out" 2>"$work/sqlsmith.log" &
  smith_pid=$!; children+=("$smith_pid")
fi
if [ "$FUZZ_WHAT" != sqlsmith ]; then
  timeout -k 10 $(( FUZZ_SECONDS + 120 )) "$work/ikfuzz" --seed "$FUZZ_SEED" --seconds "$FUZZ_SECONDS" \
    --repro "$work/ikfuzz-repro.sql" ${FUZZ_INCLUDE_KNOWN:+--include-known} \
    "host=$work port=$port dbname=apifuzz user=postgres" >"$work/ikfuzz.log" 2>&1 &
  api_pid=$!; children+=("$api_pid")
fi
if [ "$FUZZ_WHAT" != api ]; then
  smith_rc=0; wait "$smith_pid" || smith_rc=$?
fi
if [ "$FUZZ_WHAT" != sqlsmith ]; then
  api_rc=0; wait "$api_pid" || api_rc=$?
fi
children=()

# --- verdict ----------------------------------------------------------------------
failures=0; passes=0
fail() { echo "fuzz: FAIL: $*"; failures=$((failures + 1)); }

# The server still answers, in both databases (a crash with
# restart_after_crash = off leaves it down).
server_up=yes
for db in smith apifuzz; do
  "${psql[@]}" -d "$db" -c "SELECT count(*) FROM idempotency.keys" >/dev/null 2>&1 || server_up=no
done
[ $server_up = yes ] || fail "the server does not answer after the pass (crashed?)"

# Scan the log before shutting down: a fast shutdown logs workers exiting.
patterns=$(grep -v '^#' fuzz/crash-patterns.txt | grep -v '^$')
crash_lines=$(grep -nE -e "$patterns" "$server_log" || true)
if [ -n "$crash_lines" ]; then
  fail "crash, PANIC, assertion or sanitizer report in the server log:"
  grep -nE -B3 -A12 -e "$patterns" "$server_log" | head -n 120
  # the query a crashed backend was running
  grep -A3 'Failed process was running' "$server_log" | head -n 40 || true
  for core in "$data"/core*; do
    [ -f "$core" ] || continue
    if command -v gdb >/dev/null; then
      echo "=== backtrace of $core ==="
      gdb -batch -ex 'bt full' "$pgbin/postgres" "$core" 2>/dev/null | head -n 80
    else
      echo "(core file $core: install gdb for a backtrace)"
    fi
  done
fi
internal=$(grep -E ' XX000 (ERROR|FATAL)' "$server_log" | head -n 10 || true)
smith_stats=
if [ $server_up = yes ] && [ "$FUZZ_WHAT" != api ]; then
  # what sqlsmith's queries made the extension do, from its counters
  smith_stats=$("${psql[@]}" -d smith -At -F' ' -c "SELECT claims_new + claims_replay + claims_resume,
      errors_ik400 + errors_ik409 + errors_ik410 + errors_ik422 + errors_ik428, completions, reaper_runs
    FROM idempotency.stats WHERE database = 'smith'" 2>/dev/null || true)
fi
"${runas[@]}" "$pgbin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true

if [ "$FUZZ_WHAT" != api ]; then
  # sqlsmith --verbose prints one character per query and "queries: N" lines.
  smith_queries=$(grep -oE 'queries: [0-9]+' "$work/sqlsmith.log" | tail -n1 | grep -oE '[0-9]+' || true)
  smith_chars=$(grep -E '^[.eStC]+$' "$work/sqlsmith.log" | tr -d '\n' | wc -c || true)
  [ -n "$smith_queries" ] || smith_queries=$smith_chars
  if [ "$smith_rc" != 0 ] && [ "$smith_rc" != 124 ]; then
    fail "sqlsmith exited with status $smith_rc"; tail -n 20 "$work/sqlsmith.log"
  elif [ "${smith_chars:-0}" -lt 10 ]; then
    fail "sqlsmith ran no queries"; tail -n 20 "$work/sqlsmith.log"
  else
    passes=$((passes + 1))
    errors=$(grep -E '^[.eStC]+$' "$work/sqlsmith.log" | tr -cd 'eStC' | wc -c)
    log "sqlsmith: ${smith_chars} queries (${errors} ended in an error, which is normal), seed $(( FUZZ_SEED % 2147483647 ))"
    if [ -n "$smith_stats" ]; then
      read -r n_claims n_errors n_completions n_reaps <<<"$smith_stats"
      log "sqlsmith: in its database the extension counted $n_claims claims, $n_errors IK errors, $n_completions completions, $n_reaps reaper runs"
    fi
  fi
fi
if [ "$FUZZ_WHAT" != sqlsmith ]; then
  if [ "$api_rc" = 0 ]; then
    passes=$((passes + 1))
    grep -E '^ikfuzz: [0-9]+ iterations' "$work/ikfuzz.log" | sed 's/^/fuzz: /' || true
  else
    fail "ikfuzz (exit status $api_rc):"
    grep -v "^SELECT E'" "$work/ikfuzz.log" | cut -c1-3000 | tail -n 60
    [ -f "$work/ikfuzz-repro.sql" ] && log "reproducer: $work/ikfuzz-repro.sql"
  fi
fi
if [ -n "$internal" ]; then
  # PostgreSQL's own internal errors (XX000) are not crashes; list them for review.
  log "note: internal errors (XX000) in the server log (first 10):"
  printf '%s\n' "$internal" | cut -c1-300
fi

log "took $(( $(date +%s) - t_start )) s; replay this pass with FUZZ_SEED=$FUZZ_SEED"
[ $failures -eq 0 ] && status=0
echo "fuzz: $passes passed, $failures failed"
exit $status

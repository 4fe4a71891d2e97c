#!/usr/bin/env bash
# Memory-safety test modes (docs/memory-safety.md), and the suite on PostgreSQL 18.  Runs the
# whole suite -- pg_regress (sql/), isolation (specs/) and TAP (t/*.pl) -- against a private
# PostgreSQL built with --enable-cassert --enable-debug, then scans every server log for
# assertion failures, crashes and sanitizer / valgrind reports.  PostgreSQL 15 is built from
# Debian's source package; PostgreSQL 18 by ../shared/toolchain/build-postgresql-18.sh,
# through scripts/toolchain.sh, which keeps the build cached on this machine.
#
#   bash scripts/test-cassert.sh                  # make test-cassert:  assertions
#   bash scripts/test-cassert.sh --mode sanitize  # make test-sanitize: + ASan/UBSan extension
#   bash scripts/test-cassert.sh --mode valgrind  # make test-valgrind: + server under memcheck
#   bash scripts/test-cassert.sh --pg 18          # make test-pg18: the suite on 18, plus the
#                                                 # fuzz smoke and pg_upgrade from 15
#   SUITES=upgrade bash scripts/test-cassert.sh --pg 18   # make test-upgrade
#
# The suites: regress, isolation, tap, and two more that PostgreSQL 18 runs by default:
#   fuzz     fuzz/run.sh (sqlsmith and the API fuzzer, FUZZ_SECONDS each, default 20)
#            against this installation
#   upgrade  t/upgrade/*.pl: a cluster of the assert-enabled PostgreSQL 15, filled with keys,
#            upgraded by this PostgreSQL 18's pg_upgrade (--pg 18 only)
#
# scripts/test-sanitize.sh and scripts/test-valgrind.sh call this script with their mode.
# Run as root on Debian 12: it installs the Debian packages it needs, runs the servers as
# the unprivileged postgres user, and never touches the system PostgreSQL installation.
# Nothing is built in the source tree: the tree is copied into a work directory
# (default /tmp/idempotency-check-MODE, kept afterwards for its logs).
#
# Settings (environment):
#   CASSERT_PREFIX   the assert-enabled PostgreSQL 15 (default /opt/idempotency-pg15-cassert);
#                    built once, then reused while its build stamp matches
#   PG18_PREFIX      the PostgreSQL 18 the extension is installed into (default
#                    /opt/idempotency-pg18-cassert): a copy of scripts/toolchain.sh's cached
#                    build, made again when that build changes
#   SANITIZE_PREFIX  copy of it used by --mode sanitize (default /opt/idempotency-pgN-asan)
#   VALGRIND_PREFIX  copy of it used by --mode valgrind (default /opt/idempotency-pg15-valgrind;
#                    15 only: the PostgreSQL 18 build is not made with USE_VALGRIND)
#   UPGRADE_OLD_PREFIX  copy of the assert-enabled 15 that the upgrade suite installs the
#                    extension into, to start from (default /opt/idempotency-pg15-upgrade)
#   CHECK_WORKDIR    work directory (default /tmp/idempotency-check-MODE, with --pg 18
#                    /tmp/idempotency-check-pg18-MODE)
#   PG_BUILD_DIR     scratch directory of the PostgreSQL build, removed after a successful
#                    build (default /var/tmp/idempotency-pg15-build)
#   SUITE_TIMEOUT    seconds allowed to each suite (default per mode)
#   PROVE_FLAGS      extra flags for prove (e.g. -v); TAP_TESTS="t/001_x.pl ..." to run a subset
#   SUITES           the suites to run (default "regress isolation tap", with --pg 18
#                    "regress isolation tap fuzz upgrade"), for a quicker look
#   FUZZ_SECONDS     how long each fuzzer of the fuzz suite runs (default 20)
#   VALGRIND_OPTS    extra valgrind options (valgrind reads it itself), e.g. --track-origins=yes
#                    to find where an uninitialised value came from (about 1.6x slower)
#   REBUILD_PG=1     rebuild the assert-enabled PostgreSQL even if its stamp matches
set -euo pipefail
cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}

mode=cassert pg=15
while [ $# -gt 0 ]; do
  case $1 in
    --mode=*) mode=${1#--mode=} ;;
    --mode) mode=${2:?--mode needs a value}; shift ;;
    --pg=*) pg=${1#--pg=} ;;
    --pg) pg=${2:?--pg needs a value}; shift ;;
    *) echo "usage: $0 [--mode cassert|sanitize|valgrind] [--pg 15|18]" >&2; exit 2 ;;
  esac
  shift
done
case $mode in cassert|sanitize|valgrind) ;; *) echo "unknown mode: $mode" >&2; exit 2 ;; esac
case $pg in 15|18) ;; *) echo "unknown PostgreSQL major version: $pg (15 or 18)" >&2; exit 2 ;; esac
if [ "$pg" = 18 ] && [ "$mode" = valgrind ]; then
  echo "test-pg18-$mode: the PostgreSQL 18 build is not made with USE_VALGRIND; valgrind runs on 15" >&2
  exit 2
fi
# The name of this run in messages and paths: cassert, sanitize, valgrind, pg18-cassert, ...
run=$mode; [ "$pg" = 15 ] || run=pg$pg-$mode

# Under `make -n` (a recipe that names $(MAKE) runs even then) only say what would run.
mflags=${MAKEFLAGS-}; mflags=${mflags%% *}
if [[ -n $mflags && $mflags != *=* && $mflags != -* && $mflags == *n* ]]; then
  echo "(make -n: would run bash scripts/test-cassert.sh --mode $mode --pg $pg)"; exit 0
fi
# Nothing of the calling make (-k, -n, PG_CONFIG=..., SANITIZE=...) reaches the builds here.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES

if [ "$(id -u)" -ne 0 ]; then
  echo "test-$run: run as root (it installs packages and runs the servers as postgres)" >&2
  exit 2
fi

# PG15_PREFIX is the assert-enabled PostgreSQL 15: the server under test with --pg 15, the
# one upgraded from with --pg 18.  BASE_PREFIX is the server under test before the modes'
# wrapped copies.
PG15_PREFIX=${CASSERT_PREFIX:-/opt/idempotency-pg15-cassert}
PG18_PREFIX=${PG18_PREFIX:-/opt/idempotency-pg18-cassert}
UPGRADE_OLD_PREFIX=${UPGRADE_OLD_PREFIX:-/opt/idempotency-pg15-upgrade}
case $pg in
  15) BASE_PREFIX=$PG15_PREFIX ;;
  18) BASE_PREFIX=$PG18_PREFIX ;;
esac
SANITIZE_PREFIX=${SANITIZE_PREFIX:-/opt/idempotency-pg$pg-asan}
VALGRIND_PREFIX=${VALGRIND_PREFIX:-/opt/idempotency-pg15-valgrind}
PG_BUILD_DIR=${PG_BUILD_DIR:-/var/tmp/idempotency-pg15-build}
work=${CHECK_WORKDIR:-/tmp/idempotency-check-$run}
case $mode in
  cassert)  prefix=$BASE_PREFIX;     default_timeout=1800; test_timeout=180 ;;
  sanitize) prefix=$SANITIZE_PREFIX; default_timeout=1800; test_timeout=180 ;;
  valgrind) prefix=$VALGRIND_PREFIX; default_timeout=7200; test_timeout=900 ;;
esac
SUITE_TIMEOUT=${SUITE_TIMEOUT:-$default_timeout}
default_suites="regress isolation tap"; [ "$pg" = 15 ] || default_suites+=" fuzz upgrade"
SUITES=${SUITES:-$default_suites}
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
want() { [[ " $SUITES " == *" $1 "* ]]; }
pg_major=15   # the Debian source package of the assert-enabled 15
# The assert-enabled build.  USE_VALGRIND (pg_config_manual.h) makes memory contexts tell
# valgrind which palloc'd bytes are defined and accessible; outside valgrind it costs a few
# no-op instructions, so one build serves all three modes.
PG_CONFIGURE_OPTS=(--enable-cassert --enable-debug --enable-tap-tests --with-openssl
                   --without-icu --with-readline --with-zlib)
PG_CPPFLAGS_BUILD="-DUSE_VALGRIND"
PG_CFLAGS_BUILD="-O2 -fno-omit-frame-pointer"
# Extension flags for --mode sanitize (gcc: libasan/libubsan come with Debian's gcc-12).
SANITIZE_COPT="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -O1 -g"

t_start=$(date +%s)
phase_start=$t_start
phase() {  # phase NAME: print the time the previous phase took, then NAME
  local now; now=$(date +%s)
  [ -z "${phase_name-}" ] || echo "--- $phase_name: $((now - phase_start)) s"
  phase_name=$1; phase_start=$now
  [ -z "$1" ] || echo "=== [$run] $1 ==="
}

# --- set-up: Debian packages -----------------------------------------------------------
# scripts/setup-debian.sh: PostgreSQL 15 (its version picks the source package), PGXS,
# libipc-run-perl for TAP, the prometheus tools for t/007.  Here, on top of it:
#   bzip2                       unpacks the source tarball
#   libssl-dev                  --with-openssl: pgcrypto, and the SHA-256/HMAC of cryptohash
#                               as in Debian's build (the extension's fingerprints use it)
#   zlib1g-dev, libreadline-dev as in Debian's build (pg_basebackup compression, psql)
#   libasan8, libubsan1         (sanitize) gcc's ASan/UBSan runtimes
#   valgrind                    (valgrind)
install_packages() {
  local p status missing=()
  for p in "$@"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$status" = installed ] || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || { echo "test-$run: packages present ($*)"; return 0; }
  echo "test-$run: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

phase "set-up (Debian packages)"
bash scripts/setup-debian.sh
pkgs=(build-essential bzip2 libssl-dev zlib1g-dev libreadline-dev libipc-run-perl)
[ "$mode" != sanitize ] || pkgs+=(libasan8 libubsan1)
[ "$mode" != valgrind ] || pkgs+=(valgrind)
install_packages "${pkgs[@]}"

# --- the assert-enabled PostgreSQL ------------------------------------------------------
# PostgreSQL 15 is built from the Debian source package of the installed postgresql-15 (or, when the archive
# no longer serves that one, the newest 15.x source it does serve), from the upstream tarball
# of that package (Debian's patches only change paths and packaging).  A stamp file records
# what was built; a prefix whose stamp matches and whose server runs is reused as it is.
sys_version=$(dpkg-query -W -f='${Version}' postgresql-$pg_major)
build_key="system postgresql-$pg_major $sys_version; configure ${PG_CONFIGURE_OPTS[*]} CPPFLAGS=$PG_CPPFLAGS_BUILD CFLAGS=$PG_CFLAGS_BUILD"
stamp_name=idempotency-build.stamp

cassert_build_ok() {
  local p=$PG15_PREFIX lib pgxs
  [ -f "$p/$stamp_name" ] && [ "$(sed -n 1p "$p/$stamp_name")" = "$build_key" ] &&
    "$p/bin/postgres" -V >/dev/null 2>&1 &&
    [[ $("$p/bin/pg_config" --configure) == *--enable-cassert* ]] || return 1
  lib=$("$p/bin/pg_config" --pkglibdir)         # PREFIX/lib/postgresql
  pgxs=$(dirname "$(dirname "$(dirname "$("$p/bin/pg_config" --pgxs)")")")
  [ -x "$pgxs/src/test/isolation/pg_isolation_regress" ] &&
    [ -x "$pgxs/src/test/regress/pg_regress" ] &&
    [ -f "$pgxs/src/test/perl/PostgreSQL/Test/Cluster.pm" ] &&
    [ -f "$lib/pgcrypto.so" ] && [ -f "$p/share/valgrind.supp" ]
}

build_cassert() {
  local A dl=$PG_BUILD_DIR/download versions v tarball srcdir got=
  rm -rf "$PG_BUILD_DIR"; mkdir -p "$dl" "$PG_BUILD_DIR/apt/parts" "$PG_BUILD_DIR/apt/lists/partial"
  # Debian's own sources, as deb-src, in a private list directory: the system's apt
  # configuration is not changed.
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
    >"$PG_BUILD_DIR/apt/parts/src.sources"
  A=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$PG_BUILD_DIR/apt/parts"
     -o "Dir::State::Lists=$PG_BUILD_DIR/apt/lists")
  apt-get "${A[@]}" update -q
  # Installed version first, then the archive's other 15.x versions, newest first.
  versions=$( { echo "$sys_version"
                apt-cache "${A[@]}" showsrc postgresql-$pg_major | sed -n 's/^Version: //p' \
                  | sort -u | sort -r -V; } | awk '!seen[$0]++')
  for v in $versions; do
    if (cd "$dl" && apt-get "${A[@]}" source -q --download-only "postgresql-$pg_major=$v" \
          >"$PG_BUILD_DIR/download.log" 2>&1); then got=$v; break; fi
    echo "test-$run: source postgresql-$pg_major=$v not downloadable; trying an older one"
  done
  [ -n "$got" ] || { cat "$PG_BUILD_DIR/download.log"; echo "no postgresql-$pg_major source" >&2; return 1; }
  tarball=$(ls "$dl"/postgresql-"$pg_major"_*.orig.tar.* | head -n1)
  echo "test-$run: building $(basename "$tarball") (Debian $got; installed: $sys_version) into $PG15_PREFIX"
  tar -C "$PG_BUILD_DIR" -xf "$tarball"
  srcdir=$(ls -d "$PG_BUILD_DIR"/postgresql-"$pg_major".*/ | head -n1)
  (
    cd "$srcdir"
    ./configure -q --prefix="$PG15_PREFIX" "${PG_CONFIGURE_OPTS[@]}" \
      CPPFLAGS="$PG_CPPFLAGS_BUILD" CFLAGS="$PG_CFLAGS_BUILD" >"$PG_BUILD_DIR/configure.log"
    $MAKE -s -j"$(nproc)" >"$PG_BUILD_DIR/make.log" 2>&1 ||
      { tail -n 50 "$PG_BUILD_DIR/make.log"; exit 1; }
    $MAKE -s -j"$(nproc)" -C contrib/pgcrypto >>"$PG_BUILD_DIR/make.log" 2>&1 ||
      { tail -n 50 "$PG_BUILD_DIR/make.log"; exit 1; }
    rm -rf "$PG15_PREFIX"
    {
      $MAKE -s install
      $MAKE -s -C src/test/isolation install   # pg_isolation_regress, isolationtester
      $MAKE -s -C contrib/pgcrypto install
    } >"$PG_BUILD_DIR/install.log" 2>&1 || { tail -n 50 "$PG_BUILD_DIR/install.log"; exit 1; }
    cp src/tools/valgrind.supp "$PG15_PREFIX/share/valgrind.supp"
  )
  printf '%s\nbuilt from Debian source postgresql-%s=%s on %s\n' "$build_key" "$pg_major" \
    "$got" "$(date -u +%FT%TZ)" >"$PG15_PREFIX/$stamp_name"
  rm -rf "$PG_BUILD_DIR"
}

# Each prefix is built or copied under its own lock, which every run that builds, copies or
# reuses it takes, across worktrees.
lock_prefix() {  # lock_prefix PREFIX: sets lockfd
  exec {lockfd}>"$1.lock"
  flock -w 3600 "$lockfd" || { echo "test-$run: $1.lock is held" >&2; exit 1; }
}

ensure_pg15() {
  if [ "${REBUILD_PG-}" != 1 ] && cassert_build_ok; then
    echo "test-$run: reusing $PG15_PREFIX ($(sed -n 2p "$PG15_PREFIX/$stamp_name"))"
  else
    build_cassert
    cassert_build_ok || { echo "test-$run: the build in $PG15_PREFIX is incomplete" >&2; exit 1; }
  fi
}

# PostgreSQL 18 comes from scripts/toolchain.sh's cache, which is never written to: the
# extension is installed into a copy, made again when the cached build changes.
ensure_pg18() {
  local cache key
  cache=$(bash scripts/toolchain.sh postgresql-18 | tail -n1)
  key="PostgreSQL 18 from $cache, $(cat "$cache/.toolchain-complete")"
  if [ -f "$PG18_PREFIX/$stamp_name" ] && [ "$(sed -n 1p "$PG18_PREFIX/$stamp_name")" = "$key" ] &&
     "$PG18_PREFIX/bin/postgres" -V >/dev/null 2>&1; then
    echo "test-$run: reusing $PG18_PREFIX ($(sed -n 2p "$PG18_PREFIX/$stamp_name"))"
    return
  fi
  echo "test-$run: copying $cache to $PG18_PREFIX"
  rm -rf "$PG18_PREFIX"
  cp -a "$cache" "$PG18_PREFIX"
  rm -f "$PG18_PREFIX/.toolchain-complete"
  printf '%s\ncopied on %s\n' "$key" "$(date -u +%FT%TZ)" >"$PG18_PREFIX/$stamp_name"
}

phase "assert-enabled PostgreSQL $pg in $BASE_PREFIX"
lock_prefix "$BASE_PREFIX"
if [ "$pg" = 15 ]; then ensure_pg15; else ensure_pg18; fi

# --sanitize and --valgrind use a copy of it whose bin/postgres is a wrapper script around
# the real server (bin/postgres.real), so that pg_ctl, initdb and PostgreSQL::Test::Cluster
# start the wrapped server without knowing: the copies let the three modes install their own
# idempotency.so side by side.
make_wrapped_copy() {  # make_wrapped_copy WRAPPER-TEXT
  local key
  key="$(sed -n 1,2p "$BASE_PREFIX/$stamp_name")
$1"
  if [ -f "$prefix/$stamp_name" ] && [ "$(cat "$prefix/$stamp_name")" = "$key" ] &&
     [ -x "$prefix/bin/postgres.real" ]; then
    echo "test-$run: reusing $prefix"
    return
  fi
  echo "test-$run: copying $BASE_PREFIX to $prefix"
  rm -rf "$prefix"
  cp -a "$BASE_PREFIX" "$prefix"
  mv "$prefix/bin/postgres" "$prefix/bin/postgres.real"
  printf '%s\n' "$1" >"$prefix/bin/postgres"
  chmod 755 "$prefix/bin/postgres"
  printf '%s\n' "$key" >"$prefix/$stamp_name"
}

if [ "$mode" = sanitize ]; then
  asan_lib=$(readlink -f "$(gcc -print-file-name=libasan.so)")
  [ -f "$asan_lib" ] || { echo "test-$run: no libasan.so from gcc" >&2; exit 1; }
  phase "ASan copy in $prefix"
  # detect_leaks=0: the postmaster's and backends' own allocations are not ours and are
  # deliberately left to process exit.  abort_on_error: a report ends the process with
  # SIGABRT, so the postmaster logs it and the test that caused it fails.
  # exec -a keeps the wrapper as the server's argv[0]: postmaster.opts records it, and
  # pg_ctl restart (PostgreSQL::Test::Cluster->restart) starts the server through it again.
  make_wrapped_copy "#!/bin/bash
# test-sanitize: the server with gcc's ASan runtime preloaded, for an idempotency.so built
# with -fsanitize=address,undefined (a report aborts the process: see the server log).
LD_PRELOAD=$asan_lib\${LD_PRELOAD:+:\$LD_PRELOAD}
ASAN_OPTIONS=\${IDEMPOTENCY_ASAN_OPTIONS:-detect_leaks=0:halt_on_error=1:abort_on_error=1:detect_odr_violation=0:print_summary=1}
UBSAN_OPTIONS=\${IDEMPOTENCY_UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:abort_on_error=1:print_summary=1}
export LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS
exec -a \"\$0\" \"\$(dirname \"\$0\")/postgres.real\" \"\$@\""
elif [ "$mode" = valgrind ]; then
  phase "valgrind copy in $prefix"
  # initdb's bootstrap/single-user runs and version or config queries skip valgrind: the
  # extension is not loaded there.  Every other server process runs under memcheck, one
  # log file per process in $IDEMPOTENCY_VALGRIND_LOGDIR; --error-exitcode makes a backend
  # with an error exit 128, which the postmaster treats as a crash.
  make_wrapped_copy "#!/bin/sh
# test-valgrind: the server under valgrind memcheck, with PostgreSQL's src/tools/valgrind.supp.
dir=\$(dirname \"\$0\")
case \" \$* \" in
  *' --boot '*|*' --single '*|*' --check '*|*' -V '*|*' --version '*|*' -C '*|*' --describe-config '*)
    exec \"\$dir/postgres.real\" \"\$@\" ;;
esac
logdir=\${IDEMPOTENCY_VALGRIND_LOGDIR:-/tmp/idempotency-valgrind}
mkdir -p \"\$logdir\"
exec valgrind --quiet --tool=memcheck --trace-children=yes \\
  --trace-children-skip='/bin/*,/usr/bin/*,/usr/sbin/*' \\
  --suppressions=\"\$dir/../share/valgrind.supp\" \\
  --suppressions=\"\$dir/../share/idempotency-valgrind.supp\" \\
  --error-exitcode=128 --error-limit=no --gen-suppressions=all --num-callers=40 \\
  --leak-check=no --read-var-info=no --vgdb=no \\
  --log-file=\"\$logdir/%p.log\" \\
  \"\$dir/postgres.real\" \"\$@\""
  cp scripts/valgrind.supp "$prefix/share/idempotency-valgrind.supp"
fi
flock -u "$lockfd"

# The upgrade suite starts from the assert-enabled 15, not the system's 15.20: that package
# stamps a pg_attver option on every column, which PostgreSQL 18 rejects on any table
# (../shared/toolchain/README.md).  The extension built against 15 goes into a copy of it.
if [ "$pg" != 15 ] && want upgrade; then
  phase "PostgreSQL 15 to upgrade from, in $UPGRADE_OLD_PREFIX"
  lock_prefix "$PG15_PREFIX"
  ensure_pg15
  key="$(sed -n 1,2p "$PG15_PREFIX/$stamp_name")"
  if [ -f "$UPGRADE_OLD_PREFIX/$stamp_name" ] && [ "$(cat "$UPGRADE_OLD_PREFIX/$stamp_name")" = "$key" ]; then
    echo "test-$run: reusing $UPGRADE_OLD_PREFIX"
  else
    echo "test-$run: copying $PG15_PREFIX to $UPGRADE_OLD_PREFIX"
    rm -rf "$UPGRADE_OLD_PREFIX"
    cp -a "$PG15_PREFIX" "$UPGRADE_OLD_PREFIX"
    printf '%s\n' "$key" >"$UPGRADE_OLD_PREFIX/$stamp_name"
  fi
  flock -u "$lockfd"
fi

bindir=$("$prefix/bin/pg_config" --bindir)
pgxs=$(cd "$(dirname "$("$prefix/bin/pg_config" --pgxs)")/../.." && pwd)   # .../lib/pgxs

# --- the extension, built and installed from a copy of the tree -------------------------
phase "build and install the extension into $prefix"
exec {worklockfd}>"$work.lock"
flock -n "$worklockfd" || { echo "test-$run: another run holds $work.lock" >&2; exit 1; }
if [ -d "$work/data" ] && [ -f "$work/data/postmaster.pid" ]; then   # a run killed earlier
  runuser -u postgres -- "$bindir/pg_ctl" -D "$work/data" stop -m immediate -w >/dev/null 2>&1 || true
fi
rm -rf "$work"
mkdir -p "$work/tree"
tar -cf - --exclude=./.git --exclude=./tmp_check --exclude=./results --exclude=./output_iso \
  --exclude='*.o' --exclude='*.so' --exclude='*.bc' --exclude=./log . | tar -C "$work/tree" -xf -
chown -R postgres: "$work"
tree=$work/tree
as_pg() { runuser -u postgres -- env PATH="$bindir:$PATH" "$@"; }
ext_make=(PG_CONFIG="$bindir/pg_config")
[ "$mode" != sanitize ] || ext_make+=(COPT="$SANITIZE_COPT")
(cd "$tree" && as_pg $MAKE --no-print-directory -s clean "${ext_make[@]}" >/dev/null &&
   as_pg $MAKE --no-print-directory -s "${ext_make[@]}")
(cd "$tree" && $MAKE --no-print-directory -s install "${ext_make[@]}")
if [ "$pg" != 15 ] && want upgrade; then
  # The same tree built against the PostgreSQL 15 the upgrade suite starts from.
  mkdir -p "$work/tree15"
  tar -C "$tree" -cf - --exclude='*.o' --exclude='*.so' --exclude='*.bc' . | tar -C "$work/tree15" -xf -
  chown -R postgres: "$work/tree15"
  old_make=(PG_CONFIG="$UPGRADE_OLD_PREFIX/bin/pg_config")
  (cd "$work/tree15" && as_pg $MAKE --no-print-directory -s clean "${old_make[@]}" >/dev/null &&
     as_pg $MAKE --no-print-directory -s "${old_make[@]}" &&
     $MAKE --no-print-directory -s install "${old_make[@]}")
fi
if [ "$mode" = sanitize ]; then
  syms=$(nm -D "$("$bindir/pg_config" --pkglibdir)/idempotency.so")
  grep -q __asan_report <<<"$syms" ||
    { echo "test-$run: the installed idempotency.so is not ASan-instrumented" >&2; exit 1; }
  grep -q __ubsan_handle <<<"$syms" ||
    { echo "test-$run: the installed idempotency.so is not UBSan-instrumented" >&2; exit 1; }
fi

. scripts/summary.sh

vg_logdir=$work/valgrind
export IDEMPOTENCY_VALGRIND_LOGDIR=$vg_logdir
mkdir -p "$vg_logdir"; chown postgres: "$vg_logdir"

# --- pg_regress + isolation against a throwaway cluster ---------------------------------
# Unix socket only (listen_addresses = ''), in a private directory: no port can clash.
data=$work/data sock=$work/sock port=54329
server_log=$work/server.log
stop_server() {
  [ -f "$data/postmaster.pid" ] || return 0
  runuser -u postgres -- "$bindir/pg_ctl" -D "$data" stop -m fast -w -t 300 >/dev/null 2>&1 ||
    runuser -u postgres -- "$bindir/pg_ctl" -D "$data" stop -m immediate -w -t 60 >/dev/null 2>&1 || true
}
# TAP nodes left by a test killed on its timeout: stop them by their own postmaster.pid.
stop_tap_nodes() {
  local pidfile
  for pidfile in "$tree"/tmp_check/t_*_data/pgdata/postmaster.pid; do
    [ -f "$pidfile" ] || continue
    echo "test-$run: stopping a TAP node left running: ${pidfile%/postmaster.pid}"
    runuser -u postgres -- "$bindir/pg_ctl" -D "${pidfile%/postmaster.pid}" stop -m immediate -w \
      >/dev/null 2>&1 || true
  done
}
cleanup() { stop_server; stop_tap_nodes; }
trap cleanup EXIT
trap 'exit 130' INT TERM

phase "pg_regress + isolation (private cluster, shared_preload_libraries = idempotency)"
server_ok=1
start_server() {
  as_pg initdb -D "$data" -A trust -U postgres --no-sync >"$work/initdb.log" 2>&1 ||
    { cat "$work/initdb.log"; exit 1; }
  mkdir -p "$sock"; chown postgres: "$sock"
  cat >>"$data/postgresql.conf" <<EOF
# test-$run (scripts/test-cassert.sh); fsync off as in pg_virtualenv
shared_preload_libraries = 'idempotency'
listen_addresses = ''
unix_socket_directories = '$sock'
port = $port
fsync = off
log_line_prefix = '%m [%p] %q%u@%d '
EOF
  start_timeout=60; [ "$mode" != valgrind ] || start_timeout=600
  as_pg pg_ctl -D "$data" -l "$server_log" -w -t "$start_timeout" start >/dev/null || {
    server_ok=0; echo "test-$run: the server did not start"; tail -n 50 "$server_log"; }
  if [ $server_ok = 1 ]; then
    pm_pid=$(head -n1 "$data/postmaster.pid")
    case $mode in   # the mode really is in force in the server
      sanitize) grep -q libasan "/proc/$pm_pid/maps" ||
                  { echo "test-$run: the postmaster has no ASan runtime"; server_ok=0; } ;;
      valgrind) [[ $(readlink "/proc/$pm_pid/exe") == *memcheck* ]] ||
                  { echo "test-$run: the postmaster is not under valgrind"; server_ok=0; } ;;
    esac
  fi
}
if want regress || want isolation; then start_server; fi
run_suite() {  # run_suite NAME MAKE-ARGS...
  local name=$1 rc=0; shift
  (cd "$tree" && as_pg env PGHOST="$sock" PGPORT=$port PGUSER=postgres \
     PG_TEST_TIMEOUT_DEFAULT=$test_timeout \
     timeout -k 30 "$SUITE_TIMEOUT" $MAKE --no-print-directory installcheck "${ext_make[@]}" "$@") \
    2>&1 | tee "$work/$name.log" || rc=$?
  echo $rc >"$work/$name.rc"
}
for suite in regress isolation; do
  if [ $suite = regress ]; then files=(sql/*.sql); diffs=$tree/regression.diffs; args=(ISOLATION=)
  else files=(specs/*.spec); diffs=$tree/output_iso/regression.diffs; args=(REGRESS=); fi
  if [ ! -e "${files[0]}" ]; then record $suite SKIP 0 0 "(no ${files[0]})"; continue; fi
  if ! want $suite; then record $suite SKIP 0 0 "(not in SUITES)"; continue; fi
  if [ $server_ok = 0 ]; then record $suite FAIL 0 1 "(did not run: no server)"; continue; fi
  run_suite $suite "${args[@]}"
  rc=$(cat "$work/$suite.rc")
  read -r p f < <(regress_counts "$work/$suite.log" "$rc")
  if [ "$rc" -eq 0 ] && [ "$f" -eq 0 ]; then record $suite PASS "$p" 0 "($p passed)"
  else
    [ "$f" -gt 0 ] || f=1
    note="($p passed, $f failed; see $diffs)"; [ "$rc" -ne 124 ] || note="(timed out after $SUITE_TIMEOUT s)"
    record $suite FAIL "$p" "$f" "$note"
    [ ! -s "$diffs" ] || { echo "=== $diffs ==="; head -n 300 "$diffs"; }
  fi
done
stop_server

# --- TAP ----------------------------------------------------------------------------------
phase "TAP (prove as postgres, PATH=$bindir)"
# PostgreSQL::Test::Cluster runs pg_config, initdb, pg_ctl and postgres from PATH.
for cmd in pg_config initdb pg_ctl postgres; do
  [ "$(as_pg sh -c "command -v $cmd")" = "$bindir/$cmd" ] ||
    { echo "test-$run: $cmd is not taken from $bindir" >&2; exit 1; }
done
# TESTDATADIR and TESTLOGDIR as prove_installcheck sets them: PostgreSQL 16 and later write
# the nodes' logs into ./log without them, where the scan below would not look.
run_prove() {  # run_prove SUITE FILE...: prove the files as postgres, with prove_env
  local suite=$1 rc=0 failed_tests failed note t f; shift
  (cd "$tree" && as_pg env TESTDIR="$tree" PG_REGRESS="$pgxs/src/test/regress/pg_regress" \
     TESTDATADIR="$tree/tmp_check" TESTLOGDIR="$tree/tmp_check/log" \
     PG_TEST_TIMEOUT_DEFAULT=$test_timeout ${prove_env[@]+"${prove_env[@]}"} \
     timeout -k 30 "$SUITE_TIMEOUT" prove -I "$pgxs/src/test/perl/" -I . ${PROVE_FLAGS-} "$@") \
    2>&1 | tee "$work/$suite.log" || rc=$?
  stop_tap_nodes
  failed_tests=$(grep -oE '^t/[^ ]+\.pl +\(Wstat' "$work/$suite.log" | sed 's/ .*//' || true)
  failed=$(printf '%s' "$failed_tests" | grep -c . || true)
  if [ $rc -eq 0 ]; then record "$suite" PASS $# 0 "($# test files passed)"
  else
    [ "$failed" -gt 0 ] || failed=1
    note="($failed of $# test files failed; logs in $tree/tmp_check/log)"
    [ $rc -ne 124 ] || note="(timed out after $SUITE_TIMEOUT s; logs in $tree/tmp_check/log)"
    record "$suite" FAIL $(($# - failed)) "$failed" "$note"
    for t in $failed_tests; do
      for f in "$tree"/tmp_check/log/*"$(basename "$t" .pl)"*; do
        [ -f "$f" ] || continue
        echo "=== $f (last 100 lines) ==="; tail -n 100 "$f"
      done
    done
  fi
}
shopt -s nullglob; tap=(${TAP_TESTS:-t/*.pl}); shopt -u nullglob
if [ ${#tap[@]} -eq 0 ]; then
  record tap SKIP 0 0 "(no t/*.pl)"
elif ! want tap; then
  record tap SKIP 0 0 "(not in SUITES)"
else
  # Under valgrind the server is 30-100 times slower: t/005's load is scaled down by this
  # knob (docs/memory-safety.md), the other tests' timing by PG_TEST_TIMEOUT_DEFAULT.
  prove_env=()
  [ "$mode" != valgrind ] || prove_env+=(IDEMPOTENCY_TEST_LOAD_ROWS="${IDEMPOTENCY_TEST_LOAD_ROWS:-20000}")
  run_prove tap "${tap[@]}"
fi

# --- fuzz smoke -----------------------------------------------------------------------------
# fuzz/run.sh builds the extension once more and stages its own copy of this installation
# (with the sanitizer flags in --mode sanitize), and scans its server log itself.
if ! want fuzz; then
  record fuzz SKIP 0 0 "(not in SUITES)"
else
  phase "fuzz smoke (fuzz/run.sh, $FUZZ_SECONDS s per fuzzer)"
  fuzz_env=(MAKE="$MAKE" PG_CONFIG="$bindir/pg_config" FUZZ_SECONDS="$FUZZ_SECONDS")
  [ "$mode" != sanitize ] || fuzz_env+=(FUZZ_CFLAGS="$SANITIZE_COPT")
  rc=0
  (cd "$tree" && env "${fuzz_env[@]}" timeout -k 30 "$SUITE_TIMEOUT" bash fuzz/run.sh) 2>&1 |
    tee "$work/fuzz.log" || rc=$?
  read -r p f < <(sed -nE 's/^fuzz: ([0-9]+) passed, ([0-9]+) failed$/\1 \2/p' "$work/fuzz.log" |
                  tail -n1 | grep . || echo "0 1")
  if [ $rc -eq 0 ] && [ "$f" -eq 0 ]; then
    record fuzz PASS "$p" 0 "(sqlsmith and the API fuzzer, $FUZZ_SECONDS s each)"
  else
    [ "$f" -gt 0 ] || f=1
    note="(see $work/fuzz.log)"; [ $rc -ne 124 ] || note="(timed out after $SUITE_TIMEOUT s)"
    record fuzz FAIL "$p" "$f" "$note"
  fi
fi

# --- pg_upgrade from PostgreSQL 15 ----------------------------------------------------------
shopt -s nullglob; upgrade=(t/upgrade/*.pl); shopt -u nullglob
if ! want upgrade; then
  record upgrade SKIP 0 0 "(not in SUITES)"
elif [ "$pg" = 15 ]; then
  record upgrade SKIP 0 0 "(upgrades to PostgreSQL 18: --pg 18)"
elif [ ${#upgrade[@]} -eq 0 ]; then
  record upgrade SKIP 0 0 "(no t/upgrade/*.pl)"
else
  phase "pg_upgrade from $UPGRADE_OLD_PREFIX (t/upgrade, prove as postgres)"
  prove_env=(IDEMPOTENCY_UPGRADE_FROM="$UPGRADE_OLD_PREFIX")
  run_prove upgrade "${upgrade[@]}"
fi

# --- scan the server logs -------------------------------------------------------------------
# In the server logs: assertion failures (TRAP), PANICs, server processes that crashed (a
# signal other than the SIGKILL a test sends on purpose, or an exit without proc_exit, as
# UBSan's), glibc's heap checks, AddressSanitizer / UBSan reports, the memory-context
# checks of a cassert build (a write past a palloc'd chunk, a corrupt context) and the
# resource-owner warnings of a transaction that leaked a relation, snapshot, buffer or lock.
# Valgrind writes one log per process: any line in it but a warning is an error.
phase "scan server logs for reports"
report_re='TRAP: |PANIC: |terminated by signal ([0-8]|1[0-9]|[2-9][0-9])\b|server process \(PID [0-9]+\) exited with exit code|exited with exit code 128|stack smashing detected|double free or corruption|malloc\(\): |free\(\): invalid|corrupted size vs|ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: (AddressSanitizer|UndefinedBehaviorSanitizer)|detected write past chunk end|problem in (alloc set|Generation|slab)|WARNING: .*(reference leak|leak:|still active|not closed|refcount leak)|==[0-9]+== *(Invalid (read|write|free)|Conditional jump|Use of uninitialised|Uninitialised byte|Syscall param|Mismatched free|Source and destination overlap|Process terminating)'
vg_benign_re='^==[0-9]+== *(Warning: .*)?$'
logs=("$server_log")
shopt -s nullglob
for f in "$tree"/tmp_check/log/*.log; do
  case $(basename "$f") in regress_log_*) ;; *) logs+=("$f") ;; esac
done
vg_logs=("$vg_logdir"/*.log)
shopt -u nullglob
reported=()
for f in "${logs[@]}"; do
  [ -f "$f" ] || continue
  if grep -qE "$report_re" "$f"; then reported+=("$f"); fi
done
for f in "${vg_logs[@]}"; do
  if grep -qvE "$vg_benign_re" "$f"; then reported+=("$f"); fi
done
# The TAP suites ran servers: finding none of their logs means the scan looked in the
# wrong place, not that they were clean.
tap_logs=$(( ${#logs[@]} - 1 ))
for suite in tap upgrade; do
  if [ -f "$work/$suite.log" ] && [ $tap_logs -eq 0 ]; then
    reported+=("(no server log of the $suite suite in $tree/tmp_check/log)")
  fi
done
if [ ${#reported[@]} -eq 0 ]; then
  extra=; [ "$mode" != valgrind ] || extra=" and ${#vg_logs[@]} valgrind process logs"
  record scan PASS 1 0 "(no report in ${#logs[@]} server logs$extra)"
else
  record scan FAIL 0 ${#reported[@]} "(reports in ${#reported[@]} logs: see above)"
  for f in "${reported[@]}"; do
    echo "=== report in $f ==="
    case $f in
      "$vg_logdir"/*) head -n 200 "$f" ;;
      '('*) ;;
      *) grep -nE -B5 -A60 "$report_re" "$f" | head -n 200 ;;
    esac
  done
fi

phase ""
echo "=== summary (test-$run; PostgreSQL $("$bindir/postgres.real" -V 2>/dev/null || "$bindir/postgres" -V); work dir $work) ==="
echo "time: $(( $(date +%s) - t_start )) s"
print_summary
exit $status

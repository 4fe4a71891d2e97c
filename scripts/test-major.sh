#!/usr/bin/env bash
# The suite on a PostgreSQL major that Debian 12 does not package, from the Debian suite that
# does, in a chroot (make test-pg17, make test-pg19; scripts/majors.mk):
#
#   bash scripts/test-major.sh 17   # Debian 13 ("trixie"): postgresql-17; pg_upgrade from 15
#   bash scripts/test-major.sh 19   # sid + experimental: postgresql-19; pg_upgrade from
#                                   # sid's postgresql-18
#
# 1. The chroot: a `debootstrap --variant=minbase` of the suite with the server and dev
#    packages of the major (and of the old major), make, gcc, libc6-dev, libipc-run-perl and
#    what the Debian package's build needs (debhelper, dpkg-dev, postgresql-server-dev-all).
#    It is cached in $TOOLCHAIN_CACHE/chroot-pgMAJOR-SUITE-KEY, KEY made of the suite, the
#    versions the archive serves today of the packages of the majors and this recipe's
#    revision: a new package version is a new chroot, and older ones are removed.  The
#    versions are read first from the suite's package index, fetched with apt into a private
#    list directory (the system's apt set-up is not touched).  Concurrent calls wait on a
#    lock.  Trixie has no postgresql-15: for 17 the chroot also holds PostgreSQL 15 built
#    from Debian's 15.18 source package (bookworm's deb-src), in /usr/local/pgsql-15.
# 2. The run: the cached chroot is never written to.  An overlay over it (in a private mount
#    namespace, unshare --mount) gets /proc, a tmpfs /dev/shm and a copy of the tree (not
#    the work tree) in /build/idempotency; everything is unmounted on exit.  Inside, the
#    suites, each timed:
#      deb      the Debian package (debian/) built for the majors that are Debian packages
#               there (17; 18 and 19) and installed with dpkg -i: the suites below run
#               against its files
#      regress, isolation   installcheck against a throwaway cluster, library preloaded
#      tap      t/*.pl
#      upgrade  t/upgrade/*.pl: pg_upgrade from the old major (15 or 18), which has the
#               extension too (its package, or built from a copy of the tree)
#    The servers and prove run as the unprivileged postgres user.
#
# Nothing is downloaded but from the Debian archive (the mirror of the system's
# /etc/apt/sources.list.d/debian.sources, or DEBIAN_MIRROR).  Run as root on Debian 12.
# Settings: TOOLCHAIN_CACHE (default /var/cache/idempotency-toolchain), MAJOR_WORKDIR (the
# logs, default /tmp/idempotency-test-pgMAJOR), SUITES (default "deb regress isolation tap
# upgrade"), TAP_TESTS (a subset of t/*.pl), PROVE_FLAGS.  Every step prints its time; the
# last line is the summary (scripts/summary.sh).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
# Bump when the recipe of the chroot changes: a new cache key, a new chroot.
recipe=2

say() { echo "test-pg${major:-?}: $*" >&2; }
die() { say "$*"; exit 1; }

# --- inside the chroot ------------------------------------------------------------------------
# scripts/test-major.sh --inside MAJOR OLD-PG_CONFIG: in /build/idempotency, as root.
if [ "${1-}" = --inside ]; then
  major=$2 old_pg_config=$3
  export LC_ALL=C.UTF-8 LANG=C.UTF-8
  cd /build/idempotency
  . scripts/summary.sh
  SUITES=${SUITES:-deb regress isolation tap upgrade}
  want() { [[ " $SUITES " == *" $1 "* ]]; }
  t0=$(date +%s)
  step() { local now; now=$(date +%s); say "$1 took $((now - t0)) s"; t0=$now; }
  pg_config=/usr/lib/postgresql/$major/bin/pg_config
  bindir=$("$pg_config" --bindir)
  pgxs=$(cd "$(dirname "$("$pg_config" --pgxs)")/../.." && pwd)
  as_pg() { runuser -u postgres -- env PATH="$bindir:$PATH" "$@"; }

  old_major=$("$old_pg_config" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
  copy_tree() {  # copy_tree DIR: the tree without build or test products
    rm -rf "$1" && mkdir -p "$1"
    tar -C /build/idempotency --exclude=tmp_check --exclude=results --exclude=output_iso \
      --exclude='*.o' --exclude='*.so' --exclude='*.bc' -cf - . | tar -C "$1" -xf -
  }

  # The Debian package, for every major of debian/pgversions that is a Debian package
  # here (the old 15 of the trixie chroot is a source build): built in a copy of the
  # tree, installed with dpkg -i; the suites below then run against its files.
  packaged=
  if want deb; then
    deb_majors=$major; [ "$old_pg_config" != "/usr/lib/postgresql/$old_major/bin/pg_config" ] ||
      deb_majors="$old_major $major"
    copy_tree /build/deb/idempotency
    rc=0
    (cd /build/deb/idempotency && export PG_SUPPORTED_VERSIONS="$deb_majors" &&
       pg_buildext updatecontrol &&
       DEB_BUILD_OPTIONS=nocheck dpkg-buildpackage -us -uc -b -d) >/build/deb.log 2>&1 &&
      dpkg -i /build/deb/*.deb >>/build/deb.log 2>&1 || rc=$?
    checked=0 bad=()
    for m in $deb_majors; do
      pkg=postgresql-$m-idempotency
      [ $rc -eq 0 ] || { bad+=("$pkg: not built or not installed"); continue; }
      [ -z "$(dpkg --verify "$pkg" 2>&1)" ] || bad+=("$pkg: dpkg --verify")
      for f in /usr/lib/postgresql/$m/lib/idempotency.so \
               /usr/share/postgresql/$m/extension/idempotency.control; do
        [ "$(dpkg -S "$f" 2>/dev/null)" = "$pkg: $f" ] && checked=$((checked + 1)) ||
          bad+=("$f is not $pkg's")
      done
    done
    if [ ${#bad[@]} -eq 0 ]; then
      packaged=" $deb_majors "
      record deb PASS 1 0 "($(cd /build/deb && ls ./*.deb | sed 's|^\./||' | paste -sd' '): dpkg -i, dpkg --verify, $checked files owned)"
    else
      record deb FAIL 0 1 "(${bad[*]})"
      tail -n 40 /build/deb.log
    fi
    step "the Debian package for $deb_majors"
  else
    record deb SKIP 0 0 "(not in SUITES)"
  fi

  if [[ $packaged == *" $major "* ]]; then
    say "PostgreSQL $major: the extension is the package's"
  else
    make -s PG_CONFIG="$pg_config" >/build/make.log 2>&1 || { cat /build/make.log; die "the build failed"; }
    make -s PG_CONFIG="$pg_config" install >>/build/make.log 2>&1 || { cat /build/make.log; die "make install failed"; }
    step "building and installing the extension for $("$pg_config" --version)"
  fi
  chown -R postgres: /build/idempotency

  data=/build/data sock=/build/sock port=54329
  mkdir -p /build/pglog; chown postgres: /build/pglog
  stop_server() {
    [ -f "$data/postmaster.pid" ] || return 0
    as_pg pg_ctl -D "$data" stop -m fast -w -t 120 >/dev/null 2>&1 || true
  }
  stop_tap_nodes() {
    local pidfile
    for pidfile in /build/idempotency/tmp_check/t_*_data/pgdata/postmaster.pid; do
      [ -f "$pidfile" ] || continue
      as_pg pg_ctl -D "${pidfile%/postmaster.pid}" stop -m immediate -w >/dev/null 2>&1 || true
    done
  }
  trap 'stop_server; stop_tap_nodes' EXIT

  if want regress || want isolation; then
    mkdir -p "$data" "$sock"; chown postgres: "$data" "$sock"
    as_pg initdb -D "$data" -A trust -U postgres --no-sync >/build/initdb.log 2>&1 ||
      { cat /build/initdb.log; die "initdb failed"; }
    cat >>"$data/postgresql.conf" <<EOF
shared_preload_libraries = 'idempotency'
listen_addresses = ''
unix_socket_directories = '$sock'
port = $port
fsync = off
# sql/key_lock_limit derives its limit from 15 to 18's default; 19's is 128.
max_locks_per_transaction = 64
EOF
    as_pg pg_ctl -D "$data" -l /build/pglog/server.log -w start >/dev/null ||
      { tail -n 50 /build/pglog/server.log; die "the server did not start"; }
  fi
  for suite in regress isolation; do
    if ! want $suite; then record $suite SKIP 0 0 "(not in SUITES)"; continue; fi
    if [ $suite = regress ]; then args=(ISOLATION=); diffs=regression.diffs
    else args=(REGRESS=); diffs=output_iso/regression.diffs; fi
    rc=0
    as_pg env PGHOST="$sock" PGPORT=$port PGUSER=postgres \
      timeout -k 30 1200 make --no-print-directory installcheck PG_CONFIG="$pg_config" "${args[@]}" \
      >/build/$suite.log 2>&1 || rc=$?
    read -r p f < <(regress_counts /build/$suite.log "$rc")
    if [ $rc -eq 0 ] && [ "$f" -eq 0 ]; then record $suite PASS "$p" 0 "($p passed)"
    else
      [ "$f" -gt 0 ] || f=1
      record $suite FAIL "$p" "$f" "($p passed, $f failed)"
      tail -n 30 /build/$suite.log
      [ ! -s "$diffs" ] || head -n 200 "$diffs"
    fi
    step "$suite"
  done
  stop_server

  run_prove() {  # run_prove SUITE FILE...
    local suite=$1 rc=0 failed; shift
    as_pg env TESTDIR=/build/idempotency PG_REGRESS="$pgxs/src/test/regress/pg_regress" \
      TESTDATADIR=/build/idempotency/tmp_check TESTLOGDIR=/build/idempotency/tmp_check/log \
      ${prove_env[@]+"${prove_env[@]}"} \
      timeout -k 30 2400 prove -I "$pgxs/src/test/perl/" -I . ${PROVE_FLAGS-} "$@" \
      >/build/$suite.log 2>&1 || rc=$?
    stop_tap_nodes
    failed=$(grep -cE '^t/[^ ]+\.pl +\(Wstat' /build/$suite.log || true)
    if [ $rc -eq 0 ]; then record "$suite" PASS $# 0 "($# test files passed)"
    else
      [ "$failed" -gt 0 ] || failed=1
      record "$suite" FAIL $(($# - failed)) "$failed" "($failed of $# test files failed)"
      tail -n 60 /build/$suite.log
    fi
    step "$suite"
  }
  prove_env=()
  shopt -s nullglob; tap=(${TAP_TESTS:-t/*.pl}); upgrade=(t/upgrade/*.pl); shopt -u nullglob
  if want tap; then run_prove tap "${tap[@]}"; else record tap SKIP 0 0 "(not in SUITES)"; fi

  if want upgrade; then
    # The old major has the extension too: its package, or built in a copy of the tree.
    if [[ $packaged != *" $old_major "* ]]; then
      copy_tree /build/old
      { make -s -C /build/old PG_CONFIG="$old_pg_config" &&
        make -s -C /build/old PG_CONFIG="$old_pg_config" install; } >/build/make-old.log 2>&1 ||
        { cat /build/make-old.log; die "the build for $("$old_pg_config" --version) failed"; }
      step "building and installing the extension for $("$old_pg_config" --version)"
    fi
    prove_env=(IDEMPOTENCY_UPGRADE_FROM="$(dirname "$("$old_pg_config" --bindir)")"
               IDEMPOTENCY_UPGRADE_MAJORS="$old_major $major")
    run_prove upgrade "${upgrade[@]}"
  else
    record upgrade SKIP 0 0 "(not in SUITES)"
  fi
  print_summary
  exit $status
fi

# --- on the machine ---------------------------------------------------------------------------
major=${1-}
case $major in
  17) suite=trixie suites=trixie
      pkgs=(postgresql-17 postgresql-server-dev-17)
      old_pg_config=/usr/local/pgsql-15/bin/pg_config ;;
  19) suite=sid suites="sid experimental"
      pkgs=(postgresql-19 postgresql-server-dev-19 postgresql-18 postgresql-server-dev-18)
      old_pg_config=/usr/lib/postgresql/18/bin/pg_config ;;
  *) echo "usage: $0 17|19" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap, chroot, mounts)"
TOOLCHAIN_CACHE=${TOOLCHAIN_CACHE:-/var/cache/idempotency-toolchain}
work=${MAJOR_WORKDIR:-/tmp/idempotency-test-pg$major}
mkdir -p "$TOOLCHAIN_CACHE" "$work"
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES
t_all=$(date +%s) t0=$t_all
step() { local now; now=$(date +%s); say "$1 took $((now - t0)) s"; t0=$now; }

if [ "${IDEMPOTENCY_IN_NAMESPACE-}" != 1 ]; then
  command -v debootstrap >/dev/null || {
    apt-get install -y -q debootstrap >"$work/apt-host.log" 2>&1 ||
      { cat "$work/apt-host.log"; die "cannot install debootstrap"; }
  }
  mirror=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null |
                            grep -v security | head -n1)}
  [ -n "$mirror" ] || die "no Debian mirror in /etc/apt/sources.list.d/debian.sources (set DEBIAN_MIRROR)"
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg

  # The package versions the suite serves today, from its index in a private list directory.
  index=$TOOLCHAIN_CACHE/index-$suite
  mkdir -p "$index/parts" "$index/lists/partial"
  exec {indexfd}>"$TOOLCHAIN_CACHE/index-$suite.lock"; flock -w 600 "$indexfd"
  {
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' \
      "$mirror" "$suites" "$keyring"
    if [ "$major" = 17 ]; then
      printf '\nTypes: deb-src\nURIs: %s\nSuites: bookworm\nComponents: main\nSigned-By: %s\n' \
        "$mirror" "$keyring"
    fi
  } >"$index/parts/suite.sources"
  A=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$index/parts"
     -o Dir::State::Lists="$index/lists" -o Acquire::Check-Valid-Until=false
     -o Dir::Cache::Archives="$index/archives")
  mkdir -p "$index/archives/partial"
  apt-get "${A[@]}" -q update >"$work/index.log" 2>&1 || { cat "$work/index.log"; die "apt-get update of $suites failed"; }
  versions=() install=()
  for p in "${pkgs[@]}"; do
    from=$suite; [[ $p != postgresql-*19 ]] || from=experimental
    v=$(apt-cache "${A[@]}" madison "$p" | awk -F' [|] ' -v s=" $from/main" \
          '$3 ~ s && $3 ~ /Packages/ {gsub(/ /, "", $2); print $2; exit}')
    [ -n "$v" ] || die "$suites has no $p"
    versions+=("$p=$v") install+=("$p=$v")
  done
  if [ "$major" = 17 ]; then
    src15=$(apt-cache "${A[@]}" showsrc postgresql-15 | sed -n 's/^Version: //p' | sort -V | tail -n1)
    [ -n "$src15" ] || die "no postgresql-15 source package in bookworm"
    versions+=("source:postgresql-15=$src15")
  fi
  exec {indexfd}>&-
  key=$(printf '%s\n' "recipe $recipe" "$suite" "${versions[@]}" | sha256sum | cut -c1-16)
  root=$TOOLCHAIN_CACHE/chroot-pg$major-$suite-$key
  step "reading the package index of $suites (${versions[*]})"

  exec {lockfd}>"$TOOLCHAIN_CACHE/chroot-pg$major.lock"
  if ! flock -n "$lockfd"; then
    say "waiting for another build of the chroot (lock $TOOLCHAIN_CACHE/chroot-pg$major.lock)"
    flock -w 3600 "$lockfd" || die "the lock is still held after an hour"
  fi
  if [ -f "$root/.toolchain-complete" ]; then
    say "chroot cached in $root ($(cat "$root/.toolchain-complete"))"
  else
    for o in "$TOOLCHAIN_CACHE/chroot-pg$major-"*; do
      [ -d "$o" ] || continue
      say "removing $o (other package versions, or a build left unfinished)"; rm -rf "$o"
    done
    build=$root.build
    rm -rf "$build"
    t0=$(date +%s)
    in_build() { chroot "$build" env DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"; }
    cleanup_build() { umount "$build/proc" 2>/dev/null || true; }
    trap cleanup_build EXIT
    start=$(date +%s)
    debootstrap --variant=minbase "$suite" "$build" "$mirror" >"$work/debootstrap.log" 2>&1 ||
      { tail -n 30 "$work/debootstrap.log"; rm -rf "$build"; die "debootstrap $suite failed"; }
    t_debootstrap=$(( $(date +%s) - start ))
    step "debootstrap --variant=minbase $suite"
    mount -t proc proc "$build/proc"
    for s in $suites; do printf 'deb %s %s main\n' "$mirror" "$s"; done >"$build/etc/apt/sources.list"
    # No service starts in a chroot, and no cluster is made by the packages.
    printf '#!/bin/sh\nexit 101\n' >"$build/usr/sbin/policy-rc.d"; chmod 755 "$build/usr/sbin/policy-rc.d"
    mkdir -p "$build/etc/postgresql-common"
    echo 'create_main_cluster = false' >"$build/etc/postgresql-common/createcluster.conf"
    aptq=(apt-get -q -y --no-install-recommends -o Acquire::Check-Valid-Until=false)
    # 19's packages depend on experimental's libpq5: take what they need from there.
    target=(); [ "$major" != 19 ] || target=(-t experimental)
    extra=(make gcc libc6-dev libipc-run-perl perl postgresql-common
           debhelper dpkg-dev postgresql-server-dev-all)
    [ "$major" != 17 ] || extra+=(libssl-dev)
    { in_build "${aptq[@]}" update && in_build "${aptq[@]}" install "${extra[@]}" &&
      in_build "${aptq[@]}" "${target[@]}" install "${install[@]}"; } >"$work/packages.log" 2>&1 ||
      { tail -n 40 "$work/packages.log"; cleanup_build; rm -rf "$build"; die "the packages did not install"; }
    in_build apt-get clean
    t_packages=$(( $(date +%s) - start - t_debootstrap ))
    step "the packages in the chroot (${versions[*]})"
    if [ "$major" = 17 ]; then
      # PostgreSQL 15, which trixie does not have, from Debian's source package.
      mkdir -p "$index/src"
      (cd "$index/src" && apt-get "${A[@]}" source --download-only "postgresql-15=$src15") \
        >"$work/source.log" 2>&1 || { cat "$work/source.log"; die "no source package postgresql-15=$src15"; }
      orig=$(ls "$index/src"/postgresql-15_"${src15%%-*}".orig.tar.* | head -n1)
      mkdir -p "$build/build/pg15"
      tar -xf "$orig" -C "$build/build/pg15" --strip-components=1
      in_build sh -c 'cd /build/pg15 &&
        ./configure -q --prefix=/usr/local/pgsql-15 --with-openssl --without-icu \
          --without-readline --without-zlib &&
        make -s -j2 && make -s install && make -s -C contrib/pgcrypto install' \
        >"$work/pg15-build.log" 2>&1 ||
        { tail -n 40 "$work/pg15-build.log"; cleanup_build; rm -rf "$build"; die "the build of PostgreSQL 15 failed"; }
      rm -rf "$build/build"
      step "PostgreSQL $src15 built from source in the chroot"
    fi
    cleanup_build; trap - EXIT
    printf 'built %s in %s s (debootstrap %s s, packages %s s): %s\n' "$(date -u +%FT%TZ)" \
      "$(($(date +%s) - start))" "$t_debootstrap" "$t_packages" "${versions[*]}" >"$build/.toolchain-complete"
    mv "$build" "$root"
  fi
  exec {lockfd}>&-
  # The run, in a private mount namespace: its mounts vanish with it.
  exec unshare --mount --propagation private env IDEMPOTENCY_IN_NAMESPACE=1 \
    IDEMPOTENCY_CHROOT="$root" IDEMPOTENCY_T_ALL="$t_all" bash "$0" "$major"
fi

# --- the run (private mount namespace) ---------------------------------------------------------
root=$IDEMPOTENCY_CHROOT t_all=$IDEMPOTENCY_T_ALL
run=$(mktemp -d "$work/run.XXXXXX")
mkdir -p "$run/upper" "$run/work" "$run/root"
mount -t overlay overlay -o "lowerdir=$root,upperdir=$run/upper,workdir=$run/work" "$run/root"
r=$run/root
cleanup() {
  # Logs out of the chroot, then every mount undone and the overlay's upper layer removed.
  mkdir -p "$work/logs"
  cp -r "$r/build"/*.log "$r/build/pglog" "$r/build/idempotency/tmp_check/log" "$r/build/idempotency/regression.diffs" \
    "$r/build/idempotency/output_iso/regression.diffs" "$work/logs/" 2>/dev/null || true
  umount "$r/dev/shm" 2>/dev/null || true
  umount "$r/proc" 2>/dev/null || true
  umount "$r" 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mount -t proc proc "$r/proc"
mount -t tmpfs -o size=1g tmpfs "$r/dev/shm"
mkdir -p "$r/build/idempotency"
# A copy of the tree as git sees it (tracked and untracked files, not ignored ones).
(cd "$top" && git ls-files -z --cached --others --exclude-standard |
   tar --null --ignore-failed-read -T - -cf -) | tar -C "$r/build/idempotency" -xf -
chown -R 0:0 "$r/build/idempotency"
rm -rf "$work/logs"
rc=0
chroot "$r" env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
  SUITES="${SUITES-}" TAP_TESTS="${TAP_TESTS-}" PROVE_FLAGS="${PROVE_FLAGS-}" \
  bash /build/idempotency/scripts/test-major.sh --inside "$major" "$old_pg_config" 2>&1 |
  tee "$work/test.log" || rc=$?
say "all of it took $(( $(date +%s) - t_all )) s (logs in $work/logs)"
exit $rc

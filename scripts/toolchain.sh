#!/usr/bin/env bash
# The builds from ../shared/toolchain, cached on this machine and keyed by checksums, so that
# a second CI run (or a second worktree) on the same machine does not build them again.
#
#   bash scripts/toolchain.sh postgresql-18
#       PostgreSQL 18 (assertions, debug symbols, TAP support) built by
#       build-postgresql-18.sh into $TOOLCHAIN_CACHE/postgresql-VERSION-KEY, where KEY is
#       made of the SHA-256 of the tarball and of the build script: a changed tarball or
#       script is a new directory and a new build, and older ones are removed.  The last
#       line of output is that prefix.  The cached prefix is never written to afterwards:
#       the test runners copy it (PostgreSQL relocates) and install the extension into the
#       copy.  With --link DIR, DIR (e.g. /usr/local/pgsql-18, the build script's default)
#       is made a copy of it too when DIR does not exist yet.
#
#   bash scripts/toolchain.sh pgindent
#       pg_bsd_indent and pgindent from the PostgreSQL tarball, for scripts/pgindent.sh.
#       pg_bsd_indent includes PostgreSQL's c.h and links libpgport, so it is built the way
#       its README says: the tarball unpacked into a temporary directory, configured
#       without optional libraries, `make -C src/tools/pg_bsd_indent` (80 s on 2 idle
#       cores, 200 s beside another build).  Only the binary and src/tools/pgindent/ are
#       kept, in $TOOLCHAIN_CACHE/pgindent-VERSION-KEY, KEY the first 16 hex digits of the
#       tarball's SHA-256; another tarball is a new directory, and older ones are removed.
#       The last line of output is that directory.
#
# Settings (environment): TOOLCHAIN_DIR (default ../shared/toolchain, beside the repo),
# TOOLCHAIN_CACHE (default /var/cache/idempotency-toolchain).  PostgreSQL needs root on
# Debian 12 (its build script installs its build packages); pgindent only a writable
# TOOLCHAIN_CACHE.  Concurrent calls wait on a lock.  Citus is never built here:
# make test-citus uses a Citus installed by hand (README, "Scaling out with Citus").
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
TOOLCHAIN_DIR=${TOOLCHAIN_DIR:-$top/../shared/toolchain}
TOOLCHAIN_CACHE=${TOOLCHAIN_CACHE:-/var/cache/idempotency-toolchain}

say() { echo "toolchain: $*" >&2; }
die() { say "$*"; exit 1; }
usage() { die "usage: $0 postgresql-18 [--link DIR] | pgindent"; }
need_root() { [ "$(id -u)" -eq 0 ] || die "run as root (the build scripts install packages)"; }

[ -d "$TOOLCHAIN_DIR" ] || die "no toolchain directory $TOOLCHAIN_DIR (set TOOLCHAIN_DIR)"
TOOLCHAIN_DIR=$(cd "$TOOLCHAIN_DIR" && pwd)
# Called from make (`make pg18`), the build scripts' own make would inherit
# MAKELEVEL=1 and think itself a sub-make: PostgreSQL's top-level build then
# skips generating utils/errcodes.h etc. first, and a parallel build fails
# on a missing header.  Nothing of the calling make reaches the builds.
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES
mkdir -p "$TOOLCHAIN_CACHE" 2>/dev/null && [ -w "$TOOLCHAIN_CACHE" ] ||
  die "cannot write $TOOLCHAIN_CACHE (run as root, or set TOOLCHAIN_CACHE)"

sha() { sha256sum "$1" | cut -c1-64; }

# The one tarball NAME-*.EXT in the toolchain directory, and its version.
find_tarball() {  # find_tarball NAME EXT
  local files
  files=("$TOOLCHAIN_DIR/$1"-*."$2")
  [ ${#files[@]} -eq 1 ] && [ -f "${files[0]}" ] ||
    die "expected one $1-*.$2 in $TOOLCHAIN_DIR, found: ${files[*]}"
  tarball=${files[0]}
  version=$(basename "$tarball" ".$2"); version=${version#"$1"-}
}

# One build at a time per cached item, across worktrees and CI runs.
take_lock() {  # take_lock NAME
  exec {lockfd}>"$TOOLCHAIN_CACHE/$1.lock"
  if ! flock -n "$lockfd"; then
    say "waiting for another build of $1 (lock $TOOLCHAIN_CACHE/$1.lock)"
    flock -w 3600 "$lockfd" || die "$TOOLCHAIN_CACHE/$1.lock is still held after an hour"
  fi
}

postgresql() {  # postgresql MAJOR [--link DIR]
  local major=$1 link= script prefix key old start
  shift
  need_root
  case ${1-} in
    --link) link=${2:?--link needs a directory} ;;
    '') ;;
    *) usage ;;
  esac
  find_tarball postgresql tar.bz2
  [[ $version == "$major".* ]] || die "$tarball is not PostgreSQL $major"
  script=$TOOLCHAIN_DIR/build-postgresql-$major.sh
  [ -f "$script" ] || die "no $script"
  key=$(printf '%s\n' "$(sha "$tarball")" "$(sha "$script")" | sha256sum | cut -c1-16)
  prefix=$TOOLCHAIN_CACHE/postgresql-$version-$key
  take_lock "postgresql-$major"
  if [ -f "$prefix/.toolchain-complete" ] && "$prefix/bin/pg_config" --version >/dev/null 2>&1; then
    say "PostgreSQL $version: cached in $prefix ($(cat "$prefix/.toolchain-complete"))"
  else
    for old in "$TOOLCHAIN_CACHE/postgresql-$major".*; do
      [ -d "$old" ] || continue
      say "removing $old (another tarball or build script)"
      rm -rf "$old"
    done
    say "PostgreSQL $version: building into $prefix with $script (about 5 minutes)"
    start=$(date +%s)
    PREFIX=$prefix bash "$script" >&2 || { rm -rf "$prefix"; die "the build of PostgreSQL $version failed"; }
    "$prefix/bin/pg_config" --version >/dev/null || { rm -rf "$prefix"; die "no pg_config in $prefix"; }
    printf 'built %s in %s s from %s (sha256 %s)\n' "$(date -u +%FT%TZ)" "$(($(date +%s) - start))" \
      "$(basename "$tarball")" "$(sha "$tarball")" >"$prefix/.toolchain-complete"
  fi
  if [ -n "$link" ]; then
    if [ -e "$link" ]; then
      say "$link exists, left as it is ($("$link/bin/pg_config" --version 2>/dev/null || echo 'no pg_config'))"
    else
      say "copying $prefix to $link"
      mkdir -p "$(dirname "$link")"
      cp -a "$prefix" "$link.tmp.$$"
      rm -f "$link.tmp.$$/.toolchain-complete"
      mv "$link.tmp.$$" "$link"
    fi
  fi
  echo "$prefix"
}

pgindent() {
  local tools build src start old
  find_tarball postgresql tar.bz2
  tools=$TOOLCHAIN_CACHE/pgindent-$version-$(sha "$tarball" | cut -c1-16)
  take_lock pgindent
  if [ -f "$tools/.toolchain-complete" ] && "$tools/bin/pg_bsd_indent" --version >/dev/null 2>&1; then
    echo "$tools"
    return
  fi
  for old in "$TOOLCHAIN_CACHE"/pgindent-*/; do
    [ -d "$old" ] || continue
    say "removing ${old%/} (another tarball)"
    rm -rf "$old"
  done
  say "pg_bsd_indent: building from $(basename "$tarball") into $tools (1 to 3 minutes)"
  start=$(date +%s)
  build=$(mktemp -d "$TOOLCHAIN_CACHE/pgindent-build.XXXXXX")
  src=$build/postgresql-$version
  if ! {
      tar -xjf "$tarball" -C "$build" &&
      (cd "$src" && ./configure --without-icu --without-readline --without-zlib \
                     --without-lz4 --without-zstd) >"$build/configure.log" 2>&1 &&
      make -C "$src/src/tools/pg_bsd_indent" -j"$(nproc)" >"$build/make.log" 2>&1
    }; then
    tail -n 20 "$build/configure.log" "$build/make.log" >&2 2>/dev/null || true
    rm -rf "$build"
    die "the build of pg_bsd_indent failed"
  fi
  mkdir -p "$tools/bin"
  cp "$src/src/tools/pg_bsd_indent/pg_bsd_indent" "$tools/bin/"
  cp -r "$src/src/tools/pgindent" "$tools/pgindent"
  rm -rf "$build"
  printf 'built %s in %s s from %s (sha256 %s); %s\n' "$(date -u +%FT%TZ)" \
    "$(($(date +%s) - start))" "$(basename "$tarball")" "$(sha "$tarball")" \
    "$("$tools/bin/pg_bsd_indent" --version)" >"$tools/.toolchain-complete"
  say "pg_bsd_indent: $(cat "$tools/.toolchain-complete")"
  echo "$tools"
}

case ${1-} in
  postgresql-18) shift; postgresql 18 "$@" ;;
  pgindent) shift; [ $# -eq 0 ] || usage; pgindent ;;
  *) usage ;;
esac

#!/usr/bin/env bash
# scripts/install-script.sh VERSION: print the install script of VERSION,
# idempotency--VERSION.sql, built from one source: the install script of
# the newest released version before it, then each update script from
# there to VERSION, in order.  So an object new in VERSION is written once,
# in its update script, and a fresh install runs the very statements an
# update runs (t/013 compares the two catalogs).  The Makefile builds the
# file with it (DATA_built); released install scripts stay as they were
# released (scripts/released.sha256, checked by make check-release).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: $0 VERSION}

# The released install script to start from: the newest committed one
# older than the target.
base=
for f in $(ls idempotency--[0-9]*.sql | grep -v -- '--.*--' | sed 's/^idempotency--//; s/\.sql$//' | sort -V); do
  [ "$f" = "$target" ] && break
  base=$f
done
[ -n "$base" ] || { echo "install-script: no released install script before $target" >&2; exit 1; }

# The chain of updates from base to target.
chain=()
from=$base
while [ "$from" != "$target" ]; do
  next=$(ls idempotency--"$from"--*.sql 2>/dev/null | sed "s/^idempotency--$from--//; s/\.sql$//" | sort -V | tail -n 1)
  [ -n "$next" ] || { echo "install-script: no update script from $from towards $target" >&2; exit 1; }
  chain+=("idempotency--$from--$next.sql")
  from=$next
done

cat <<HEAD
/* idempotency--$target.sql: built by scripts/install-script.sh from
 * idempotency--$base.sql and ${chain[*]}; edit those, not this file. */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\\echo Use "CREATE EXTENSION idempotency" to load this file. \\quit
HEAD
# Each source without its first comment line and its \echo guard.
for f in "idempotency--$base.sql" "${chain[@]}"; do
  printf '\n-- ==== from %s ====\n' "$f"
  sed -e '1{/^\/\*.*\*\/$/d}' -e '/^-- complain if script is sourced in psql/d' -e '/^\\echo Use /d' "$f"
done

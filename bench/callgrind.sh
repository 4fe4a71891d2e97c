#!/usr/bin/env bash
# `make bench-callgrind` (bench/bench.mk: installs the build first): instructions the server backend retires per
# transaction of each benchmark case (bench/pgbench/*.sql), counted with
# valgrind's callgrind on one client: exact and repeatable, unlike timings
# on a shared machine.  Each case runs twice, N1 and N2 transactions, in a
# fresh connection; the difference between the two backends' totals,
# divided by N2 - N1, is the cost of one transaction without the
# connection's start-up.
#
# A case named *-churn-* (tenant churn: a new scope per claim) first runs
# CALLGRIND_CHURN_WARMUP transactions (default 6000, more than the default
# idempotency.scope_stats_max), so that the per-scope statistics' table is
# full and evicting while it is measured.
#
# Run as root on Debian 12 (PostgreSQL refuses root: the server runs as
# postgres).  Knobs: CALLGRIND_CASES (default below), CALLGRIND_N1 (200),
# CALLGRIND_N2 (1200), CALLGRIND_CHURN_WARMUP, CALLGRIND_CONF (lines added to
# postgresql.conf, e.g. 'idempotency.scope_stats_max = 0' to measure without
# the per-scope statistics), CALLGRIND_SQL (statements run once the
# extension is created, e.g. 'DROP INDEX idempotency.keys_retain_until_idx'
# to attribute a cost; README.md, "Performance"), PG_CONFIG.  Prints one
# line per case and writes bench/results/callgrind.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=${PG_CONFIG:-pg_config}
bindir=$("$PG_CONFIG" --bindir)
cases=${CALLGRIND_CASES:-floor-rtt ceiling-rtt raw-rtt raw-expiry-rtt ext-new-rtt ext-replay-rtt floor-pipeline ceiling-pipeline raw-pipeline raw-expiry-pipeline ext-new-pipeline ext-new-churn-rtt}
n1=${CALLGRIND_N1:-200}
n2=${CALLGRIND_N2:-1200}
churn_warmup=${CALLGRIND_CHURN_WARMUP:-6000}
tenants=1000000000
replay_keys=1000
fp_hex=0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20
results=${BENCH_RESULTS:-bench/results}
command -v valgrind >/dev/null || { echo "callgrind: valgrind is not installed" >&2; exit 1; }

work=$(mktemp -d /tmp/idempotency-callgrind.XXXXXX)
chown postgres: "$work"
as_pg() { runuser -u postgres -- env PATH="$bindir:$PATH" "$@"; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() {
  as_pg pg_ctl -D "$work/data" stop -m immediate -w >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
[ -z "${CALLGRIND_KEEP-}" ] || trap - EXIT

as_pg initdb -D "$work/data" -A trust -U postgres --no-sync >/dev/null
cat >>"$work/data/postgresql.conf" <<EOF
shared_preload_libraries = 'idempotency'
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$work'
synchronous_commit = off
fsync = off
autovacuum = off
idempotency.reaper_databases = ''
${CALLGRIND_CONF-}
EOF
mkdir -p "$work/cg"; chown postgres: "$work/cg"
# Every backend is a fork of the postmaster, so each writes its own file.
cat >"$work/postgres" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --quiet --callgrind-out-file=$work/cg/%p.out $bindir/postgres "\$@"
EOF
chmod 755 "$work/postgres"
as_pg pg_ctl -D "$work/data" -l "$work/server.log" -w -t 300 -p "$work/postgres" start >/dev/null

psql_pg() { as_pg psql -X -q -h "$work" -p "$port" -U postgres "$@"; }
psql_pg -d postgres -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION idempotency CASCADE' -f bench/schema.sql >/dev/null
[ -z "${CALLGRIND_SQL-}" ] || psql_pg -d postgres -v ON_ERROR_STOP=1 -c "$CALLGRIND_SQL" >/dev/null
# the completed keys ext-replay picks from, one transaction each
psql_pg -d postgres -v ON_ERROR_STOP=1 -c "
  CREATE PROCEDURE pg_temp.fill() LANGUAGE plpgsql AS \$\$
  BEGIN
    FOR k IN 1 .. $replay_keys LOOP
      PERFORM idempotency.claim('replay', k::text, '\\x$fp_hex');
      PERFORM idempotency.complete('replay', k::text, 201, '{\"id\": \"ch_bench\"}');
      COMMIT;
    END LOOP;
  END \$\$;" -c "CALL pg_temp.fill()" >/dev/null

# wait until every backend that exited has written its whole profile
settle() {
  local last= now
  for _ in $(seq 1 100); do
    now=$(cd "$work/cg" && for f in *; do
            if [ -s "$f" ] && ! grep -q '^totals:' "$f"; then echo "$f partial"; else echo "$f"; fi
          done)
    [ "$now" = "$last" ] && [[ $now != *partial* ]] && return
    last=$now; sleep 0.5
  done
}

# instructions of the backend that ran N transactions of a case: pgbench
# opens a connection of its own first, so of the new profiles the largest
# is the client's; each is written when its backend exits
backend_ir() {
  local script=$1 n=$2 before new f best=0 ir
  settle
  before=$(ls "$work/cg")
  as_pg pgbench -n -M prepared -h "$work" -p "$port" -U postgres -c 1 -t "$n" \
    -D fingerprint="\\x$fp_hex" -D replay_keys=$replay_keys -D tenants=$tenants \
    -f "$script" postgres >"$work/pgbench.log" 2>&1 || { cat "$work/pgbench.log" >&2; exit 1; }
  # pgbench's two backends (its first connection and the client's) each
  # write their profile when they exit, which valgrind can take seconds to
  # begin on a loaded machine: wait for both, or a profile missed here
  # would be taken for the client's
  for _ in $(seq 1 240); do
    settle
    new=$(comm -13 <(echo "$before") <(ls "$work/cg"))
    [ "$(wc -w <<<"$new")" -lt 2 ] || break
    sleep 0.5
  done
  for f in $new; do
    ir=$(awk '/^totals:/ {print $2; exit}' "$work/cg/$f")
    [ "${ir:-0}" -le "$best" ] || best=$ir
  done
  [ "$best" -gt 0 ] || { echo "callgrind: no profile for $script" >&2; exit 1; }
  echo "$best"
}

mkdir -p "$results"
echo "case,instructions_per_transaction" >"$results/callgrind.csv"
for c in $cases; do
  script=bench/pgbench/$c.sql
  case $c in *-churn-*) backend_ir "$script" "$churn_warmup" >/dev/null ;; esac
  ir1=$(backend_ir "$script" "$n1")
  ir2=$(backend_ir "$script" "$n2")
  per=$(( (ir2 - ir1) / (n2 - n1) ))
  printf '%-18s %8d instructions per transaction\n' "$c" "$per"
  echo "$c,$per" >>"$results/callgrind.csv"
done

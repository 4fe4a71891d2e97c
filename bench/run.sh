#!/usr/bin/env bash
# `make bench` / `make bench-smoke`: the extension against the alternatives,
# measured side by side in one run on a throwaway cluster (issue 6).
#
#   1. set-up: Debian packages (scripts/setup-debian.sh), the extension
#      built and installed, the C drivers (bench/drivers.mk) built;
#   2. a throwaway cluster (as the postgres user, in a temp directory) and a
#      throwaway redis-server, both on free loopback ports;
#   3. throughput and latency: pgbench (bench/pgbench/*.sql) and
#      bench/redisfront, for the cases
#        floor        BEGIN; INSERT charge; COMMIT (no idempotency)
#        ceiling      the floor plus two empty statements
#        raw          the least storage work of any per-request key design,
#                     plain SQL, no safety: SELECT probe of a keys table with
#                     idempotency.keys' primary key, INSERT charge, INSERT
#                     the key row with its response (issue 12)
#        raw-expiry   raw on a keys table that also keeps each key's
#                     retention time, indexed: the least any design that
#                     expires its keys must do
#        ext-new      idempotency.claim 'new', INSERT charge, complete
#        ext-replay   idempotency.claim of a completed key (autocommit)
#        plpgsql-new  the same as ext-new with bench/plpgsql_layer.sql
#        redis-new    Redis SET NX in front, the charge in PostgreSQL
#        trusted-new, trusted-replay  ext-new and ext-replay, the same
#                     statements, against the trusted edition (trusted/)
#      one round trip per statement (rtt) and pipelined, at each number of
#      clients, in interleaved rounds; medians over the rounds, each case
#      as a ratio to the floor measured in the same round; the targets of
#      issues 6 and 12 as PASS/MISS lines;
#      then large replies: ext-large-ik422 (a claim with another
#      fingerprint, IK422) and ext-large-replay of keys whose stored body
#      is 1 kB, 1 MB and 20 MB, one client, beside ext-replay's small one;
#   4. scale: ext-new with BENCH_SCALE_ROWS keys already in the table
#      against an empty table, then the background reaper deleting those
#      keys once expired: rows per second, and the claims' p99 meanwhile;
#   5. double charges: bench/doublecharge for each design, without a fault,
#      with PostgreSQL killed and restarted, and with Redis killed and
#      restarted mid-run.
#
# Output: tables on stdout, and in $BENCH_RESULTS (default bench/results):
# results.md, throughput.png (gnuplot), the raw *.csv and the server logs.
# Exit status 1 if the extension charged twice or committed a charge
# without its key in any scenario, or if a measurement failed; a missed
# throughput target does not fail the run (speed on a shared machine is
# noisy), it is reported as MISS.
#
# Environment (defaults are the full run, about 25 minutes on 2 cores):
#   BENCH_ROUNDS=5            interleaved rounds of every case
#   BENCH_SECONDS=5           seconds per case and round
#   BENCH_CLIENTS="1 8 32"    numbers of clients (the targets are judged at 8)
#   BENCH_SCALE_ROWS=10000000 keys in the table for the scale and reaping runs
#   BENCH_DC_SECONDS=20       seconds per double-charge run
#   BENCH_SYNC_COMMIT=off     synchronous_commit: off measures CPU, not fsync
#   BENCH_CASES=              the throughput cases to run (default all; the
#                             floor always runs: every ratio is to it), e.g.
#                             "floor raw ext-new ext-replay" for more rounds
#                             of the ones a target compares in the same time
#   BENCH_RESULTS=bench/results
#   MAKE, PG_CONFIG
set -euo pipefail
cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}
PG_CONFIG=${PG_CONFIG:-pg_config}
BENCH_ROUNDS=${BENCH_ROUNDS:-5}
BENCH_SECONDS=${BENCH_SECONDS:-5}
BENCH_CLIENTS=${BENCH_CLIENTS:-1 8 32}
BENCH_SCALE_ROWS=${BENCH_SCALE_ROWS:-10000000}
BENCH_DC_SECONDS=${BENCH_DC_SECONDS:-20}
BENCH_SYNC_COMMIT=${BENCH_SYNC_COMMIT:-off}
BENCH_RESULTS=${BENCH_RESULTS:-bench/results}

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*"; }
for knob in BENCH_ROUNDS BENCH_SECONDS BENCH_SCALE_ROWS BENCH_DC_SECONDS; do
  case ${!knob} in ''|*[!0-9]*|0) die "$knob must be a positive whole number" ;; esac
done
for c in $BENCH_CLIENTS; do
  case $c in *[!0-9]*|0) die "BENCH_CLIENTS must be positive whole numbers" ;; esac
done
[ -n "${BENCH_CLIENTS// /}" ] || die "BENCH_CLIENTS is empty"
case $BENCH_SYNC_COMMIT in on|off|local|remote_write|remote_apply) ;;
  *) die "BENCH_SYNC_COMMIT is a synchronous_commit value (on, off, ...)" ;; esac
t_start=$(date +%s)

# Fixed parameters of the cases.
scale_clients=8        # the scale and reaping runs, as in issue 6
dc_clients=32          # the double-charge runs: 32 clients over 100 hot keys
dc_hot_keys=100
replay_keys=100000     # completed keys that ext-replay picks from at random
# The request's fingerprint, as the API passes it: a precomputed SHA-256
# (of nothing in particular), the same for every request.
fingerprint='\x9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'
rtt_cases=(floor ceiling raw raw-expiry ext-new ext-replay plpgsql-new redis-new trusted-new trusted-replay)
# ext-replay is a single statement: there is nothing to pipeline.
pipeline_cases=(floor ceiling raw raw-expiry ext-new plpgsql-new redis-new trusted-new)
BENCH_CASES=${BENCH_CASES:-}
if [ -n "$BENCH_CASES" ]; then
  only() { local c; for c in "$@"; do [[ " floor $BENCH_CASES " != *" $c "* ]] || echo "$c"; done; }
  mapfile -t rtt_cases < <(only "${rtt_cases[@]}")
  mapfile -t pipeline_cases < <(only "${pipeline_cases[@]}")
fi

# Everything runs in a temp directory, removed at exit with the cluster and
# Redis in it; the build and server logs are kept in the results directory.
mkdir -p "$BENCH_RESULTS"
results=$(cd "$BENCH_RESULTS" && pwd)
rm -f "$results"/*.csv "$results"/*.md "$results"/*.png "$results"/*.log
work=$(mktemp -d /tmp/idempotency-bench.XXXXXX)
chmod 755 "$work"
data=$work/data
runas=()
if [ "$(id -u)" -eq 0 ]; then   # PostgreSQL refuses to run as root
  runas=(runuser -u postgres --)
  chown postgres: "$work"
fi
children=()
cleanup() {
  local rc=$?
  for pid in "${children[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${bindir-}" ] && [ -f "$data/postmaster.pid" ]; then
    "${runas[@]}" "$bindir/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  if [ -f "$work/redis.pid" ]; then kill -9 "$(cat "$work/redis.pid")" 2>/dev/null || true; fi
  cp "$work/build.log" "$results/build.log" 2>/dev/null || true
  cp "$work/server.log" "$results/server.log" 2>/dev/null || true
  cp "$work/redis.log" "$results/redis.log" 2>/dev/null || true
  rm -rf "$work"
  [ $rc -eq 0 ] || echo "bench: failed (exit status $rc); server logs in $results" >&2
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- set-up -------------------------------------------------------------------
log "set-up: packages, the extension, the drivers (output in $results/build.log)"
bash scripts/setup-debian.sh
{ $MAKE --no-print-directory && $MAKE --no-print-directory install \
    && $MAKE --no-print-directory bench-drivers; } >"$work/build.log" 2>&1 \
  || { cat "$work/build.log"; die "the build failed"; }
bindir=$("$PG_CONFIG" --bindir)

# A loopback TCP port that nothing listens on.
free_port() {
  local port
  for _ in $(seq 50); do
    port=$(( 20000 + RANDOM % 30000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  die "found no free port on 127.0.0.1"
}
pg_port=$(free_port)
redis_port=$(free_port)
[ "$pg_port" != "$redis_port" ] || redis_port=$(free_port)

# --- the cluster -------------------------------------------------------------
# Clients connect over TCP on loopback, to PostgreSQL as to Redis, as an
# application server talks to both over the network; a Unix socket would
# flatter PostgreSQL against Redis.  The socket in $work is for psql.
"${runas[@]}" "$bindir/initdb" -D "$data" -A trust -U postgres -E UTF8 --locale=C --no-sync \
  >"$work/initdb.log" 2>&1 || { cat "$work/initdb.log"; die "initdb failed"; }
cat >>"$data/postgresql.conf" <<EOF
# bench/run.sh
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$work'
shared_preload_libraries = 'idempotency'
max_connections = 100
# The benchmark's ${BENCH_SCALE_ROWS} keys: the primary key index stays in memory,
# as it would on a production server sized for its table.
shared_buffers = '2GB'
# off: the commit does not wait for the WAL flush, so that CPU, not fsync,
# is measured (BENCH_SYNC_COMMIT).
synchronous_commit = $BENCH_SYNC_COMMIT
# No checkpoint in the middle of a case: run.sh checkpoints before each.
max_wal_size = '20GB'
checkpoint_timeout = '1h'
# No reaper until the reaping run switches it on for the scale database;
# then a round every second, of the default batch size.
idempotency.reaper_databases = ''
idempotency.reaper_naptime = 1
idempotency.reaper_batch_size = 10000
EOF
# The start and the kill of each server are scripts, so that the
# double-charge runs can inject the same faults (bench/doublecharge runs
# them with system()).
cat >"$work/pg-start" <<EOF
#!/bin/sh
exec ${runas[*]} "$bindir/pg_ctl" -D "$data" -l "$work/server.log" -w -t 600 start >/dev/null
EOF
cat >"$work/pg-kill" <<EOF
#!/bin/sh
exec ${runas[*]} "$bindir/pg_ctl" -D "$data" -m immediate -w stop >/dev/null
EOF
# Redis without persistence (--save '' --appendonly no), as it is commonly
# run as the idempotency-key cache in front of the database: what it holds
# dies with it.  (With appendfsync always it would fsync every SET, which the
# PostgreSQL cases do not do with synchronous_commit = off either.)
cat >"$work/redis-start" <<EOF
#!/bin/sh
redis-server --bind 127.0.0.1 --port $redis_port --save '' --appendonly no \\
  --daemonize yes --pidfile "$work/redis.pid" --logfile "$work/redis.log" --dir "$work"
n=0
until redis-cli -p $redis_port ping >/dev/null 2>&1; do
  n=\$((n + 1)); [ \$n -lt 200 ] || exit 1
  sleep 0.05
done
EOF
cat >"$work/redis-kill" <<EOF
#!/bin/sh
kill -9 "\$(cat "$work/redis.pid")"
n=0
while redis-cli -p $redis_port ping >/dev/null 2>&1; do
  n=\$((n + 1)); [ \$n -lt 200 ] || exit 1
  sleep 0.05
done
EOF
sh "$work/pg-start" || { cat "$work/server.log"; die "the cluster did not start"; }
sh "$work/redis-start" || { cat "$work/redis.log"; die "redis-server did not start"; }

export PGHOST=$work PGPORT=$pg_port PGUSER=postgres
sql() {  # sql DB [psql options...]: run SQL in DB, stop at the first error
  local db=$1; shift
  "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -d "$db" "$@"
}
value() {  # value DB QUERY: the result, unaligned, columns separated by spaces
  sql "$1" -At -F " " -c "$2"
}
tcp_conninfo() { echo "host=127.0.0.1 port=$pg_port user=postgres dbname=$1"; }

# Three databases, so that each can be reset by TRUNCATE: bench for the
# cases that write, replay for the completed keys ext-replay reads (no case
# writes there), scale for the table of BENCH_SCALE_ROWS keys.
log "PostgreSQL on 127.0.0.1:$pg_port (synchronous_commit = $BENCH_SYNC_COMMIT), Redis on 127.0.0.1:$redis_port (no persistence), work directory $work"
sql postgres -c 'CREATE DATABASE bench'
sql bench -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION idempotency CASCADE' \
  -f bench/schema.sql -f bench/plpgsql_layer.sql
sql postgres -c 'CREATE DATABASE replay TEMPLATE bench' -c 'CREATE DATABASE scale TEMPLATE bench'
# The trusted edition, in databases of its own: trusted_bench for
# trusted-new, trusted_replay for trusted-replay (the same keys as replay).
bash trusted/build.sh dist/trusted
sql postgres -c 'CREATE DATABASE trusted_bench'
sql trusted_bench -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION pgcrypto' \
  -f dist/trusted/idempotency.sql -f bench/schema.sql
sql postgres -c 'CREATE DATABASE trusted_replay TEMPLATE trusted_bench'

# The replayed keys are completed through the extension's own functions,
# sixteen claims per transaction: each holds its key's lock until the
# commit, and one transaction may hold only idempotency.max_key_locks (32).
for replay_db in replay trusted_replay; do
sql $replay_db <<EOF
DO \$\$
BEGIN
	FOR i IN 1..$replay_keys LOOP
		PERFORM idempotency.claim('replay', i::text, '$fingerprint');
		PERFORM idempotency.complete('replay', i::text, 201,
									 '{"id": "ch_replay", "amount": 1000}');
		IF i % 16 = 0 THEN
			COMMIT;
		END IF;
	END LOOP;
END
\$\$;
VACUUM ANALYZE idempotency.keys;
EOF
done

# --- measuring -----------------------------------------------------------------
# Every case starts from the same state: the tables the 'new' cases write
# are emptied, Redis too, and a checkpoint leaves no dirty buffers behind.
reset_state() {
  # (the keys table refuses TRUNCATE unless a superuser allows it for the session)
  sql bench -c 'SET idempotency.allow_truncate = on' \
    -c 'TRUNCATE bench.charges, handmade.keys, raw.keys, raw_expiry.keys, idempotency.keys'
  sql scale -c 'TRUNCATE bench.charges'
  sql trusted_bench -c 'SET idempotency.allow_truncate = on' -c 'TRUNCATE bench.charges, idempotency.keys'
  redis-cli -p "$redis_port" flushall >/dev/null
  sql postgres -c 'CHECKPOINT'
}

# percentiles FILE...: "p50_ms p99_ms" of the latencies in pgbench's
# per-transaction logs (third field, in microseconds); nearest rank.
percentiles() {
  awk '{ print $3 }' "$@" | sort -n | awk '
    { v[NR] = $1 }
    function rank(p,   r) { r = int(p * NR); if (r < p * NR) r++; return r < 1 ? 1 : r }
    END {
      if (NR == 0) exit 1
      printf "%.3f %.3f\n", v[rank(0.50)] / 1000, v[rank(0.99)] / 1000
    }'
}

# pgbench_run DB SCRIPT CLIENTS SECONDS LOGPREFIX: runs one pgbench, keeps
# its per-transaction logs as LOGPREFIX.*, prints its tps.
pgbench_run() {
  local db=$1 script=$2 clients=$3 seconds=$4 prefix=$5 out jobs
  jobs=$(( clients < $(nproc) ? clients : $(nproc) ))
  out=$work/pgbench.out
  if ! pgbench -n -M prepared -h 127.0.0.1 -p "$pg_port" -U postgres \
      -c "$clients" -j "$jobs" -T "$seconds" \
      -D fingerprint="$fingerprint" -D replay_keys="$replay_keys" \
      -l --log-prefix="$prefix" -f "$script" "$db" >"$out" 2>&1; then
    cat "$out" >&2; die "pgbench $script with $clients clients failed"
  fi
  awk '/^tps = / { tps = $3 } END { if (tps == "") exit 1; print tps }' "$out" \
    || { cat "$out" >&2; die "no tps in pgbench's output"; }
}

# measure CASE MODE CLIENTS SECONDS DB: one measurement, "tps p50_ms p99_ms".
measure() {
  local kase=$1 mode=$2 clients=$3 seconds=$4 db=$5 out tps latencies
  if [ "$kase" = redis-new ]; then
    out=$(bench/redisfront --pg "$(tcp_conninfo "$db")" --redis "127.0.0.1:$redis_port" \
            --clients "$clients" --seconds "$seconds" --mode "$mode" --case new) \
      || die "bench/redisfront --mode $mode --clients $clients failed: $out"
    # tps=<f> p50_ms=<f> p99_ms=<f> requests=<n> errors=<n>
    awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
           if (f["errors"] != 0) exit 1
           print f["tps"], f["p50_ms"], f["p99_ms"] }' <<<"$out" \
      || die "bench/redisfront reported errors: $out"
    return
  fi
  rm -f "$work"/lat.*
  # the trusted edition's cases run the extension's statements unchanged
  tps=$(pgbench_run "$db" "bench/pgbench/${kase/#trusted-/ext-}-$mode.sql" "$clients" "$seconds" "$work/lat")
  latencies=$(percentiles "$work"/lat.*)
  echo "$tps $latencies"
  rm -f "$work"/lat.*
}

# rotate N ITEMS...: the items, starting at the Nth (mod their number).
rotate() {
  local n=$1; shift
  local items=("$@") i
  for (( i = 0; i < ${#items[@]}; i++ )); do
    printf '%s\n' "${items[(i + n) % ${#items[@]}]}"
  done
}

# --- throughput and latency ----------------------------------------------------
# Each round runs every case once, mode by mode and clients by clients, in
# an order that rotates from round to round, so that a slow spell of the
# machine falls on different cases; each ratio is taken within one round.
csv=$results/throughput.csv
echo 'round,case,mode,clients,tps,p50_ms,p99_ms' >"$csv"
n_cases=$(( ${#rtt_cases[@]} + ${#pipeline_cases[@]} ))
n_clients=$(wc -w <<<"$BENCH_CLIENTS")
log "throughput: $BENCH_ROUNDS rounds of $(( n_cases * n_clients )) runs of ${BENCH_SECONDS} s"
for (( round = 1; round <= BENCH_ROUNDS; round++ )); do
  for clients in $BENCH_CLIENTS; do
    for mode in rtt pipeline; do
      if [ $mode = rtt ]; then cases=("${rtt_cases[@]}"); else cases=("${pipeline_cases[@]}"); fi
      for kase in $(rotate "$round" "${cases[@]}"); do
        case $kase in
          ext-replay) db=replay ;; trusted-new) db=trusted_bench ;; trusted-replay) db=trusted_replay ;;
          *) db=bench ;;
        esac
        reset_state
        result=$(measure "$kase" "$mode" "$clients" "$BENCH_SECONDS" "$db")
        read -r tps p50 p99 <<<"$result"
        printf '%s,%s,%s,%s,%s,%s,%s\n' "$round" "$kase" "$mode" "$clients" "$tps" "$p50" "$p99" >>"$csv"
        printf 'bench: round %d  %-11s %-8s %2d clients  %9.0f tps  p50 %7.3f ms  p99 %7.3f ms\n' \
          "$round" "$kase" "$mode" "$clients" "$tps" "$p50" "$p99"
      done
    done
  done
done

# --- large replies ---------------------------------------------------------------
# What the size of a stored reply costs the answers that read it (a
# replay, once) and those that do not (IK422, settled by the fingerprint):
# one completed key per size in the replay database, its body a string
# that does not compress, one client, BENCH_ROUNDS rounds.
large_sizes=(1kB 1MB 20MB)
sql replay <<EOF
CREATE FUNCTION bench.claim_outcome(scope text, key text, fingerprint bytea)
RETURNS text LANGUAGE plpgsql AS \$\$
BEGIN
	RETURN (idempotency.claim(scope, key, fingerprint)).outcome;
EXCEPTION WHEN SQLSTATE 'IK422' THEN
	RETURN 'IK422';
END
\$\$;
DO \$\$
DECLARE
	size text;
BEGIN
	FOREACH size IN ARRAY ARRAY['${large_sizes[0]}', '${large_sizes[1]}', '${large_sizes[2]}'] LOOP
		PERFORM idempotency.claim('large', size, '$fingerprint');
		PERFORM idempotency.complete('large', size, 201,
			(SELECT jsonb_build_object('blob', string_agg(md5(i::text), ''))
			   FROM generate_series(1, pg_size_bytes(size) / 32) AS i));
		COMMIT;
	END LOOP;
END
\$\$;
EOF
large_csv=$results/large_replies.csv
echo 'round,case,size,tps,p50_ms,p99_ms' >"$large_csv"
for (( round = 1; round <= BENCH_ROUNDS; round++ )); do
  for size in "${large_sizes[@]}"; do
    for kase in $(rotate "$round" ext-large-ik422 ext-large-replay); do
      rm -f "$work"/lat.*
      out=$work/pgbench.out
      if ! pgbench -n -M prepared -h 127.0.0.1 -p "$pg_port" -U postgres -c 1 -j 1 \
          -T "$BENCH_SECONDS" -D fingerprint="$fingerprint" -D size="$size" \
          -l --log-prefix="$work/lat" -f "bench/pgbench/$kase-rtt.sql" replay >"$out" 2>&1; then
        cat "$out" >&2; die "pgbench $kase on the $size reply failed"
      fi
      tps=$(awk '/^tps = / { tps = $3 } END { if (tps == "") exit 1; print tps }' "$out") \
        || { cat "$out" >&2; die "no tps in pgbench's output"; }
      read -r p50 p99 <<<"$(percentiles "$work"/lat.*)"
      rm -f "$work"/lat.*
      printf '%s,%s,%s,%s,%s,%s\n' "$round" "$kase" "$size" "$tps" "$p50" "$p99" >>"$large_csv"
      printf 'bench: round %d  %-16s %5s reply  %9.0f tps  p50 %8.3f ms  p99 %8.3f ms\n' \
        "$round" "$kase" "$size" "$tps" "$p50" "$p99"
    done
  done
done

# --- scale -----------------------------------------------------------------------
# BENCH_SCALE_ROWS completed keys, written directly (as superuser, not
# through the extension: a week of traffic in a minute or two), as the
# benchmark's own completions store them (the same fingerprint and
# response) and timed like keys of a week ago: first seen 8 to 7 days ago,
# replayable for a day, retained for 7 days, so that their retention has
# just ended.  They stay until the reaping run switches the reaper on for
# this database.  Their keys are 63-bit numbers spread like the benchmark's
# random ones (an odd multiplier is a bijection modulo 2^63, so they are
# distinct), so that a claim lands among them in the primary key's index as
# it would among real keys, not in a corner of its own.
log "scale: loading $BENCH_SCALE_ROWS completed keys"
t0=$(date +%s)
sql scale -v rows="$BENCH_SCALE_ROWS" -v since='8 days' -v fingerprint="$fingerprint" -f bench/load-keys.sql
sql scale -c 'VACUUM ANALYZE idempotency.keys'
scale_load_s=$(( $(date +%s) - t0 ))
scale_size=$(value scale "SELECT pg_size_pretty(pg_total_relation_size('idempotency.keys'))")
log "scale: loaded in ${scale_load_s} s, idempotency.keys is $scale_size"

# ext-new against the empty table (database bench, emptied before each run)
# and the full one (scale, which also keeps the keys that earlier runs
# added: a few hundred thousand at most), alternating within each round.
scale_csv=$results/scale.csv
echo 'round,table,tps,p50_ms,p99_ms' >"$scale_csv"
for (( round = 1; round <= BENCH_ROUNDS; round++ )); do
  for table in $(rotate "$round" empty full); do
    db=bench; [ "$table" = empty ] || db=scale
    reset_state
    result=$(measure ext-new rtt "$scale_clients" "$BENCH_SECONDS" "$db")
    read -r tps p50 p99 <<<"$result"
    printf '%s,%s,%s,%s,%s\n' "$round" "$table" "$tps" "$p50" "$p99" >>"$scale_csv"
    printf 'bench: round %d  ext-new rtt %d clients, %-5s table  %9.0f tps  p50 %7.3f ms  p99 %7.3f ms\n' \
      "$round" "$scale_clients" "$table" "$tps" "$p50" "$p99"
  done
done

# --- reaping ---------------------------------------------------------------------
# The background reaper is switched on for the scale database, whose
# BENCH_SCALE_ROWS keys are all past retention; its first round deletes
# batches until one comes back short, and counts the rows in
# idempotency.stats when it ends: the time from the switch to that count
# (its last_reap) is the time to reap them all, checked with count(*)
# afterwards.  Meanwhile pgbench runs ext-new on the same table, in
# BENCH_SECONDS runs back to back; the claims that completed between the
# switch and the end of the reaping give the latencies while it runs.
reset_state
rm -f "$work/reaping.done"
(
  run=0
  while [ ! -e "$work/reaping.done" ]; do
    run=$((run + 1))
    pgbench_run scale bench/pgbench/ext-new-rtt.sql "$scale_clients" "$BENCH_SECONDS" \
      "$work/reaplat.$run" >/dev/null
  done
) &
claims_pid=$!
children+=("$claims_pid")
sleep 1   # the claims are under way before the reaper starts
reap_start=$(value scale "SELECT extract(epoch FROM clock_timestamp())")
sql scale -c "ALTER SYSTEM SET idempotency.reaper_databases = 'scale'" -c 'SELECT pg_reload_conf()' >/dev/null
log "reaping: the reaper is on for database scale, with $BENCH_SCALE_ROWS keys past retention"
deadline=$(( $(date +%s) + 600 + BENCH_SCALE_ROWS / 2000 ))
while :; do
  counts=$(value scale "SELECT coalesce(sum(reaped_rows), 0), coalesce(extract(epoch FROM max(last_reap)), 0)
                          FROM idempotency.stats WHERE database = 'scale'")
  read -r reaped reap_end <<<"$counts"
  [ "$reaped" -lt "$BENCH_SCALE_ROWS" ] || break
  [ "$(date +%s)" -lt "$deadline" ] || die "the reaper deleted $reaped of $BENCH_SCALE_ROWS rows before the deadline"
  sleep 0.2
done
touch "$work/reaping.done"
wait "$claims_pid" || die "the claims during the reaping failed"
sql scale -c "ALTER SYSTEM RESET idempotency.reaper_databases" -c 'SELECT pg_reload_conf()' >/dev/null
left=$(value scale "SELECT count(*) FROM idempotency.keys WHERE retain_until <= now()")
[ "$left" -eq 0 ] || die "$left expired rows are left after the reaper's round"
awk -v start="$reap_start" -v end="$reap_end" '
  { t = $5 + $6 / 1e6 } t >= start && t <= end' "$work"/reaplat.* >"$work/during-reaping"
claims_during=$(wc -l <"$work/during-reaping")
latencies=$(percentiles "$work/during-reaping") || die "no claim completed while the reaper ran"
reap_csv=$results/reaping.csv
awk -v rows="$BENCH_SCALE_ROWS" -v start="$reap_start" -v end="$reap_end" -v n="$claims_during" -v lat="$latencies" '
  BEGIN {
    split(lat, l, " "); s = end - start
    print "rows,seconds,rows_per_s,claims_tps,claims_p50_ms,claims_p99_ms"
    printf "%d,%.1f,%.0f,%.0f,%s,%s\n", rows, s, rows / s, n / s, l[1], l[2]
  }' >"$reap_csv"
log "reaping: $(tail -n1 "$reap_csv")"

# --- double charges --------------------------------------------------------------
# bench/doublecharge: 32 clients over 100 hot keys, retrying as real clients
# do, for each design; then the same with PostgreSQL killed (immediate
# stop, as a crash) and restarted mid-run, and with Redis killed (kill -9)
# and restarted mid-run.  The Redis fault concerns the Redis design only:
# the other two do not use Redis.  Each run has a scope of its own.
dc_csv=$results/doublecharge.csv
echo 'scenario,design,requests,charges,double_charges,charges_without_key,errors' >"$dc_csv"
fault_at=$(( BENCH_DC_SECONDS / 2 ))
dc_run() {  # dc_run SCENARIO DESIGN [FAULT OPTIONS...]
  local scenario=$1 design=$2 out redis=(); shift 2
  [ "$design" != redis ] || redis=(--redis "127.0.0.1:$redis_port")
  sql postgres -c CHECKPOINT   # a short recovery after the kill
  out=$(bench/doublecharge --design "$design" --pg "$(tcp_conninfo bench)" "${redis[@]}" \
          --clients "$dc_clients" --hot-keys "$dc_hot_keys" \
          --seconds "$BENCH_DC_SECONDS" "$@" 2>"$work/doublecharge.err") \
    || { cat "$work/doublecharge.err"; die "bench/doublecharge --design $design ($scenario) failed"; }
  # design=<d> requests=<n> charges=<n> double_charges=<n> charges_without_key=<n> errors=<n>
  awk -v scenario="$scenario" '{
      for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
      print scenario "," f["design"] "," f["requests"] "," f["charges"] "," \
            f["double_charges"] "," f["charges_without_key"] "," f["errors"] }' <<<"$out" >>"$dc_csv"
  log "double charges, $scenario: $out"
  # A fault run must leave both servers up, or the next runs measure nothing.
  "$bindir/pg_isready" -q -h 127.0.0.1 -p "$pg_port" || die "PostgreSQL is down after $scenario"
  redis-cli -p "$redis_port" ping >/dev/null || die "Redis is down after $scenario"
}
for design in extension plpgsql redis; do
  dc_run "no fault" "$design"
done
for design in extension plpgsql redis; do
  dc_run "PostgreSQL killed" "$design" --fault-at "$fault_at" \
    --fault-cmd "sh $work/pg-kill" --restart-cmd "sh $work/pg-start"
done
dc_run "Redis killed" redis --fault-at "$fault_at" \
  --fault-cmd "sh $work/redis-kill" --restart-cmd "sh $work/redis-start"

# --- report ----------------------------------------------------------------------
# The raw measurements go into the cluster, which takes the medians
# (percentile_cont) and the per-round ratios; the tables come out as CSV
# and are laid out as markdown, printed and written to results.md.
sql postgres <<'EOF'
CREATE SCHEMA report;
CREATE TABLE report.throughput (round int, kase text, mode text, clients int,
								tps float8, p50_ms float8, p99_ms float8);
CREATE TABLE report.scale (round int, tbl text, tps float8, p50_ms float8, p99_ms float8);
CREATE TABLE report.reaping (rows bigint, seconds float8, rows_per_s float8,
							 claims_tps float8, claims_p50_ms float8, claims_p99_ms float8);
CREATE TABLE report.large (round int, kase text, size text, tps float8, p50_ms float8,
						   p99_ms float8);
CREATE TABLE report.doublecharge (scenario text, design text, requests bigint, charges bigint,
								  double_charges bigint, charges_without_key bigint, errors bigint);

-- The median over the rounds of a's throughput (or p50 or p99 latency)
-- over b's in the same round.
CREATE FUNCTION report.ratio(a text, b text, m text, c int, metric text DEFAULT 'tps')
RETURNS float8
LANGUAGE sql STABLE AS $$
	SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY
			CASE metric WHEN 'tps' THEN x.tps / y.tps
						WHEN 'p50' THEN x.p50_ms / y.p50_ms
						WHEN 'p99' THEN x.p99_ms / y.p99_ms END)
	  FROM report.throughput x JOIN report.throughput y USING (round, mode, clients)
	 WHERE x.kase = a AND y.kase = b AND mode = m AND clients = c
$$;
CREATE FUNCTION report.case_order(kase text) RETURNS int
LANGUAGE sql IMMUTABLE AS $$
	SELECT array_position(ARRAY['floor', 'ceiling', 'raw', 'raw-expiry', 'ext-new', 'ext-replay',
								'plpgsql-new', 'redis-new', 'trusted-new', 'trusted-replay'], kase)
$$;
EOF
sql postgres -c 'COPY report.throughput FROM STDIN (FORMAT csv, HEADER)' <"$csv"
sql postgres -c 'COPY report.scale FROM STDIN (FORMAT csv, HEADER)' <"$scale_csv"
sql postgres -c 'COPY report.reaping FROM STDIN (FORMAT csv, HEADER)' <"$reap_csv"
sql postgres -c 'COPY report.doublecharge FROM STDIN (FORMAT csv, HEADER)' <"$dc_csv"
sql postgres -c 'COPY report.large FROM STDIN (FORMAT csv, HEADER)' <"$large_csv"

query_csv() { sql postgres --csv -c "$1"; }   # query_csv QUERY: the result as CSV
# md_table: CSV on stdin (no quoted fields) as a markdown table, the columns
# padded to their width so that it reads as well on a terminal; numeric
# columns are right-aligned.
md_table() {
  awk -F, '
    { for (i = 1; i <= NF; i++) {
        cell[NR, i] = $i
        if (length($i) > w[i]) w[i] = length($i)
        if (NR > 1 && $i !~ /^-?[0-9.]+$/) text[i] = 1
      }
      if (NF > nf) nf = NF }
    function repeat(s, n,   r) { r = ""; while (n-- > 0) r = r s; return r }
    function pad(s, i) { return text[i] ? s repeat(" ", w[i] - length(s)) : repeat(" ", w[i] - length(s)) s }
    END {
      for (i = 1; i <= nf; i++) if (w[i] < 3) w[i] = 3
      for (r = 1; r <= NR; r++) {
        line = "|"
        for (i = 1; i <= nf; i++) line = line " " pad(cell[r, i], i) " |"
        print line
        if (r > 1) continue
        line = "|"
        for (i = 1; i <= nf; i++) line = line " " (text[i] ? repeat("-", w[i]) : repeat("-", w[i] - 1) ":") " |"
        print line
      }
    }'
}

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
ram=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
pg_version=$(value postgres 'SHOW server_version')
redis_version=$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')

# Targets of issues 6 and 12, judged at 8 clients; the other numbers of
# clients are shown for reference.
targets=$(query_csv "
SELECT target, clients, measured, needed, result FROM (
SELECT t.ord, t.target, c.clients, round(r.ratio::numeric, 2) AS measured, '>= ' || t.needed AS needed,
	   CASE WHEN c.clients <> 8 THEN CASE WHEN r.ratio >= t.needed THEN 'pass' ELSE 'miss' END || ' (not judged)'
			WHEN r.ratio >= t.needed THEN 'PASS' ELSE 'MISS' END AS result
  FROM (VALUES (1, 'pipeline: ext-new / floor', 'ext-new', 'floor', 'pipeline', 0.75),
			   (2, 'rtt: ext-new / ceiling', 'ext-new', 'ceiling', 'rtt', 0.9),
			   (3, 'rtt: ext-new / redis-new', 'ext-new', 'redis-new', 'rtt', 1.0),
			   (4, 'rtt: ext-replay / floor', 'ext-replay', 'floor', 'rtt', 2.0),
			   (6, 'rtt: ext-new / raw', 'ext-new', 'raw', 'rtt', 0.97),
			   (7, 'pipeline: ext-new / raw', 'ext-new', 'raw', 'pipeline', 0.97),
			   (8, 'rtt: trusted-new / ext-new', 'trusted-new', 'ext-new', 'rtt', 0.75),
			   (9, 'rtt: trusted-replay / ext-replay', 'trusted-replay', 'ext-replay', 'rtt', 0.9))
	   AS t (ord, target, a, b, mode, needed)
 CROSS JOIN (SELECT DISTINCT clients FROM report.throughput) AS c
 CROSS JOIN LATERAL (SELECT report.ratio(t.a, t.b, t.mode, c.clients) AS ratio) AS r
 WHERE r.ratio IS NOT NULL   -- a case left out by BENCH_CASES
UNION ALL
SELECT 5, 'scale: ext-new $BENCH_SCALE_ROWS keys / empty', $scale_clients, round(s.ratio::numeric, 2), '>= 0.85',
	   CASE WHEN s.ratio >= 0.85 THEN 'PASS' ELSE 'MISS' END
  FROM (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY f.tps / e.tps) AS ratio
		  FROM report.scale f JOIN report.scale e USING (round)
		 WHERE f.tbl = 'full' AND e.tbl = 'empty') AS s
) AS targets ORDER BY ord, clients <> 8, clients")

md=$results/results.md
{
  echo "# make bench: results"
  echo
  echo "Measured by \`make bench\` (bench/run.sh) on $(date -u '+%Y-%m-%d %H:%M UTC'), in $(( ($(date +%s) - t_start + 30) / 60 )) minutes."
  echo
  echo "## Machine and settings"
  echo
  echo "- $(nproc) CPUs: ${cpu:-unknown model}; $ram of RAM; Linux $(uname -r)"
  echo "- PostgreSQL $pg_version: synchronous_commit = $BENCH_SYNC_COMMIT, shared_buffers = 2GB,"
  echo "  max_wal_size = 20GB (a checkpoint before each run, none during it)"
  echo "- Redis $redis_version without persistence (--save '' --appendonly no), as the key cache is"
  echo "  commonly run; what it holds is lost when it dies"
  echo "- every client on this machine, over TCP on loopback to both servers; pgbench -M prepared,"
  echo "  -j min(clients, CPUs); bench/redisfront one thread per client"
  echo "- $BENCH_ROUNDS interleaved rounds of ${BENCH_SECONDS} s per case; medians over the rounds"
  [ -z "$BENCH_CASES" ] || echo "- the cases of BENCH_CASES only: ${rtt_cases[*]} (rtt), ${pipeline_cases[*]} (pipeline)"
  echo
  echo "## Throughput and latency"
  echo
  echo "rtt: one round trip per statement. pipeline: the transaction's statements in one pipeline"
  echo "(pgbench \\startpipeline; for redis-new the PostgreSQL part, its Redis commands are one round"
  echo "trip each). x_floor: the median over rounds of the case's tps over the floor's in the same"
  echo "round, mode and clients; p50_x_floor and p99_x_floor the same for its latencies (above 1:"
  echo "slower than the floor). x_raw: the same over raw, the least storage work of any"
  echo "per-request key design (a SELECT probe, the charge, an INSERT of the key row; no safety)."
  echo "x_raw_expiry: the same over raw-expiry, raw whose keys table also keeps a retention time,"
  echo "indexed, as any design that expires its keys must."
  echo "Latencies are per transaction (per request for redis-new)."
  echo
  query_csv "
SELECT mode, clients, kase AS case,
	   round(percentile_cont(0.5) WITHIN GROUP (ORDER BY tps)) AS tps,
	   round(report.ratio(kase, 'floor', mode, clients)::numeric, 2) AS x_floor,
	   round(report.ratio(kase, 'raw', mode, clients)::numeric, 2) AS x_raw,
	   round(report.ratio(kase, 'raw-expiry', mode, clients)::numeric, 2) AS x_raw_expiry,
	   round(percentile_cont(0.5) WITHIN GROUP (ORDER BY p50_ms)::numeric, 3) AS p50_ms,
	   round(report.ratio(kase, 'floor', mode, clients, 'p50')::numeric, 2) AS p50_x_floor,
	   round(percentile_cont(0.5) WITHIN GROUP (ORDER BY p99_ms)::numeric, 3) AS p99_ms,
	   round(report.ratio(kase, 'floor', mode, clients, 'p99')::numeric, 2) AS p99_x_floor
  FROM report.throughput
 GROUP BY mode, clients, kase
 ORDER BY mode DESC, clients, report.case_order(kase)" | md_table
  echo
  echo "![throughput relative to the floor](throughput.png)"
  echo
  echo "## Targets"
  echo
  echo "Ratios of throughput (medians of per-round ratios), judged at 8 clients."
  echo
  md_table <<<"$targets"
  echo
  echo "## Large replies"
  echo
  echo "rtt, 1 client: a claim with another fingerprint (IK422, settled without reading the reply)"
  echo "and a replay (the reply read once and sent) of a key whose stored body is 1 kB, 1 MB or"
  echo "20 MB; the first row is ext-replay above, the benchmark's 40-byte reply, for comparison."
  echo "Medians over the rounds."
  echo
  query_csv "
SELECT kase AS case, size,
	   round(percentile_cont(0.5) WITHIN GROUP (ORDER BY tps)) AS tps,
	   round(percentile_cont(0.5) WITHIN GROUP (ORDER BY p50_ms)::numeric, 3) AS p50_ms,
	   round(percentile_cont(0.5) WITHIN GROUP (ORDER BY p99_ms)::numeric, 3) AS p99_ms
  FROM (SELECT kase, '40B' AS size, tps, p50_ms, p99_ms FROM report.throughput
		 WHERE kase = 'ext-replay' AND mode = 'rtt' AND clients = 1
		UNION ALL
		SELECT kase, size, tps, p50_ms, p99_ms FROM report.large) AS l
 GROUP BY kase, size
 ORDER BY CASE size WHEN '40B' THEN 40 ELSE pg_size_bytes(size) END, kase" | md_table
  echo
  echo "## Scale"
  echo
  echo "ext-new, rtt, $scale_clients clients: an empty idempotency.keys against one holding $BENCH_SCALE_ROWS"
  echo "completed keys ($scale_size with its indexes, loaded in ${scale_load_s} s), alternating in each round."
  echo
  query_csv "
SELECT CASE tbl WHEN 'empty' THEN 'empty' ELSE '$BENCH_SCALE_ROWS keys' END AS table,
	   round(percentile_cont(0.5) WITHIN GROUP (ORDER BY tps)) AS tps,
	   round(percentile_cont(0.5) WITHIN GROUP (ORDER BY p50_ms)::numeric, 3) AS p50_ms,
	   round(percentile_cont(0.5) WITHIN GROUP (ORDER BY p99_ms)::numeric, 3) AS p99_ms
  FROM report.scale GROUP BY tbl ORDER BY tbl" | md_table
  echo
  echo "## Reaping"
  echo
  echo "The background reaper (idempotency.reaper_naptime = 1, reaper_batch_size = 10000) switched"
  echo "on for the $BENCH_SCALE_ROWS expired keys, timed until its round ended (last_reap in"
  echo "idempotency.stats), with ext-new claims at $scale_clients clients running on the same table"
  echo "meanwhile; their latencies without the reaper are those of the scale table above."
  echo
  query_csv "
SELECT r.rows, round(r.seconds::numeric, 1) AS seconds, round(r.rows_per_s) AS rows_per_s,
	   round(r.claims_tps) AS claims_tps, r.claims_p50_ms, r.claims_p99_ms,
	   (SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY p99_ms)::numeric, 3)
		  FROM report.scale WHERE tbl = 'full') AS p99_ms_without_reaping
  FROM report.reaping r" | md_table
  echo
  echo "## Double charges"
  echo
  echo "bench/doublecharge: $dc_clients clients over $dc_hot_keys hot keys for ${BENCH_DC_SECONDS} s per run,"
  echo "retrying as clients do; the faults at ${fault_at} s. double_charges: charges beyond the first"
  echo "of a key; charges_without_key: committed charges with no stored response for their key."
  echo "Redis killed concerns the Redis design only."
  echo
  query_csv 'SELECT * FROM report.doublecharge' | md_table
} >"$md"

# --- chart ---------------------------------------------------------------------
# Two panels, rtt and pipeline: per case, one bar per number of clients,
# the throughput as a ratio to the floor (the dashed line).
for mode in rtt pipeline; do
  query_csv "
SELECT kase AS case, string_agg(round(report.ratio(kase, 'floor', mode, clients)::numeric, 2)::text,
								' ' ORDER BY clients) AS ratios
  FROM (SELECT DISTINCT kase, mode, clients FROM report.throughput WHERE mode = '$mode') AS m
 GROUP BY kase ORDER BY report.case_order(kase)" \
    | awk -F, -v clients="$BENCH_CLIENTS" '
        NR == 1 { n = split(clients, c, " "); printf "case"
                  for (i = 1; i <= n; i++) printf " \"%s client%s\"", c[i], c[i] == 1 ? "" : "s"
                  print ""; next }
        { print $1, $2 }' >"$work/$mode.dat"
done
gnuplot <<EOF
set terminal pngcairo size 1600,640 font ',11' noenhanced
set output '$results/throughput.png'
set multiplot layout 1,2 title "make bench: throughput as a ratio to the floor, median of $BENCH_ROUNDS rounds of ${BENCH_SECONDS} s ($(nproc) CPUs, synchronous_commit = $BENCH_SYNC_COMMIT)"
set key autotitle columnhead top left
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 1
set yrange [0:*]
set offsets 0, 0, graph 0.08, 0
set grid ytics
set ylabel 'throughput / floor'
set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead dashtype 2 linewidth 1.5
# The value labels: bar i (data column i, from 2) of cluster \$0 is centred
# at barx(i), a cluster being n bars and a gap of one bar in one unit of x.
# The floor's bars are 1 by definition and go unlabelled.
n = $n_clients
barx(i) = column(0) + (i - 2 - (n - 1) / 2.0) / (n + 1.0)
set title 'one round trip per statement (rtt)'
plot for [i=2:n+1] '$work/rtt.dat' using i:xtic(1), \\
     for [i=2:n+1] '' using (barx(i)):i:(strcol(1) eq 'floor' ? '' : sprintf('%.2f', column(i))) with labels offset 0,0.7 font ',8' notitle
set title 'the transaction in one pipeline'
plot for [i=2:n+1] '$work/pipeline.dat' using i:xtic(1), \\
     for [i=2:n+1] '' using (barx(i)):i:(strcol(1) eq 'floor' ? '' : sprintf('%.2f', column(i))) with labels offset 0,0.7 font ',8' notitle
unset multiplot
EOF

cat "$md"
echo

# --- verdict ---------------------------------------------------------------------
# The extension must never charge twice nor commit a charge without its key,
# and each of its runs must have charged something to prove it.
bad=$(query_csv "SELECT scenario, requests, charges, double_charges, charges_without_key
                   FROM report.doublecharge
                  WHERE design = 'extension'
                    AND (double_charges <> 0 OR charges_without_key <> 0 OR charges = 0)" | tail -n +2)
log "took $(( $(date +%s) - t_start )) s; results in $results"
if [ -n "$bad" ]; then
  echo "bench: FAIL: the extension charged twice, or without a stored key, or nothing, in:"
  printf '%s\n' "$bad"
  exit 1
fi
log "the extension: no double charge and no charge without its key, in every scenario"

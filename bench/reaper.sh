#!/usr/bin/env bash
# `make bench-reaper` (issue 13): the claims' latency while the background
# reaper deletes a backlog of REAPER_ROWS (10 million) expired keys at its
# default throttle, against their latency without reaping, and the rate it
# reaps at; all in one run on one throwaway cluster, so that the ratios
# compare like with like on a shared machine.
#
#   1. build and install (bench/bench.mk runs this in a private overlay of
#      the PostgreSQL directories: scripts/private-install.sh);
#   2. a throwaway cluster with bench/run.sh's settings; database reap holds
#      REAPER_ROWS completed keys past retention, written directly with
#      INSERT ... SELECT generate_series as run.sh's scale table is, and
#      database quiet an empty keys table;
#   3. without reaping (the reaper off): ext-new claims, REAPER_CLIENTS
#      clients, pgbench runs of REAPER_SLICE s alternating between the two
#      databases, REAPER_BASELINE s of each: "backlog, not reaped" (the same
#      table the reaper will work on) and "no backlog" (the empty table);
#   4. reaping: the reaper switched on for database reap with its default
#      throttle and batch size (idempotency.reaper_rows_per_second,
#      reaper_batch_size: only the naptime is 1 s, so that it starts at
#      once), the same claims running on the same table back to back until
#      idempotency.stats counts every row reaped; the claims that ran
#      between the switch and the reaper's last run give the latencies
#      while reaping, its progress the rate (overall, and between 10 % and
#      90 % of the backlog, without the start);
#   5. after reaping: the same alternation again (the reaper on and idle,
#      autovacuum cleaning up after it, as it would in production).
#
# Targets (issue 13): the claims' p99 while reaping at most 1.5x their p99
# without reaping; at least 10,000 rows/s at the default throttle.  A
# missed target is reported as MISS, not failed; a measurement that fails,
# or expired rows left behind, fails the run.
#
# Environment: REAPER_ROWS (10000000), REAPER_CLIENTS (8), REAPER_SLICE (5),
# REAPER_BASELINE (30: seconds of each baseline, per database and phase),
# REAPER_CONF (lines added to postgresql.conf, e.g. a throttle to compare),
# BENCH_SYNC_COMMIT (off), BENCH_RESULTS (bench/results: this writes
# bench/results/reaper/), MAKE, PG_CONFIG.  About 15 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}
PG_CONFIG=${PG_CONFIG:-pg_config}
REAPER_ROWS=${REAPER_ROWS:-10000000}
REAPER_CLIENTS=${REAPER_CLIENTS:-8}
REAPER_SLICE=${REAPER_SLICE:-5}
REAPER_BASELINE=${REAPER_BASELINE:-30}
BENCH_SYNC_COMMIT=${BENCH_SYNC_COMMIT:-off}
die() { echo "bench-reaper: $*" >&2; exit 1; }
log() { echo "bench-reaper: $(date -u +%H:%M:%S) $*"; }
for knob in REAPER_ROWS REAPER_CLIENTS REAPER_SLICE REAPER_BASELINE; do
  case ${!knob} in ''|*[!0-9]*|0) die "$knob must be a positive whole number" ;; esac
done
[ "$(id -u)" -eq 0 ] || die "run as root (the cluster runs as the postgres user)"
t_start=$(date +%s)
fingerprint='\x9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'
mkdir -p "${BENCH_RESULTS:-bench/results}/reaper"
results=$(cd "${BENCH_RESULTS:-bench/results}/reaper" && pwd)
rm -f "$results"/*.csv "$results"/*.md "$results"/*.log
bench_name=reaper
. bench/cluster.sh
bench_cluster_start <<EOF
max_connections = 100
# the reaper off until the reaping phase switches it on for database reap;
# its throttle and batch size are the defaults
idempotency.reaper_databases = ''
idempotency.reaper_naptime = 1
${REAPER_CONF-}
EOF

sql postgres -c 'CREATE DATABASE quiet'
sql quiet -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION idempotency CASCADE' -f bench/schema.sql
sql postgres -c 'CREATE DATABASE reap TEMPLATE quiet'
throttle=$(value reap 'SHOW idempotency.reaper_rows_per_second')
batch=$(value reap 'SHOW idempotency.reaper_batch_size')

# The backlog: run.sh's scale keys (spread over the primary key's index like
# random ones), every one past retention -- retained until between a day
# ago and now.
log "loading $REAPER_ROWS expired keys into database reap"
t0=$(date +%s)
sql reap -v rows="$REAPER_ROWS" -v since='8 days' -v fingerprint="$fingerprint" -f bench/load-keys.sql
sql reap -c 'VACUUM ANALYZE idempotency.keys'
load_s=$(( $(date +%s) - t0 ))
size=$(value reap "SELECT pg_size_pretty(pg_total_relation_size('idempotency.keys'))")
expired=$(value reap "SELECT count(*) FROM idempotency.keys WHERE retain_until <= now()")
[ "$expired" -eq "$REAPER_ROWS" ] || die "$expired of $REAPER_ROWS keys are past retention"
log "loaded in ${load_s} s: idempotency.keys is $size"

# pgbench_run DB SECONDS LOGPREFIX: ext-new claims, one round trip per
# statement; per-transaction logs LOGPREFIX.*; prints the tps.
pgbench_run() {
  local out=$work/pgbench.$$.$RANDOM jobs
  jobs=$(( REAPER_CLIENTS < $(nproc) ? REAPER_CLIENTS : $(nproc) ))
  if ! pgbench -n -M prepared -h 127.0.0.1 -p "$port" -U postgres -c "$REAPER_CLIENTS" -j "$jobs" \
      -T "$2" -D fingerprint="$fingerprint" -l --log-prefix="$3" \
      -f bench/pgbench/ext-new-rtt.sql "$1" >"$out" 2>&1; then
    cat "$out" >&2; die "pgbench on $1 failed"
  fi
  awk '/^tps = / { print $3 }' "$out"; rm -f "$out"
}
# percentiles FILE...: "n p50_ms p99_ms" of pgbench's per-transaction logs
percentiles() {
  awk '{ print $3 }' "$@" | sort -n | awk '
    { v[NR] = $1 }
    function rank(p,   r) { r = int(p * NR); if (r < p * NR) r++; return r < 1 ? 1 : r }
    END { if (NR == 0) exit 1
          printf "%d %.3f %.3f\n", NR, v[rank(0.50)] / 1000, v[rank(0.99)] / 1000 }'
}
mkdir -p "$work/lat"; chmod 777 "$work/lat"
slices_csv=$results/slices.csv
echo 'phase,database,slice,tps,p50_ms,p99_ms' >"$slices_csv"
# baseline PHASE: REAPER_BASELINE s on each database, in alternating slices
baseline() {
  local phase=$1 n=$(( (REAPER_BASELINE + REAPER_SLICE - 1) / REAPER_SLICE )) i db tps
  for (( i = 1; i <= n; i++ )); do
    for db in $( ((i % 2)) && echo quiet reap || echo reap quiet ); do
      sql postgres -c CHECKPOINT
      tps=$(pgbench_run "$db" "$REAPER_SLICE" "$work/lat/$phase.$db.$i")
      read -r _ p50 p99 <<<"$(percentiles "$work/lat/$phase.$db.$i".*)"
      echo "$phase,$db,$i,$tps,$p50,$p99" >>"$slices_csv"
      log "$phase: $db slice $i: $(printf %.0f "$tps") tps, p50 $p50 ms, p99 $p99 ms"
    done
  done
}
log "without reaping: ${REAPER_BASELINE} s on each database, ${REAPER_SLICE} s slices"
baseline before

# --- reaping ---------------------------------------------------------------------
sql postgres -c CHECKPOINT
rm -f "$work/reaping.done"
(
  i=0
  while [ ! -e "$work/reaping.done" ]; do
    i=$((i + 1))
    pgbench_run reap "$REAPER_SLICE" "$work/lat/reaping.$i" >/dev/null
  done
) &
claims_pid=$!
children+=("$claims_pid")
sleep 1   # the claims are under way before the reaper starts
reap_start=$(value reap "SELECT extract(epoch FROM clock_timestamp())")
sql reap -c "ALTER SYSTEM SET idempotency.reaper_databases = 'reap'" -c 'SELECT pg_reload_conf()' >/dev/null
log "reaping: the reaper is on for database reap (reaper_rows_per_second = $throttle, reaper_batch_size = $batch)"
progress_csv=$results/progress.csv
echo 'seconds,reaped_rows' >"$progress_csv"
deadline=$(( $(date +%s) + 600 + REAPER_ROWS / 2000 ))
while :; do
  read -r now reaped reap_end <<<"$(value reap "
    SELECT extract(epoch FROM clock_timestamp()), coalesce(sum(reaped_rows), 0),
           coalesce(extract(epoch FROM max(last_reap)), 0)
      FROM idempotency.stats WHERE database = 'reap'")"
  awk -v t="$now" -v s="$reap_start" -v r="$reaped" 'BEGIN { printf "%.2f,%d\n", t - s, r }' >>"$progress_csv"
  [ "$reaped" -lt "$REAPER_ROWS" ] || break
  [ "$(date +%s)" -lt "$deadline" ] || die "the reaper deleted $reaped of $REAPER_ROWS rows before the deadline"
  sleep 0.5
done
touch "$work/reaping.done"
wait "$claims_pid" || die "the claims during the reaping failed"
left=$(value reap "SELECT count(*) FROM idempotency.keys WHERE retain_until <= now() - interval '1 minute'")
[ "$left" -eq 0 ] || die "$left expired rows are left after the reaping"
read -r runs skipped <<<"$(value reap "SELECT sum(reaper_runs), sum(reaper_skipped_rows) FROM idempotency.stats WHERE database = 'reap'")"
awk -v s="$reap_start" -v e="$reap_end" '{ t = $5 + $6 / 1e6 } t >= s && t <= e' "$work"/lat/reaping.* \
  >"$work/during-reaping"
read -r n_during p50_during p99_during <<<"$(percentiles "$work/during-reaping")" \
  || die "no claim completed while the reaper ran"
reap_s=$(awk -v s="$reap_start" -v e="$reap_end" 'BEGIN { printf "%.1f", e - s }')
# the rate between 10 % and 90 % of the backlog, from the progress samples
steady=$(awk -F, -v n="$REAPER_ROWS" 'NR > 1 {
    if (t10 == "" && $2 >= 0.1 * n) { t10 = $1; r10 = $2 }
    if (t90 == "" && $2 >= 0.9 * n) { t90 = $1; r90 = $2 } }
    END { if (t90 > t10) printf "%.0f", (r90 - r10) / (t90 - t10); else print "0" }' "$progress_csv")
log "reaping: $REAPER_ROWS rows in $reap_s s ($runs runs); claims meanwhile: $n_during, p50 $p50_during ms, p99 $p99_during ms"

log "after reaping (no backlog left): ${REAPER_BASELINE} s on each database"
baseline after

# --- report ----------------------------------------------------------------------
pooled() {  # pooled PHASE DB: "n p50 p99" over every slice of that phase and database
  percentiles "$work"/lat/"$1.$2".*.*
}
read -r n_bq p50_bq p99_bq <<<"$(pooled before quiet)"
read -r n_br p50_br p99_br <<<"$(pooled before reap)"
read -r n_aq p50_aq p99_aq <<<"$(pooled after quiet)"
read -r n_ar p50_ar p99_ar <<<"$(pooled after reap)"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
verdict() { awk -v r="$1" -v op="$2" -v t="$3" 'BEGIN { ok = (op == "<=") ? r <= t : r >= t; print ok ? "PASS" : "MISS" }'; }
rate=$(awk -v n="$REAPER_ROWS" -v s="$reap_s" 'BEGIN { printf "%.0f", n / s }')
r_noback=$(ratio "$p99_during" "$p99_bq")
r_backlog=$(ratio "$p99_during" "$p99_br")
r_after=$(ratio "$p99_during" "$p99_aq")
summary_csv=$results/reaper.csv
{
  echo 'window,database,claims,p50_ms,p99_ms'
  echo "without reaping (before),quiet,$n_bq,$p50_bq,$p99_bq"
  echo "without reaping (before),reap,$n_br,$p50_br,$p99_br"
  echo "while reaping,reap,$n_during,$p50_during,$p99_during"
  echo "after reaping,quiet,$n_aq,$p50_aq,$p99_aq"
  echo "after reaping,reap,$n_ar,$p50_ar,$p99_ar"
} >"$summary_csv"
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
md=$results/reaper.md
{
  echo "# make bench-reaper: results"
  echo
  echo "Measured by \`make bench-reaper\` (bench/reaper.sh) on $(date -u '+%Y-%m-%d %H:%M UTC'), in $(( ($(date +%s) - t_start + 30) / 60 )) minutes,"
  echo "on $(nproc) CPUs ($cpu), PostgreSQL $(value postgres 'SHOW server_version'), synchronous_commit = $BENCH_SYNC_COMMIT,"
  echo "shared_buffers = 2GB; a shared machine, so only the ratios within this run compare."
  echo
  echo "Backlog: $REAPER_ROWS completed keys past retention in database reap ($size with its"
  echo "indexes, loaded in ${load_s} s). Claims: ext-new, one round trip per statement, $REAPER_CLIENTS clients,"
  echo "pgbench runs of ${REAPER_SLICE} s; without reaping, alternating between database reap (the"
  echo "backlog, not reaped: the reaper off) and database quiet (an empty keys table: no backlog),"
  echo "${REAPER_BASELINE} s of each, before the reaping and again after it. While reaping: the claims on"
  echo "database reap between the reaper's switch-on and its last run."
  echo
  echo "| window | database | claims | p50_ms | p99_ms |"
  echo "| --- | --- | ---: | ---: | ---: |"
  tail -n +2 "$summary_csv" | awk -F, '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }'
  echo
  echo "The reaper: reaper_rows_per_second = $throttle, reaper_batch_size = $batch (the defaults),"
  echo "reaper_naptime = 1 s. $REAPER_ROWS rows in $reap_s s from the switch-on to its last run"
  echo "($runs runs, $skipped rows skipped): **$rate rows/s** overall, $steady rows/s between 10 % and"
  echo "90 % of the backlog."
  echo
  echo "| target (issue 13) | measured | needed | result |"
  echo "| --- | ---: | --- | --- |"
  echo "| claims' p99 while reaping / without reaping, no backlog (quiet, before) | $r_noback | <= 1.5 | $(verdict "$r_noback" '<=' 1.5) |"
  echo "| claims' p99 while reaping / without reaping, the same table (reap, before) | $r_backlog | <= 1.5 | $(verdict "$r_backlog" '<=' 1.5) |"
  echo "| claims' p99 while reaping / after reaping, no backlog (quiet, after) | $r_after | <= 1.5 | $(verdict "$r_after" '<=' 1.5) |"
  echo "| rows reaped per second at the default throttle | $rate | >= 10000 | $(verdict "$rate" '>=' 10000) |"
  echo
  echo "Per slice: \`slices.csv\`; the reaper's progress every half second: \`progress.csv\`."
} >"$md"
cat "$md"
log "took $(( $(date +%s) - t_start )) s; results in $results"

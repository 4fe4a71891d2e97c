#!/usr/bin/env bash
# `make bench-upgrade` (issue 12): how long `ALTER EXTENSION idempotency
# UPDATE` from 0.1.0 to 0.2.0 holds which lock on idempotency.keys when the
# table holds UPGRADE_ROWS (10 million) keys, and how long the README's
# VALIDATE CONSTRAINT statement then takes, with claims and replays running
# meanwhile so that what they wait shows too.
#
#   1. build and install (bench/bench.mk runs this in a private overlay of
#      the PostgreSQL directories: scripts/private-install.sh);
#   2. a throwaway cluster with bench/run.sh's settings (the reaper off);
#      CREATE EXTENSION idempotency VERSION '0.1.0', UPGRADE_ROWS completed
#      keys written directly (as run.sh's scale table) and 1,000 replayable
#      keys in scope 'replay';
#   3. a watcher (a procedure committing every iteration, about once a
#      millisecond) records every change of the locks that the updating
#      session holds or waits for on idempotency.keys, with the time;
#      pgbench runs ext-new claims (2 clients) and ext-replay claims (2
#      clients) in back-to-back runs of 2 s throughout;
#   4. ALTER EXTENSION idempotency UPDATE TO '0.2.0', then the VALIDATE
#      CONSTRAINT statement of README.md ("Upgrading the extension"), each
#      timed; then the lock timeline, the time each lock mode was held, and
#      the longest claim and replay that started in each statement.
#
# A claim writes the table (RowExclusiveLock): it waits for a SHARE lock or
# stronger; a replay only reads (AccessShareLock): it waits only for ACCESS
# EXCLUSIVE.  Output: bench/results/upgrade/upgrade.md and *.csv.
# Environment: UPGRADE_ROWS (10000000), BENCH_SYNC_COMMIT (off),
# BENCH_RESULTS, MAKE, PG_CONFIG.  About 5 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}
PG_CONFIG=${PG_CONFIG:-pg_config}
UPGRADE_ROWS=${UPGRADE_ROWS:-10000000}
BENCH_SYNC_COMMIT=${BENCH_SYNC_COMMIT:-off}
die() { echo "bench-upgrade: $*" >&2; exit 1; }
log() { echo "bench-upgrade: $(date -u +%H:%M:%S) $*"; }
case $UPGRADE_ROWS in ''|*[!0-9]*|0) die "UPGRADE_ROWS must be a positive whole number" ;; esac
[ "$(id -u)" -eq 0 ] || die "run as root (the cluster runs as the postgres user)"
t_start=$(date +%s)
fingerprint='\x9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'
mkdir -p "${BENCH_RESULTS:-bench/results}/upgrade"
results=$(cd "${BENCH_RESULTS:-bench/results}/upgrade" && pwd)
rm -f "$results"/*.csv "$results"/*.md "$results"/*.log
bench_name=upgrade
. bench/cluster.sh
# the probes' loops end when this file appears
bench_cluster_on_exit() { touch "$work/probes.done" 2>/dev/null; }
bench_cluster_start <<EOF
idempotency.reaper_databases = ''
EOF

sql postgres -c 'CREATE DATABASE up'
sql up -c 'SET client_min_messages = warning' \
  -c "CREATE EXTENSION idempotency VERSION '0.1.0' CASCADE" -f bench/schema.sql
log "loading $UPGRADE_ROWS completed keys into the 0.1.0 table"
t0=$(date +%s)
sql up -v rows="$UPGRADE_ROWS" -v since='1 day' -v fingerprint="$fingerprint" -f bench/load-keys.sql
sql up <<EOF
INSERT INTO idempotency.keys
	(scope, key, fingerprint, state, response_status, response_body,
	 created_at, expires_at, retain_until)
SELECT 'replay', i::text, '$fingerprint', 'completed', 201, '{"id": "ch_replay", "amount": 1000}',
	   now(), now() + interval '1 day', now() + interval '7 days'
  FROM generate_series(1, 1000) AS i;
VACUUM ANALYZE idempotency.keys;
CHECKPOINT;
EOF
load_s=$(( $(date +%s) - t0 ))
size=$(value up "SELECT pg_size_pretty(pg_total_relation_size('idempotency.keys'))")
log "loaded in ${load_s} s: idempotency.keys is $size"

# The watcher: one row per change of the locks on idempotency.keys that the
# session named 'upgrade' holds or waits for; it stops when told to.
sql up <<'EOF'
CREATE TABLE public.lockwatch (t timestamptz, phase text, modes text);
CREATE TABLE public.watch_stop (stop bool);
CREATE PROCEDURE public.watch() LANGUAGE plpgsql AS $$
DECLARE
	last text := NULL;
	cur text;
	ph text;
BEGIN
	LOOP
		EXIT WHEN EXISTS (SELECT FROM public.watch_stop);
		SELECT a.application_name,
			   coalesce(string_agg(l.mode || CASE WHEN l.granted THEN '' ELSE ' (waiting)' END,
								   ', ' ORDER BY l.mode), '')
		  INTO ph, cur
		  FROM pg_stat_activity a
		  LEFT JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'relation'
			   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
			   AND l.relation = 'idempotency.keys'::regclass
		 WHERE a.application_name IN ('update', 'validate')
		 GROUP BY a.application_name;
		cur := coalesce(ph || ': ' || cur, '');
		IF cur IS DISTINCT FROM last THEN
			INSERT INTO public.lockwatch VALUES (clock_timestamp(), ph, cur);
			last := cur;
		END IF;
		COMMIT;
		PERFORM pg_sleep(0.001);
	END LOOP;
END $$;
EOF
sql up -c 'CALL public.watch()' >"$work/watch.log" 2>&1 &
watch_pid=$!
children+=("$watch_pid")

# The probes: claims (writes) and replays (reads), back to back in runs of
# 2 s; a run that fails (its error in probes.log) is counted, not fatal.
mkdir -p "$work/lat"
probe() {  # probe NAME SCRIPT
  local i=0
  while [ ! -e "$work/probes.done" ]; do
    i=$((i + 1))
    pgbench -n -M prepared -h 127.0.0.1 -p "$port" -U postgres -c 2 -j 2 -T 2 \
      -D fingerprint="$fingerprint" -D replay_keys=1000 -l --log-prefix="$work/lat/$1.$i" \
      -f "$2" up >>"$work/probes.$1.log" 2>&1 || echo "run $i failed" >>"$work/probes.$1.failed"
  done
}
probe claim bench/pgbench/ext-new-rtt.sql &
children+=("$!")
probe replay bench/pgbench/ext-replay-rtt.sql &
children+=("$!")
sleep 5

timed() {  # timed NAME SQL: runs SQL in a session named NAME, prints "start end" (epoch)
  sql up -At -c "SET application_name = '$1'" \
    -c "SELECT extract(epoch FROM clock_timestamp())" -c "$2" \
    -c "SELECT extract(epoch FROM clock_timestamp())" | paste -sd' '
}
log "ALTER EXTENSION idempotency UPDATE TO '0.2.0'"
read -r u0 u1 <<<"$(timed update "ALTER EXTENSION idempotency UPDATE TO '0.2.0'")"
sleep 3
constraints=$(value up "SELECT string_agg(format('VALIDATE CONSTRAINT %I', conname), ', ' ORDER BY conname)
                          FROM pg_constraint
                         WHERE conrelid = 'idempotency.keys'::regclass AND contype = 'c' AND NOT convalidated")
[ -n "$constraints" ] || die "the update added no NOT VALID constraint"
log "ALTER TABLE idempotency.keys $constraints"
read -r v0 v1 <<<"$(timed validate "ALTER TABLE idempotency.keys $constraints")"
sleep 3
touch "$work/probes.done"
sql up -c 'INSERT INTO public.watch_stop VALUES (true)'
wait
children=()
version=$(value up "SELECT extversion FROM pg_extension WHERE extname = 'idempotency'")
invalid=$(value up "SELECT count(*) FROM pg_constraint WHERE conrelid = 'idempotency.keys'::regclass AND NOT convalidated")
[ "$version" = 0.2.0 ] && [ "$invalid" -eq 0 ] || die "after the update: version $version, $invalid constraints not validated"

# --- report ----------------------------------------------------------------------
timeline="
SELECT round(extract(epoch FROM t - to_timestamp($u0))::numeric, 3) AS at_s,
	   round(extract(epoch FROM lead(t) OVER (ORDER BY t) - t)::numeric * 1000, 1) AS for_ms,
	   modes
  FROM public.lockwatch WHERE t >= to_timestamp($u0) - interval '1 second'"
sql up --csv -c "$timeline ORDER BY at_s" >"$results/locks.csv"
# held PHASE QUEUED MODE...: the milliseconds PHASE's session held any of
# MODEs, or (QUEUED = 1) held or waited for one: a waiting request blocks
# the requests that conflict with it and come after it, too
held() {
  local phase=$1 queued=$2; shift 2
  local modes m
  modes=$(for m in "$@"; do printf "'%s'," "$m"; [ "$queued" = 0 ] || printf "'%s (waiting)'," "$m"; done)
  modes=${modes%,}
  value up "
SELECT round(coalesce(sum(extract(epoch FROM nxt - t)), 0)::numeric * 1000, 1)
  FROM (SELECT t, lead(t) OVER (ORDER BY t) AS nxt, phase, modes FROM public.lockwatch) AS w
 WHERE phase = '$phase' AND nxt IS NOT NULL
   AND EXISTS (SELECT FROM unnest(string_to_array(substr(modes, length(phase) + 3), ', ')) AS m
				WHERE m IN ($modes))"
}
blocking=(ShareLock ShareRowExclusiveLock ExclusiveLock AccessExclusiveLock)
u_ax=$(held update 0 AccessExclusiveLock)
u_axq=$(held update 1 AccessExclusiveLock)
u_writes=$(held update 1 "${blocking[@]}")
v_ax=$(held validate 1 AccessExclusiveLock)
v_writes=$(held validate 1 "${blocking[@]}")
v_sue=$(held validate 0 ShareUpdateExclusiveLock)
# worst PROBE START END: "n max_ms p99_ms" of the probe's transactions that began in [START, END]
worst() {
  cat "$work"/lat/"$1".* 2>/dev/null | awk -v s="$2" -v e="$3" '
    { t_end = $5 + $6 / 1e6; t_begin = t_end - $3 / 1e6 }
    t_begin >= s && t_begin <= e { print $3 }' | sort -n | awk '
    { v[NR] = $1 }
    END { if (NR == 0) { print "0 - -"; exit }
          r = int(0.99 * NR); if (r < 0.99 * NR) r++; if (r < 1) r = 1
          printf "%d %.1f %.1f\n", NR, v[NR] / 1000, v[r] / 1000 }'
}
read -r c_n_u c_max_u c_p99_u <<<"$(worst claim "$u0" "$u1")"
read -r r_n_u r_max_u r_p99_u <<<"$(worst replay "$u0" "$u1")"
read -r c_n_v c_max_v c_p99_v <<<"$(worst claim "$v0" "$v1")"
read -r r_n_v r_max_v r_p99_v <<<"$(worst replay "$v0" "$v1")"
read -r c_n_q c_max_q c_p99_q <<<"$(worst claim "$(( ${u0%.*} - 5 ))" "${u0%.*}")"
read -r r_n_q r_max_q r_p99_q <<<"$(worst replay "$(( ${u0%.*} - 5 ))" "${u0%.*}")"
failed_runs=$({ cat "$work"/probes.*.failed 2>/dev/null || true; } | wc -l)
errors=$(grep -h 'ERROR\|error' "$work"/probes.*.log 2>/dev/null | sort | uniq -c | sort -rn | head -n 5 || true)
u_s=$(awk -v a="$u0" -v b="$u1" 'BEGIN { printf "%.2f", b - a }')
v_s=$(awk -v a="$v0" -v b="$v1" 'BEGIN { printf "%.2f", b - a }')
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
md=$results/upgrade.md
{
  echo "# make bench-upgrade: results"
  echo
  echo "Measured by \`make bench-upgrade\` (bench/upgrade-lock.sh) on $(date -u '+%Y-%m-%d %H:%M UTC'),"
  echo "on $(nproc) CPUs ($cpu), PostgreSQL $(value postgres 'SHOW server_version'), shared_buffers = 2GB,"
  echo "synchronous_commit = $BENCH_SYNC_COMMIT; a shared machine."
  echo
  echo "idempotency.keys of 0.1.0 with $UPGRADE_ROWS + 1000 completed keys ($size with its indexes),"
  echo "claims (ext-new, 2 clients) and replays (ext-replay, 2 clients) running throughout. Lock"
  echo "times are from a watcher polling pg_locks about once a millisecond: each is exact to a few"
  echo "milliseconds."
  echo
  echo "| statement | took_s | ACCESS EXCLUSIVE held_ms | ACCESS EXCLUSIVE held or queued for_ms | SHARE or stronger (blocks claims) held or queued for_ms |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  echo "| ALTER EXTENSION idempotency UPDATE TO '0.2.0' | $u_s | $u_ax | $u_axq | $u_writes |"
  echo "| ALTER TABLE idempotency.keys VALIDATE CONSTRAINT ... (SHARE UPDATE EXCLUSIVE for $v_sue ms) | $v_s | $v_ax | $v_ax | $v_writes |"
  echo
  echo "Probes that started during each statement (and in the 5 s before the update, for reference):"
  echo
  echo "| window | claims | longest claim_ms | claims p99_ms | replays | longest replay_ms | replays p99_ms |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  echo "| 5 s before the update | $c_n_q | $c_max_q | $c_p99_q | $r_n_q | $r_max_q | $r_p99_q |"
  echo "| during the update | $c_n_u | $c_max_u | $c_p99_u | $r_n_u | $r_max_u | $r_p99_u |"
  echo "| during the VALIDATE | $c_n_v | $c_max_v | $c_p99_v | $r_n_v | $r_max_v | $r_p99_v |"
  echo
  echo "Probe runs (2 s each) that failed: $failed_runs.${errors:+ Their errors:}"
  [ -z "$errors" ] || { echo; echo '```'; echo "$errors"; echo '```'; }
  echo
  echo "The updating and validating sessions' locks on idempotency.keys, as they changed (at_s: seconds"
  echo "after the update began; for_ms: until the next change):"
  echo
  echo "| at_s | for_ms | locks |"
  echo "| ---: | ---: | --- |"
  value up "SELECT format('| %s | %s | %s |', at_s, coalesce(for_ms::text, ''), modes) FROM ($timeline) AS w ORDER BY at_s"
} >"$md"
cat "$md"
log "took $(( $(date +%s) - t_start )) s; results in $results"

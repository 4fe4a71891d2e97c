# bench/cluster.sh: the throwaway cluster that bench/reaper.sh and
# bench/upgrade-lock.sh measure on, with bench/run.sh's settings.  Sourced
# by them once they have set bench_name (reaper, upgrade: their messages
# and temporary directory), results (their results directory), MAKE,
# PG_CONFIG and BENCH_SYNC_COMMIT, and defined die and log.  Sourcing it
# makes the work directory ($work, removed at exit) and the exit trap:
# bench_cluster_on_exit runs first when the script defines it, then the
# pids in children are killed, the server stopped and its log copied to
# $results.
#
#   bench_cluster_start < CONF-LINES
#       builds and installs the extension (output in $results/build.log),
#       makes the cluster in $work/data with CONF-LINES added to its
#       settings, starts it and points PGHOST, PGPORT and PGUSER at it;
#       sets bindir and port.
#   sql DB PSQL-ARGUMENTS..., value DB QUERY
#       psql on database DB; value prints the rows unaligned.

work=$(mktemp -d "/tmp/idempotency-$bench_name.XXXXXX")
chmod 755 "$work"; chown postgres: "$work"
data=$work/data
children=()
cleanup() {
  local rc=$?
  if declare -F bench_cluster_on_exit >/dev/null; then bench_cluster_on_exit || true; fi
  for pid in "${children[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${bindir-}" ] && [ -f "$data/postmaster.pid" ]; then
    runuser -u postgres -- "$bindir/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  cp "$work/server.log" "$results/server.log" 2>/dev/null || true
  rm -rf "$work"
  [ $rc -eq 0 ] || echo "bench-$bench_name: failed (exit status $rc); server log in $results" >&2
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bench_cluster_start() {
  log "build and install (output in $results/build.log)"
  { $MAKE --no-print-directory && $MAKE --no-print-directory install; } >"$results/build.log" 2>&1 \
    || { cat "$results/build.log"; die "the build failed"; }
  bindir=$("$PG_CONFIG" --bindir)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  runuser -u postgres -- "$bindir/initdb" -D "$data" -A trust -U postgres -E UTF8 --locale=C --no-sync \
    >"$work/initdb.log" 2>&1 || { cat "$work/initdb.log"; die "initdb failed"; }
  {
    cat <<CONF
# bench/cluster.sh: bench/run.sh's settings
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$work'
shared_preload_libraries = 'idempotency'
shared_buffers = '2GB'
synchronous_commit = $BENCH_SYNC_COMMIT
max_wal_size = '20GB'
checkpoint_timeout = '1h'
# bench-$bench_name's own
CONF
    cat
  } >>"$data/postgresql.conf"
  runuser -u postgres -- "$bindir/pg_ctl" -D "$data" -l "$work/server.log" -w -t 600 start >/dev/null \
    || { cat "$work/server.log"; die "the cluster did not start"; }
  export PGHOST=$work PGPORT=$port PGUSER=postgres
}
sql() { local db=$1; shift; "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -d "$db" "$@"; }
value() { sql "$1" -At -F " " -c "$2"; }

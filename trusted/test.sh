#!/usr/bin/env bash
# trusted/test.sh (`make test-trusted`; scripts/test.sh runs it as the suite
# "trusted"): the trusted edition's tests, in a throwaway cluster with pg_cron
# preloaded and the C edition installed beside it (in a private overlay) for
# the checks that compare the two.  Each check prints "ok NAME" or "not ok NAME";
# the last line is "trusted: N passed, M failed".  TRUSTED_RESULTS=DIR keeps the
# regress results (for reviewing a new expected file by hand).
#   install      a role that is neither superuser nor able to create C functions
#                installs dist/trusted/idempotency.sql after CREATE EXTENSION pgcrypto
#   plpgsql_check  every PL/pgSQL function of the edition, no error or warning
#   regress/NAME   the contract suites sql/NAME.sql, run against the trusted edition;
#                compared with trusted/expected/NAME.out where the editions differ
#                (trusted/README.md says how), else with expected/NAME.out
#   trusted/NAME   the trusted edition's own tests, trusted/sql/NAME.sql
#   isolation      the isolation specs in TRUSTED_SPECS, against the trusted edition
#   same-bytes   fingerprints and downstream keys of both editions, byte for byte
#   pg_cron      idempotency.reap() scheduled by pg_cron: expired keys go, live leases stay
#   dump-crossing  a dump of either edition restored into the other: every retry replays
#   pg_tle-body  the pg_tle script's body, run as a trusted extension's script (no pg_tle here)
#   hammer       bench/doublecharge, 16 clients and an immediate shutdown: 0 double charges
set -euo pipefail
cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}

# The contract suites whose behaviour the trusted edition shares.  The others
# test what only the C edition has (trusted/README.md lists them and why).
TRUSTED_REGRESS="bad_input broken_rows commit_guard durable durable_5xx durable_5xx_rule_from_claim durable_modes
  durable_windows every_byte hostile_search_path reap release_5xx replay"
TRUSTED_SPECS="concurrent_replays durable_concurrent_resumers durable_duplicate_during_lease
  durable_resume_after_late_checkpoint durable_stale_worker nowait_conflict plpgsql_wait
  policy_change_applies reap_skips_locked repeatable_read_race two_scopes
  wait_fingerprint_mismatch wait_new_after_abort wait_new_after_release wait_replay wait_timeout"

if [ "${1-}" = --in-virtualenv ]; then
  out=$2
  pass=0; fail=0
  ok() { echo "ok $1"; pass=$((pass + 1)); }
  notok() { echo "not ok $1"; fail=$((fail + 1)); }
  check() {  # check NAME COMMAND...: ok when COMMAND succeeds
    local name=$1 log; shift
    # TRUSTED_CHECKS=REGEX runs only the checks it matches (and the install)
    if [ -n "${TRUSTED_CHECKS-}" ] && [[ ! $name =~ ^install ]] && [[ ! $name =~ $TRUSTED_CHECKS ]]; then return 0; fi
    log=$out/$(echo "$name" | tr / _).log
    if "$@" >"$log" 2>&1; then ok "$name"; sed -n '$s/^./    &/p' "$log"
    else notok "$name"; sed 's/^/    /' "$log" | tail -n 40; fi
  }
  q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
  owner() { PGPASSWORD=ikowner psql -X -q -v ON_ERROR_STOP=1 -U ikowner "$@"; }
  pgxs=$(cd "$(dirname "$(pg_config --pgxs)")/../.." && pwd)

  # A managed service's admin: owns its database, is not a superuser.
  q <<'SQL'
CREATE ROLE ikowner LOGIN PASSWORD 'ikowner' NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE DATABASE trusted OWNER ikowner;
CREATE DATABASE cedition;
SQL
  install_trusted() {  # install_trusted DB: as ikowner, as a managed service allows
    owner -d "$1" -c 'CREATE EXTENSION IF NOT EXISTS pgcrypto' &&
      owner -d "$1" -f dist/trusted/idempotency.sql
  }
  no_c_functions() {
    if owner -d trusted -c "CREATE FUNCTION public.c_probe() RETURNS int AS 'idempotency', 'idempotency_claim' LANGUAGE c" 2>"$out/c_probe.err"; then
      echo "ikowner could create a C function"; return 1
    fi
    grep -q 'permission denied for language c' "$out/c_probe.err"
  }
  check install install_trusted trusted
  check install-role-cannot-create-c no_c_functions

  # plpgsql_check over every PL/pgSQL function of the schema, as a superuser
  # (the extension is not trusted); it is dropped again afterwards.
  plpgsql_check_all() {
    q -d trusted -c 'CREATE EXTENSION plpgsql_check' || return 1
    local report
    report=$(q -d trusted -At <<'SQL'
SELECT p.oid::regprocedure || ': ' || c
  FROM pg_proc AS p
  JOIN pg_language AS l ON l.oid = p.prolang AND l.lanname = 'plpgsql'
  CROSS JOIN LATERAL plpgsql_check_function(p.oid,
        CASE p.proname WHEN '_commit_guard' THEN 'idempotency.open_claims'::regclass
                       WHEN '_truncate_guard' THEN 'idempotency.keys'::regclass
                       WHEN '_settings_replace' THEN 'idempotency.settings'::regclass
                       ELSE 0 END,
        extra_warnings => false, performance_warnings => false) AS c
 WHERE p.pronamespace = 'idempotency'::regnamespace;
SQL
) || return 1
    q -d trusted -c 'DROP EXTENSION plpgsql_check'
    echo "$report"
    [ -z "$report" ]
  }
  check plpgsql_check plpgsql_check_all

  # The contract suites, as pg_regress runs them (psql -X -a -q), with the
  # PL/pgSQL CONTEXT lines that the C edition's errors do not have left out.
  mkdir -p "$out/results"
  run_regress() {  # run_regress DB SQLFILE EXPECTED
    local name; name=$(basename "$2" .sql)
    PGTZ=PST8PDT PGDATESTYLE='Postgres, MDY' PGOPTIONS='-c intervalstyle=postgres_verbose' \
      psql -X -a -q -v SHOW_CONTEXT=never -d "$1" <"$2" >"$out/results/$name.out" 2>&1
    diff -U3 "$3" "$out/results/$name.out"
  }
  for t in $TRUSTED_REGRESS; do
    exp=expected/$t.out
    [ ! -f trusted/expected/$t.out ] || exp=trusted/expected/$t.out
    check "regress/$t" run_regress trusted "sql/$t.sql" "$exp"
  done
  for f in trusted/sql/*.sql; do
    t=$(basename "$f" .sql)
    check "trusted/$t" run_regress trusted "$f" "trusted/expected/$t.out"
  done

  # The isolation specs, against the same database.
  iso() {
    mkdir -p "$out/iso" && chmod 777 "$out/iso"
    # shellcheck disable=SC2086
    "$pgxs/src/test/isolation/pg_isolation_regress" --use-existing --dbname=trusted \
      --inputdir=. --outputdir="$out/iso" $TRUSTED_SPECS ||
      { cat "$out/iso/regression.diffs"; return 1; }
  }
  check isolation iso

  # Byte for byte: the C edition in database cedition, the trusted edition in
  # trusted, each computing the same fingerprints and downstream keys.
  check same-bytes bash trusted/same_bytes.sh trusted cedition "$out"

  check pg_cron bash trusted/pg_cron.sh

  check dump-crossing bash trusted/dump_crossing.sh "$out"

  check hammer bash trusted/hammer.sh "$out"

  check pg_tle-body bash trusted/pgtle_body.sh "$out"

  # TRUSTED_RESULTS=DIR keeps the regress results there, for new expected files.
  [ -z "${TRUSTED_RESULTS-}" ] || cp -r "$out/results/." "$TRUSTED_RESULTS/"
  echo "trusted: $pass passed, $fail failed"
  [ "$fail" -eq 0 ]
  exit
fi

# The C edition is installed too (for same-bytes and dump-crossing): into a
# private overlay, so that no other cluster on the machine sees it.
if [ -z "${IDEMPOTENCY_IN_PRIVATE_INSTALL-}" ] && [ "${IDEMPOTENCY_PRIVATE_INSTALL:-1}" != 0 ]; then
  exec bash scripts/private-install.sh bash "$0" "$@"
fi
$MAKE --no-print-directory -s
$MAKE --no-print-directory -s install >/dev/null
bash trusted/build.sh dist/trusted
major=$(pg_config --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
out=$(mktemp -d /tmp/idempotency-trusted.XXXXXX)
chmod 755 "$out"
trap 'rm -rf "$out"' EXIT
pg_virtualenv -t -v "$major" -o shared_preload_libraries=pg_cron -o cron.database_name=trusted \
  -o cron.use_background_workers=on \
  bash "$PWD/trusted/test.sh" --in-virtualenv "$out"

#!/usr/bin/env bash
# trusted/hammer.sh OUTDIR (from trusted/test.sh, in its throwaway cluster): the
# double-charge hammer (bench/doublecharge --design extension, the application
# flow as it runs against either edition) against the trusted edition: 16
# clients over 20 hot keys for 10 s, and an immediate shutdown of the server
# (then a start) at 4 s.  Zero double charges and zero charges without a key.
set -euo pipefail
out=$1
q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
owner() { PGPASSWORD=ikowner psql -X -q -v ON_ERROR_STOP=1 -U ikowner "$@"; }

${MAKE:-make} --no-print-directory -s bench/doublecharge
q -c 'CREATE DATABASE hammer OWNER ikowner'
owner -d hammer -c 'CREATE EXTENSION pgcrypto' -f dist/trusted/idempotency.sql
q -d hammer -c 'CREATE SCHEMA bench' -c "CREATE TABLE bench.charges (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, scope text NOT NULL,
    idem_key text NOT NULL, amount bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
cat >"$out/pg-kill" <<KILL
pg_ctlcluster $PGVERSION regress stop -m immediate
KILL
cat >"$out/pg-start" <<START
pg_ctlcluster $PGVERSION regress start
START
result=$(bench/doublecharge --design extension --pg "host=$PGHOST port=$PGPORT dbname=hammer user=$PGUSER" \
           --clients 16 --hot-keys 20 --seconds 10 --generation-ms 2000 \
           --fault-at 4 --fault-cmd "sh $out/pg-kill" --restart-cmd "sh $out/pg-start" 2>"$out/doublecharge.err") ||
  { cat "$out/doublecharge.err"; exit 1; }
echo "$result"
charges=$(sed -nE 's/.* charges=([0-9]+).*/\1/p' <<<"$result")
[ "${charges:-0}" -gt 0 ] || { echo "no charges: the hammer did not run"; exit 1; }
grep -q ' double_charges=0 ' <<<"$result " && grep -q ' charges_without_key=0 ' <<<"$result "

#!/usr/bin/env bash
# trusted/dump_crossing.sh OUTDIR (from trusted/test.sh, as a superuser): keys made
# by one edition, dumped with pg_dump and restored into a database running the
# other, replay there: every retry, its body spelled differently but equal as
# jsonb, gets 'replay' and the stored response; a durable claim whose lease
# lapsed resumes from its recovery point; downstream keys are the same.  Both
# ways: trusted -> C and C -> trusted.  The application's SQL is the same file
# for both editions.
set -euo pipefail
out=$1
q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
owner() { PGPASSWORD=ikowner psql -X -q -v ON_ERROR_STOP=1 -U ikowner "$@"; }

make_trusted() {  # make_trusted DB: the trusted edition, its secrets set by its owner
  q -c "CREATE DATABASE $1 OWNER ikowner"
  owner -d "$1" -c 'CREATE EXTENSION pgcrypto' -f dist/trusted/idempotency.sql
  owner -d "$1" -c "UPDATE idempotency.settings SET fingerprint_secret = 'crossing-secret', downstream_secret = 'down-secret'"
}
make_c() {  # make_c DB: the C edition, its secrets set by a superuser
  q -c "CREATE DATABASE $1"
  q -d "$1" -c 'CREATE EXTENSION pgcrypto' -c 'CREATE EXTENSION idempotency' \
    -c "ALTER DATABASE $1 SET idempotency.fingerprint_secret = 'crossing-secret'" \
    -c "ALTER DATABASE $1 SET idempotency.downstream_secret = 'down-secret'"
}

# The application: 40 charges, one durable claim left with a lapsed lease.
charge() {
  q -d "$1" <<'SQL'
INSERT INTO idempotency.policies (scope, mode, cache_5xx) VALUES ('merchant_9', 'enforce', false);
DO $$
BEGIN
  FOR i IN 1 .. 40 LOOP
    PERFORM idempotency.claim('merchant_' || i % 10, 'key-' || i,
              idempotency.fingerprint('POST', '/v1/charges',
                format('{"amount": %s, "currency": "eur", "meta": {"i": %s}}', i * 100, i)::jsonb));
    PERFORM idempotency.complete('merchant_' || i % 10, 'key-' || i, 201,
              format('{"id": "ch_%s", "amount": %s}', i, i * 100)::jsonb, '{"x-request": "r"}');
    COMMIT;
  END LOOP;
END $$;
SELECT lease_token AS t FROM idempotency.claim('psp', 'durable-1',
         idempotency.fingerprint('POST', '/v1/payouts', '{"amount": 5}'::jsonb), lease => '1 second') \gset
SELECT idempotency.checkpoint('psp', 'durable-1', 'authorized:pi_1', :'t');
SELECT pg_sleep(1.1);
SQL
}
downstream() {  # the downstream keys of every request, one a line
  q -d "$1" -At -c "SELECT idempotency.downstream_key(scope, key, fingerprint, 'capture') FROM idempotency.keys ORDER BY key, scope"
}
retry() {  # retry DB: every retry, spelled otherwise, replays; prints what failed
  q -d "$1" -At <<'SQL'
SELECT 'key-' || i || ': ' || coalesce(c.outcome, 'null') || ' ' || coalesce(c.response_body::text, '')
  FROM generate_series(1, 40) AS i,
       LATERAL idempotency.claim('merchant_' || i % 10, 'key-' || i,
         idempotency.fingerprint('post', '/v1/charges',
           format('{"meta": {"i": %s.0}, "currency": "eur", "amount": %s.00}', i, i * 100))) AS c
 WHERE c.outcome IS DISTINCT FROM 'replay'
    OR c.response_body IS DISTINCT FROM format('{"id": "ch_%s", "amount": %s}', i, i * 100)::jsonb
    OR c.response_headers IS DISTINCT FROM '{"x-request": "r"}'::jsonb;
BEGIN;
SELECT CASE WHEN outcome = 'resume' AND recovery_point = 'authorized:pi_1' THEN NULL
            ELSE 'durable-1: ' || outcome || ' ' || coalesce(recovery_point, 'no recovery point') END
  FROM idempotency.claim('psp', 'durable-1',
         idempotency.fingerprint('POST', '/v1/payouts', '{"amount": 5.0}'), lease => '1 minute')
 WHERE outcome <> 'resume' OR recovery_point IS DISTINCT FROM 'authorized:pi_1';
ROLLBACK;
SQL
}
cross() {  # cross FROM TO
  charge "$1"
  downstream "$1" >"$out/$1.downstream"
  pg_dump --data-only --table=idempotency.keys --table=idempotency.policies "$1" >"$out/$1.dump"
  q -d "$2" -f "$out/$1.dump" >/dev/null
  downstream "$2" >"$out/$2.downstream"
  local failed; failed=$(retry "$2")
  echo "$1 -> $2: $(q -d "$2" -At -c 'SELECT count(*) FROM idempotency.keys') keys restored"
  if [ -n "$failed" ]; then echo "retries that did not replay:"; echo "$failed"; return 1; fi
  [ "$(wc -l <"$out/$1.downstream")" -eq 41 ] && cmp "$out/$1.downstream" "$out/$2.downstream" ||
    { echo "downstream keys differ after the crossing"; return 1; }
  echo "$1 -> $2: 40 retries replayed, the durable claim resumed, 41 downstream keys the same"
}

make_trusted cross_t1
make_c cross_c1
cross cross_t1 cross_c1
make_c cross_c2
make_trusted cross_t2
cross cross_c2 cross_t2

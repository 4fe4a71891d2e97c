#!/usr/bin/env bash
# trusted/pg_cron.sh (from trusted/test.sh, in a cluster with pg_cron preloaded
# and cron.database_name = trusted): idempotency.reap() scheduled with pg_cron by
# the edition's owner, as a managed service's admin does it, runs for real: the
# keys past retention go, a durable claim whose lease is live stays, and so does
# a key inside its windows.  pg_cron 1.4 schedules by the minute, so this waits
# for the next minute's run (up to 75 s).
set -euo pipefail
q() { psql -X -q -v ON_ERROR_STOP=1 -d trusted "$@"; }
owner() { PGPASSWORD=ikowner psql -X -q -v ON_ERROR_STOP=1 -U ikowner -d trusted "$@"; }

q -c 'CREATE EXTENSION IF NOT EXISTS pg_cron' -c 'GRANT USAGE ON SCHEMA cron TO ikowner'
owner <<'SQL'
INSERT INTO idempotency.policies (scope, ttl, retain) VALUES ('cron', '1 second', '1 second');
BEGIN;
SELECT outcome FROM idempotency.claim('cron', 'expired', '\x01');
SELECT idempotency.complete('cron', 'expired', 201, '{}');
COMMIT;
-- a durable claim whose lease lapses at once: past retention soon, then reaped
SELECT outcome FROM idempotency.claim('cron', 'lapsed', '\x01', lease => '1 millisecond');
-- a durable claim with a live lease: its retention moves past the lease
SELECT outcome FROM idempotency.claim('cron', 'live-lease', '\x01', lease => '1 hour');
-- a key of a scope with the default windows
BEGIN;
SELECT outcome FROM idempotency.claim('cron-default', 'fresh', '\x01');
SELECT idempotency.complete('cron-default', 'fresh', 201, '{}');
COMMIT;
SELECT pg_sleep(1.5);
SELECT cron.schedule('idempotency-reap', '* * * * *', 'SELECT idempotency.reap()');
SQL

ran=
for _ in $(seq 1 75); do
  ran=$(q -At -c "SELECT status FROM cron.job_run_details AS d JOIN cron.job AS j USING (jobid)
                   WHERE j.jobname = 'idempotency-reap' AND d.status IN ('succeeded', 'failed') LIMIT 1")
  [ -z "$ran" ] || break
  sleep 1
done
q -c "SELECT j.username, d.status, d.return_message FROM cron.job_run_details AS d JOIN cron.job AS j USING (jobid)"
owner -c "SELECT cron.unschedule('idempotency-reap')" >/dev/null
[ "$ran" = succeeded ] || { echo "the scheduled reap did not succeed (status: ${ran:-never ran})"; exit 1; }
left=$(q -At -c "SELECT string_agg(key, ',' ORDER BY key) FROM idempotency.keys WHERE scope LIKE 'cron%'")
echo "keys left after the scheduled reap: $left"
[ "$left" = fresh,live-lease ]

-- extension, a new key: claim 'new', charge, store the response, commit;
-- one round trip per statement.  :fingerprint is the request's hash, which
-- the API computes (run.sh passes a fixed 32-byte value with -D).  :key
-- is random, as clients' UUIDs are, so that claims land all over the
-- primary key's index.  A key repeated within a run (about one chance in
-- 10^9 for 100 000 keys) would replay, and complete() would then fail with
-- IK428: the run fails rather than measure a replay in its place.
\set key random(0, 9223372036854775806)
BEGIN;
SELECT outcome FROM idempotency.claim('bench', :key, :fingerprint);
INSERT INTO bench.charges (scope, idem_key, amount) VALUES ('bench', :key, 1000);
SELECT idempotency.complete('bench', :key, 201, '{"id": "ch_bench", "amount": 1000}');
COMMIT;

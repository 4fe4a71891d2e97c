-- extension, a new key (see ext-new-rtt.sql); the transaction in one
-- pipeline.
\set key random(0, 9223372036854775806)
\startpipeline
BEGIN;
SELECT outcome FROM idempotency.claim('bench', :key, :fingerprint);
INSERT INTO bench.charges (scope, idem_key, amount) VALUES ('bench', :key, 1000);
SELECT idempotency.complete('bench', :key, 201, '{"id": "ch_bench", "amount": 1000}');
COMMIT;
\endpipeline

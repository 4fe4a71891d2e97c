-- floor: the charge alone, no idempotency; the transaction in one pipeline.
\set key random(0, 9223372036854775806)
\startpipeline
BEGIN;
INSERT INTO bench.charges (scope, idem_key, amount) VALUES ('bench', :key, 1000);
COMMIT;
\endpipeline

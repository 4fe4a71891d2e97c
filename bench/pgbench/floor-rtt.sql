-- floor: the charge alone, no idempotency; one round trip per statement.
\set key random(0, 9223372036854775806)
BEGIN;
INSERT INTO bench.charges (scope, idem_key, amount) VALUES ('bench', :key, 1000);
COMMIT;

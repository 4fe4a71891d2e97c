-- hand-written PL/pgSQL (bench/plpgsql_layer.sql), a new key: the same
-- flow as ext-new-rtt.sql; one round trip per statement.
\set key random(0, 9223372036854775806)
BEGIN;
SELECT outcome FROM handmade.claim('bench', :key, :fingerprint);
INSERT INTO bench.charges (scope, idem_key, amount) VALUES ('bench', :key, 1000);
SELECT handmade.complete('bench', :key, 201, '{"id": "ch_bench", "amount": 1000}');
COMMIT;

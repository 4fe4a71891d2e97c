-- raw: the least storage work any per-request key design must do, plain SQL
-- without any safety (issue 12): a SELECT probe of a keys table with the
-- same primary key as idempotency.keys (bench/schema.sql), the charge, an
-- INSERT of the key row with its response, one transaction; one round trip
-- per statement.  ext-new over raw is what the extension's safety costs.
\set key random(0, 9223372036854775806)
BEGIN;
SELECT response_status, response_body FROM raw.keys WHERE key = :key AND scope = 'bench';
INSERT INTO bench.charges (scope, idem_key, amount) VALUES ('bench', :key, 1000);
INSERT INTO raw.keys (scope, key, fingerprint, response_status, response_body)
	VALUES ('bench', :key, :fingerprint, 201, '{"id": "ch_bench", "amount": 1000}');
COMMIT;

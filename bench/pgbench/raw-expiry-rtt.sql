-- raw-expiry: raw (raw-rtt.sql) on a keys table that also keeps each key's
-- retention time, indexed, as any design that expires its keys must
-- (bench/schema.sql); one round trip per statement.
\set key random(0, 9223372036854775806)
BEGIN;
SELECT response_status, response_body FROM raw_expiry.keys WHERE key = :key AND scope = 'bench';
INSERT INTO bench.charges (scope, idem_key, amount) VALUES ('bench', :key, 1000);
INSERT INTO raw_expiry.keys (scope, key, fingerprint, response_status, response_body)
	VALUES ('bench', :key, :fingerprint, 201, '{"id": "ch_bench", "amount": 1000}');
COMMIT;

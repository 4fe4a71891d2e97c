-- raw-expiry (see raw-expiry-rtt.sql); the transaction in one pipeline.
\set key random(0, 9223372036854775806)
\startpipeline
BEGIN;
SELECT response_status, response_body FROM raw_expiry.keys WHERE key = :key AND scope = 'bench';
INSERT INTO bench.charges (scope, idem_key, amount) VALUES ('bench', :key, 1000);
INSERT INTO raw_expiry.keys (scope, key, fingerprint, response_status, response_body)
	VALUES ('bench', :key, :fingerprint, 201, '{"id": "ch_bench", "amount": 1000}');
COMMIT;
\endpipeline

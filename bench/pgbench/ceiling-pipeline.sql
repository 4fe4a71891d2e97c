-- ceiling: the floor plus two empty statements (see ceiling-rtt.sql); the
-- transaction in one pipeline.
\set key random(0, 9223372036854775806)
\startpipeline
BEGIN;
SELECT;
INSERT INTO bench.charges (scope, idem_key, amount) VALUES ('bench', :key, 1000);
SELECT;
COMMIT;
\endpipeline

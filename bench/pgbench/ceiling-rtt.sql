-- ceiling: the floor plus two empty statements, where the extension's case
-- has its claim and its complete: what two more statements cost by
-- themselves (round trips, parsing, executor start-up), so that the
-- extension's own cost can be read off; one round trip per statement.
\set key random(0, 9223372036854775806)
BEGIN;
SELECT;
INSERT INTO bench.charges (scope, idem_key, amount) VALUES ('bench', :key, 1000);
SELECT;
COMMIT;

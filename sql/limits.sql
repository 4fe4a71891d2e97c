-- Limits a caller meets.
\set VERBOSITY default

-- lease and wait are held as milliseconds in an int (a lock timeout): at
-- most 2^31 - 1 ms, 24 days 20:31:23.647.  The error names the limit.
BEGIN;
SELECT outcome FROM idempotency.claim('limits', 'k1', '\x01',
                                      lease => '24 days 20:31:23.647');
ROLLBACK;
SELECT idempotency.claim('limits', 'k1', '\x01', lease => '24 days 20:31:23.648');
SELECT idempotency.claim('limits', 'k1', '\x01', wait => '25 days');

-- A key is the header's value as the API passes it: a proxy that folded
-- two Idempotency-Key headers into "a, b" makes one key, neither "a" nor
-- "b".
BEGIN;
SELECT outcome FROM idempotency.claim('limits', 'a, b', '\x01');
SELECT outcome FROM idempotency.claim('limits', 'a', '\x01');
SELECT outcome FROM idempotency.claim('limits', 'b', '\x01');
ROLLBACK;

-- A retention shorter than the replay window is a configuration mistake: a
-- policy row that sets only ttl, longer than idempotency.settings' retain.
-- As in the C edition (sql/windows_never_fail_closed.sql) it never stops
-- payments: the retention is raised to the window with a WARNING, once per
-- session for each bad pair of windows; a replay of a completed key is
-- served; a new key is kept for the window it was promised; mode = off
-- never raises.  Before, every claim of the scope raised 22023.
\set VERBOSITY terse
BEGIN;
SELECT outcome FROM idempotency.claim('tw', 'paid', '\x01');
SELECT idempotency.complete('tw', 'paid', 201, '{"id": "ch_1"}');
COMMIT;
SELECT retain FROM idempotency.settings;
-- The typo: the scope's window longer than the default retention.
INSERT INTO idempotency.policies (scope, ttl) VALUES ('tw', '8 days');
-- The replay is served (the WARNING comes once), and again without one.
SELECT outcome, response_body FROM idempotency.claim('tw', 'paid', '\x01');
SELECT outcome, response_body FROM idempotency.claim('tw', 'paid', '\x01');
-- A new key is new, and kept for the window it was promised.
BEGIN;
SELECT outcome FROM idempotency.claim('tw', 'fresh', '\x01');
SELECT idempotency.complete('tw', 'fresh', 201, '{"id": "ch_2"}');
COMMIT;
SELECT expires_at - created_at AS ttl, retain_until - created_at AS retain
  FROM idempotency.keys WHERE scope = 'tw' AND key = 'fresh';
-- A durable claim too.
SELECT outcome, lease_token IS NOT NULL AS has_token
  FROM idempotency.claim('tw', 'durable', '\x01', lease => '1 minute');
SELECT expires_at - created_at AS ttl,
       retain_until >= lease_expires_at + (expires_at - created_at) AS retained
  FROM idempotency.keys WHERE scope = 'tw' AND key = 'durable';
-- The kill switch works whatever the windows.
UPDATE idempotency.policies SET mode = 'off' WHERE scope = 'tw';
BEGIN;
SELECT outcome FROM idempotency.claim('tw', 'off-key', '\x02');
SELECT idempotency.release('tw', 'off-key');
COMMIT;
DELETE FROM idempotency.policies WHERE scope = 'tw';
DELETE FROM idempotency.keys WHERE scope = 'tw';

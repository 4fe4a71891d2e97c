-- A retention shorter than the replay window is a configuration mistake
-- (idempotency.ttl raised without idempotency.retain, or a policy row that
-- sets only ttl).  It never stops payments: the retention is raised to the
-- window with a WARNING, once per backend for each bad pair of windows; a
-- replay of a completed key is served; mode = off never raises.
-- Before 0.3.0 every claim raised 22023 here, replays and mode = off
-- included.

-- A completed key, stored under sane windows.
BEGIN;
SELECT outcome FROM idempotency.claim('typo', 'paid', '\x01');
SELECT idempotency.complete('typo', 'paid', 201, '{"id": "ch_1"}');
COMMIT;

-- The typo: the window raised, the retention left at its default.
SET idempotency.ttl = '8d';
SHOW idempotency.retain;

-- The replay is served (the WARNING comes once), and again without one.
SELECT outcome, response_body FROM idempotency.claim('typo', 'paid', '\x01');
SELECT outcome, response_body FROM idempotency.claim('typo', 'paid', '\x01');

-- A new key is new, and kept for the window it was promised.
BEGIN;
SELECT outcome FROM idempotency.claim('typo', 'fresh', '\x01');
SELECT idempotency.complete('typo', 'fresh', 201, '{"id": "ch_2"}');
COMMIT;
SELECT expires_at - created_at AS ttl, retain_until - created_at AS retain
  FROM idempotency.keys WHERE scope = 'typo' AND key = 'fresh';

-- A durable claim too.
SELECT outcome, lease_token IS NOT NULL AS has_token
  FROM idempotency.claim('typo', 'durable', '\x01', lease => '1 minute');
SELECT expires_at - created_at AS ttl,
       retain_until >= lease_expires_at + (expires_at - created_at) AS retained
  FROM idempotency.keys WHERE scope = 'typo' AND key = 'durable';

-- The kill switch works whatever the windows.
SET idempotency.mode = off;
BEGIN;
SELECT outcome FROM idempotency.claim('typo', 'off', '\x01');
SELECT idempotency.complete('typo', 'off', 201);
COMMIT;
SET idempotency.mode = shadow;
BEGIN;
SELECT outcome FROM idempotency.claim('typo', 'shadow', '\x01');
SELECT idempotency.complete('typo', 'shadow', 201);
COMMIT;
RESET idempotency.mode;

-- Another bad pair warns again.
SET idempotency.ttl = '9d';
SELECT outcome FROM idempotency.claim('typo', 'paid', '\x01');
RESET idempotency.ttl;

-- A policy row that sets only ttl, longer than the default retention: the
-- CHECK cannot see the default, so the row is accepted with a WARNING;
-- its scope's claims warn once and keep the window.
INSERT INTO idempotency.policies (scope, ttl) VALUES ('typo_row', '30 days');
BEGIN;
SELECT outcome FROM idempotency.claim('typo_row', 'k', '\x01');
SELECT idempotency.complete('typo_row', 'k', 201, '{"id": "ch_3"}');
COMMIT;
SELECT outcome, response_body FROM idempotency.claim('typo_row', 'k', '\x01');
SELECT expires_at - created_at AS ttl, retain_until - created_at AS retain
  FROM idempotency.keys WHERE scope = 'typo_row';
-- The default scopes are not affected by the row.
SELECT outcome, response_body FROM idempotency.claim('typo', 'paid', '\x01');

DELETE FROM idempotency.policies WHERE scope = 'typo_row';
DELETE FROM idempotency.keys WHERE scope IN ('typo', 'typo_row');

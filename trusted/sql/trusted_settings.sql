-- The trusted edition keeps what the C edition has in superuser-only
-- settings in idempotency.settings, one row only its owner writes: the
-- windows, the mode and its rollout share, and the secrets.  Each setting
-- is tested here for what it changes; the windows and the 5xx rule by the
-- shared suites too.
\set VERBOSITY terse
SELECT mode, enforce_percent, ttl, retain, fingerprint_secret = '' AS no_fingerprint_secret,
       downstream_secret = '' AS no_downstream_secret
  FROM idempotency.settings;
-- One row: an INSERT replaces it.  A retention shorter than the replay
-- window is refused.
INSERT INTO idempotency.settings (ttl, retain) VALUES ('1 hour', '1 day');
SELECT count(*), min(ttl), min(retain) FROM idempotency.settings;
INSERT INTO idempotency.settings DEFAULT VALUES;
SELECT count(*), min(ttl), min(retain) FROM idempotency.settings;
UPDATE idempotency.settings SET retain = '1 hour';
UPDATE idempotency.settings SET mode = 'on';

-- The windows of a key come from the row at its first claim.
UPDATE idempotency.settings SET ttl = '1 hour', retain = '2 hours';
BEGIN;
SELECT outcome FROM idempotency.claim('ts', 'k1', '\x01');
SELECT idempotency.complete('ts', 'k1', 201, '{"id": "ch_1"}');
COMMIT;
SELECT expires_at - created_at AS ttl, retain_until - created_at AS retain
  FROM idempotency.keys WHERE scope = 'ts' AND key = 'k1';
-- Inside the replay window: replay.  Between ttl and retain: IK410.
SELECT outcome, response_body FROM idempotency.claim('ts', 'k1', '\x01');
UPDATE idempotency.keys
   SET created_at = created_at - interval '90 minutes', expires_at = expires_at - interval '90 minutes',
       retain_until = retain_until - interval '90 minutes'
 WHERE scope = 'ts' AND key = 'k1';
SELECT outcome FROM idempotency.claim('ts', 'k1', '\x01');
\echo :LAST_ERROR_SQLSTATE
-- Past retention the key is new again, and its row is replaced.
UPDATE idempotency.keys
   SET created_at = created_at - interval '1 hour', expires_at = expires_at - interval '1 hour',
       retain_until = retain_until - interval '1 hour'
 WHERE scope = 'ts' AND key = 'k1';
BEGIN;
SELECT outcome FROM idempotency.claim('ts', 'k1', '\x02');
SELECT idempotency.complete('ts', 'k1', 201, '{"id": "ch_2"}');
COMMIT;
SELECT count(*), min(response_body::text) FROM idempotency.keys WHERE scope = 'ts' AND key = 'k1';
-- A policy row overrides the row column by column.
INSERT INTO idempotency.policies (scope, ttl) VALUES ('ts-policy', '90 minutes');
BEGIN;
SELECT outcome FROM idempotency.claim('ts-policy', 'k1', '\x01');
SELECT idempotency.complete('ts-policy', 'k1', 201, '{}');
COMMIT;
SELECT expires_at - created_at AS ttl, retain_until - created_at AS retain
  FROM idempotency.keys WHERE scope = 'ts-policy';
UPDATE idempotency.settings SET ttl = DEFAULT, retain = DEFAULT;

-- mode = off: 'new', nothing recorded, no commit guard.
UPDATE idempotency.settings SET mode = 'off';
BEGIN;
SELECT outcome FROM idempotency.claim('ts-off', 'k1', '\x01');
COMMIT;
SELECT outcome FROM idempotency.claim('ts-off', 'k1', '\x01');
SELECT count(*) AS rows_off FROM idempotency.keys WHERE scope = 'ts-off';

-- mode = shadow: 'new' always, a different request is not refused, and
-- the first response is recorded.
UPDATE idempotency.settings SET mode = 'shadow';
BEGIN;
SELECT outcome FROM idempotency.claim('ts-shadow', 'k1', '\x01');
SELECT idempotency.complete('ts-shadow', 'k1', 201, '{"first": true}');
COMMIT;
BEGIN;
SELECT outcome FROM idempotency.claim('ts-shadow', 'k1', '\x02');
SELECT idempotency.complete('ts-shadow', 'k1', 201, '{"first": false}');
COMMIT;
SELECT count(*), min(response_body::text) FROM idempotency.keys WHERE scope = 'ts-shadow';
-- Back to enforce: the recorded key replays, the other request is IK422.
UPDATE idempotency.settings SET mode = 'enforce';
SELECT outcome, response_body FROM idempotency.claim('ts-shadow', 'k1', '\x01');
SELECT outcome FROM idempotency.claim('ts-shadow', 'k1', '\x02');
\echo :LAST_ERROR_SQLSTATE

-- enforce_percent: 0 shadows every scope without a policy row; a row's
-- mode still applies.
UPDATE idempotency.settings SET enforce_percent = 0;
BEGIN;
SELECT outcome FROM idempotency.claim('ts-shadow', 'k1', '\x02');
SELECT idempotency.release('ts-shadow', 'k1');
COMMIT;
INSERT INTO idempotency.policies (scope, mode) VALUES ('ts-shadow', 'enforce');
SELECT outcome FROM idempotency.claim('ts-shadow', 'k1', '\x02');
\echo :LAST_ERROR_SQLSTATE
UPDATE idempotency.settings SET enforce_percent = DEFAULT;

-- The fingerprint secret: HMAC-SHA256 under it, SHA-256 without.
SELECT idempotency.fingerprint('\x616263'::bytea) = sha256('\x616263'::bytea) AS sha256_without_secret;
UPDATE idempotency.settings SET fingerprint_secret = 's3cr3t';
SELECT idempotency.fingerprint('\x616263'::bytea) = hmac('\x616263'::bytea, 's3cr3t'::bytea, 'sha256') AS hmac_with_secret;
UPDATE idempotency.settings SET fingerprint_secret = DEFAULT;
-- downstream_key() needs its secret.
SELECT idempotency.downstream_key('ts', 'k1', '\x01', 'capture');
\echo :LAST_ERROR_SQLSTATE
UPDATE idempotency.settings SET downstream_secret = 'd0wn';
SELECT idempotency.downstream_key('ts', 'k1', '\x01', 'capture') ~ '^ikd1_[a-z2-7]{32}$' AS key_format;
UPDATE idempotency.settings SET downstream_secret = DEFAULT;
DELETE FROM idempotency.policies WHERE scope LIKE 'ts%';
DELETE FROM idempotency.keys WHERE scope LIKE 'ts%';

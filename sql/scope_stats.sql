-- Per-scope statistics: every outcome, error and would-be outcome is
-- counted in the entry of the scope it happened in, and only there; an
-- invalid scope makes no entry; last_seen and tracked_since say when;
-- scope_stats_reset() forgets one scope or all; rollout_report() says
-- which shadowed scopes enforce would affect.
\set VERBOSITY terse
SELECT idempotency.scope_stats_reset();

-- The non-zero counters of a scope in this database, as one line.
CREATE FUNCTION pg_temp.counts(s text) RETURNS text
LANGUAGE sql AS $$
    SELECT coalesce(string_agg(c.key || '=' || c.value, ' ' ORDER BY c.key), '(none)')
      FROM idempotency.scope_stats st, jsonb_each_text(to_jsonb(st)) c
     WHERE st.database = current_database() AND st.scope = s
       AND (c.key LIKE 'claims_%' OR c.key LIKE 'errors_%' OR c.key LIKE 'shadow_%'
            OR c.key = 'releases_5xx')
       AND c.value <> '0'
$$;
CREATE FUNCTION pg_temp.has_entry(s text) RETURNS boolean
LANGUAGE sql AS $$
    SELECT EXISTS (SELECT FROM idempotency.scope_stats st
                    WHERE st.database = current_database() AND st.scope = s)
$$;

-- Enforced: new, replay, IK422.
BEGIN;
SELECT outcome FROM idempotency.claim('shop_a', 'k1', '\x01');
SELECT idempotency.complete('shop_a', 'k1', 201, '{"id": 1}');
COMMIT;
SELECT outcome FROM idempotency.claim('shop_a', 'k1', '\x01');
SELECT outcome FROM idempotency.claim('shop_a', 'k1', '\x02');
SELECT pg_temp.counts('shop_a');

-- Another scope's counts are its own: the same key there is new.
BEGIN;
SELECT outcome FROM idempotency.claim('shop_b', 'k1', '\x02');
SELECT idempotency.complete('shop_b', 'k1', 503);
COMMIT;
SELECT pg_temp.counts('shop_b') AS shop_b, pg_temp.counts('shop_a') AS shop_a;

-- IK410: a tombstone past its replay window.
INSERT INTO idempotency.keys (scope, key, fingerprint, state, response_status,
                              created_at, expires_at, retain_until)
VALUES ('shop_c', 'late', '\x01', 'completed', 200,
        now() - interval '2 days', now() - interval '1 day', now() + interval '5 days');
SELECT outcome FROM idempotency.claim('shop_c', 'late', '\x01');
-- IK409: a durable claim with a live lease, claimed again.
SELECT outcome FROM idempotency.claim('shop_c', 'd1', '\x01', lease => '1 hour');
SELECT outcome FROM idempotency.claim('shop_c', 'd1', '\x01');
-- resume: the lease lapsed.
UPDATE idempotency.keys SET lease_expires_at = now() - interval '1 second'
 WHERE scope = 'shop_c' AND key = 'd1';
SELECT outcome FROM idempotency.claim('shop_c', 'd1', '\x01');
SELECT pg_temp.counts('shop_c');

-- IK428, four ways: complete and release without the claim, a checkpoint
-- without a durable claim, and a commit with the claim still open.
SELECT idempotency.complete('shop_d', 'nothing', 200);
SELECT idempotency.release('shop_d', 'nothing');
SELECT idempotency.checkpoint('shop_d', 'nothing', 'step', gen_random_uuid());
BEGIN;
SELECT outcome FROM idempotency.claim('shop_d', 'open', '\x01');
COMMIT;
SELECT pg_temp.counts('shop_d');

-- An IK400 of the key counts nowhere per scope; an invalid scope makes no
-- entry.
SELECT outcome FROM idempotency.claim('shop_e', '', '\x01');
SELECT outcome FROM idempotency.claim(repeat('x', 256), 'k', '\x01');
SELECT pg_temp.has_entry('shop_e') AS shop_e_entry,
       (SELECT count(*) FROM idempotency.scope_stats WHERE scope LIKE 'xxx%') AS long_scope_entries;

-- Shadow: every claim is 'new'; what enforce would have done is counted,
-- and shadowed claims are told apart.
INSERT INTO idempotency.policies (scope, mode) VALUES ('tenant_sdk_bug', 'shadow'),
    ('tenant_clean', 'shadow');
BEGIN;
SELECT outcome FROM idempotency.claim('tenant_sdk_bug', 'k1', '\x01');
SELECT idempotency.complete('tenant_sdk_bug', 'k1', 201);
COMMIT;
SELECT outcome FROM idempotency.claim('tenant_sdk_bug', 'k1', '\x01');
SELECT outcome FROM idempotency.claim('tenant_sdk_bug', 'k1', '\x02');
SELECT outcome FROM idempotency.claim('tenant_sdk_bug', 'k1', '\x03');
BEGIN;
SELECT outcome FROM idempotency.claim('tenant_sdk_bug', 'k2', '\x01');
SELECT outcome FROM idempotency.claim('tenant_sdk_bug', 'k2', '\x01');
SELECT idempotency.complete('tenant_sdk_bug', 'k2', 201);
COMMIT;
INSERT INTO idempotency.keys (scope, key, fingerprint, state, response_status,
                              created_at, expires_at, retain_until)
VALUES ('tenant_sdk_bug', 'late', '\x01', 'completed', 200,
        now() - interval '2 days', now() - interval '1 day', now() + interval '5 days');
SELECT outcome FROM idempotency.claim('tenant_sdk_bug', 'late', '\x01');
BEGIN;
SELECT outcome FROM idempotency.claim('tenant_clean', 'k1', '\x01');
SELECT idempotency.complete('tenant_clean', 'k1', 201);
COMMIT;
SELECT pg_temp.counts('tenant_sdk_bug') AS sdk_bug;
SELECT pg_temp.counts('tenant_clean') AS clean;

-- last_seen and tracked_since: every entry made since the reset above is
-- complete since that reset, and was seen after it.
SELECT bool_and(st.tracked_since = i.stats_reset) AS tracked_since_reset,
       bool_and(st.last_seen >= st.tracked_since AND st.last_seen <= now()) AS seen_since
  FROM idempotency.scope_stats st, idempotency.scope_stats_info i
 WHERE st.database = current_database();
SELECT max_entries, entries, evictions, evictions_with_errors, last_eviction IS NULL AS no_eviction,
       shared_memory_bytes > max_entries * 400 AS memory_sized
  FROM idempotency.scope_stats_info;

-- The rollout report, for a shadow period that began at the reset: the
-- offender first, with its would-be errors; the clean scope is safe.  A
-- shadow period that began before the reset is not covered: nothing is
-- called safe.
SELECT scope, shadow_claims, would_409, would_422, would_410, would_replay, recommendation
  FROM idempotency.rollout_report((SELECT stats_reset FROM idempotency.scope_stats_info));
SELECT scope, regexp_replace(recommendation, 'since [^,]*,', 'since (the reset),') AS recommendation
  FROM idempotency.rollout_report((SELECT stats_reset - interval '1 day' FROM idempotency.scope_stats_info));
SELECT * FROM idempotency.rollout_report(NULL);
SELECT * FROM idempotency.rollout_report(now() + interval '1 day');

-- Resetting one scope zeroes it alone; its counts are complete from then.
SELECT idempotency.scope_stats_reset('tenant_sdk_bug');
SELECT pg_temp.counts('tenant_sdk_bug') AS sdk_bug, pg_temp.counts('tenant_clean') AS clean;
SELECT st.tracked_since > i.stats_reset AS tracked_since_moved, st.last_seen IS NULL AS not_seen
  FROM idempotency.scope_stats st, idempotency.scope_stats_info i
 WHERE st.database = current_database() AND st.scope = 'tenant_sdk_bug';
SELECT scope, recommendation
  FROM idempotency.rollout_report((SELECT stats_reset FROM idempotency.scope_stats_info));
SELECT idempotency.scope_stats_reset('');

-- Resetting all forgets every entry.
SELECT idempotency.scope_stats_reset();
SELECT count(*) AS entries FROM idempotency.scope_stats;
DELETE FROM idempotency.policies WHERE scope IN ('tenant_sdk_bug', 'tenant_clean');
DELETE FROM idempotency.keys WHERE scope IN ('shop_a', 'shop_b', 'shop_c', 'tenant_sdk_bug', 'tenant_clean');

-- SELECT (idempotency.claim(...)).* is planned as one call per output
-- column.  Before 0.3.0 each call was a claim of its own: a new key was
-- 'new' in the first column and IK409 ("This transaction holds key") in
-- the next, and the statistics counted seven claims.  The copies of one
-- call in one command now share the first call's result; a claim of the
-- same key in another statement of the transaction is still IK409.

CREATE FUNCTION pg_temp.counts(OUT claims_new bigint, OUT claims_replay bigint,
                               OUT errors_ik409 bigint)
LANGUAGE sql AS $$
    SELECT coalesce(sum(claims_new), 0), coalesce(sum(claims_replay), 0),
           coalesce(sum(errors_ik409), 0)
      FROM idempotency.stats
     WHERE dboid = (SELECT oid FROM pg_database WHERE datname = current_database())
$$;
SELECT claims_new AS new_before, claims_replay AS replay_before,
       errors_ik409 AS ik409_before FROM pg_temp.counts() \gset

BEGIN;
CREATE TEMP TABLE c1 AS SELECT (idempotency.claim('expand', 'k1', '\x01')).*;
SELECT outcome, response_status, response_headers, response_body,
       recovery_point, first_seen = now() AS first_seen_now, lease_token
  FROM c1;
-- another statement: the transaction's own claim, as before
SELECT (idempotency.claim('expand', 'k1', '\x01')).outcome;
ROLLBACK;

BEGIN;
SELECT (idempotency.claim('expand', 'k1', '\x01')).* \gset c_
SELECT idempotency.complete('expand', 'k1', 201, '{"id": "ch_1"}');
COMMIT;

-- A replay, every column from the one stored reply.
CREATE TEMP TABLE c2 AS SELECT (idempotency.claim('expand', 'k1', '\x01')).*;
SELECT outcome, response_status, response_headers, response_body,
       recovery_point, lease_token
  FROM c2;

-- A durable claim: the token of every column is the one the row holds,
-- and it completes the claim.
SELECT (idempotency.claim('expand', 'k2', '\x01', lease => '1 minute')).* \gset c_
SELECT :'c_outcome' AS outcome,
       lease_token = :'c_lease_token' AS token_is_the_rows
  FROM idempotency.keys WHERE scope = 'expand' AND key = 'k2';
SELECT idempotency.complete('expand', 'k2', 201, '{"id": "ch_2"}',
                            lease_token => :'c_lease_token');

-- One call evaluated again (a loop) is a claim again.
DO $$
BEGIN
    FOR i IN 1 .. 2 LOOP
        RAISE NOTICE 'claim %: %', i, (idempotency.claim('expand', 'k3', '\x01')).outcome;
    END LOOP;
EXCEPTION WHEN SQLSTATE 'IK409' THEN
    RAISE NOTICE 'IK409: %', SQLERRM;
END $$;

-- Four new claims, one replay, two IK409: as many as were made.
SELECT claims_new - :new_before AS claims_new,
       claims_replay - :replay_before AS claims_replay,
       errors_ik409 - :ik409_before AS errors_ik409
  FROM pg_temp.counts();

DELETE FROM idempotency.keys WHERE scope = 'expand';

-- Every bad argument is an IK400 that names the argument: never a crash,
-- never a NULL, never a silent default.
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

SELECT q AS call, pg_temp.try(q) AS result FROM (VALUES
    -- claim: NULLs
    ($$SELECT idempotency.claim(NULL, 'k', '\x01')$$),
    ($$SELECT idempotency.claim('s', NULL, '\x01')$$),
    ($$SELECT idempotency.claim('s', 'k', NULL)$$),
    -- claim: empty, too long, control characters
    ($$SELECT idempotency.claim('', 'k', '\x01')$$),
    ($$SELECT idempotency.claim('s', '', '\x01')$$),
    ($$SELECT idempotency.claim(repeat('s', 256), 'k', '\x01')$$),
    ($$SELECT idempotency.claim('s', repeat('k', 256), '\x01')$$),
    ($$SELECT idempotency.claim('s', repeat('é', 128), '\x01')$$),
    ($$SELECT idempotency.claim(E's\n', 'k', '\x01')$$),
    ($$SELECT idempotency.claim('s', E'k\t1', '\x01')$$),
    ($$SELECT idempotency.claim('s', E'k\x7f', '\x01')$$),
    ($$SELECT idempotency.claim('s', E'k\u0085', '\x01')$$),
    ($$SELECT idempotency.claim('s', 'k', ''::bytea)$$),
    ($$SELECT idempotency.claim('s', 'k', decode(repeat('00', 256), 'hex'))$$),
    -- claim: intervals
    ($$SELECT idempotency.claim('s', 'k', '\x01', wait => '-1 second')$$),
    ($$SELECT idempotency.claim('s', 'k', '\x01', wait => '-1 day +1 second')$$),
    ($$SELECT idempotency.claim('s', 'k', '\x01', wait => '1000 years')$$),
    ($$SELECT idempotency.claim('s', 'k', '\x01', lease => '-5 minutes')$$),
    -- complete
    ($$SELECT idempotency.complete(NULL, 'k', 200)$$),
    ($$SELECT idempotency.complete('s', NULL, 200)$$),
    ($$SELECT idempotency.complete('s', 'k', NULL)$$),
    ($$SELECT idempotency.complete('s', 'k', 99)$$),
    ($$SELECT idempotency.complete('s', 'k', 600)$$),
    ($$SELECT idempotency.complete('s', 'k', 200, '{}', '[1, 2]')$$),
    ($$SELECT idempotency.complete('s', 'k', 200, '{}', '"text"')$$),
    ($$SELECT idempotency.complete('', 'k', 200)$$),
    -- release
    ($$SELECT idempotency.release(NULL, 'k')$$),
    ($$SELECT idempotency.release('s', NULL)$$),
    ($$SELECT idempotency.release('s', repeat('k', 300))$$),
    -- fingerprint
    ($$SELECT idempotency.fingerprint(NULL, '/p', '{}'::jsonb)$$),
    ($$SELECT idempotency.fingerprint('POST', NULL, '{}'::jsonb)$$),
    ($$SELECT idempotency.fingerprint('POST', '/p', NULL::jsonb)$$),
    ($$SELECT idempotency.fingerprint('POST', '/p', NULL::text)$$),
    ($$SELECT idempotency.fingerprint(NULL::bytea)$$),
    ($$SELECT idempotency.fingerprint('', '/p', '{}'::jsonb)$$),
    ($$SELECT idempotency.fingerprint('PO ST', '/p', '{}'::jsonb)$$),
    ($$SELECT idempotency.fingerprint(repeat('P', 33), '/p', '{}'::jsonb)$$),
    ($$SELECT idempotency.fingerprint('POST', '', '{}'::jsonb)$$),
    ($$SELECT idempotency.fingerprint('POST', E'/p\r\n', '{}'::jsonb)$$),
    ($$SELECT idempotency.fingerprint('POST', '/' || repeat('p', 8192), '{}'::jsonb)$$),
    -- non-JSON bodies given as text
    ($$SELECT idempotency.fingerprint('POST', '/p', 'not json')$$),
    ($$SELECT idempotency.fingerprint('POST', '/p', '{"a": 1')$$),
    ($$SELECT idempotency.fingerprint('POST', '/p', '')$$),
    ($$SELECT idempotency.fingerprint('POST', '/p', '{"a": "\u0000"}')$$),
    ($$SELECT idempotency.fingerprint('POST', '/p', '[1e1000000]')$$)
) AS t(q);

-- The limits themselves are accepted.
SELECT q AS call, pg_temp.try(q) AS result FROM (VALUES
    ($$SELECT idempotency.fingerprint('POST', '/' || repeat('p', 8191), '{}'::jsonb)$$),
    ($$SELECT idempotency.fingerprint(repeat('P', 32), '/p', '{}'::jsonb)$$),
    ($$SELECT idempotency.fingerprint('M-SEARCH', '/p', '{}'::jsonb)$$),
    ($$SELECT idempotency.fingerprint('POST', '/p', 'null'::jsonb)$$),
    ($$SELECT idempotency.release(repeat('s', 255), repeat('k', 255))
        FROM idempotency.claim(repeat('s', 255), repeat('k', 255),
                               decode(repeat('00', 255), 'hex'), wait => '0')$$),
    ($$SELECT idempotency.release('s', 'ключ-é-🔑')
        FROM idempotency.claim('s', 'ключ-é-🔑', '\x01')$$)
) AS t(q);

-- A failed claim leaves nothing behind.
SELECT count(*) AS rows_written FROM idempotency.keys
 WHERE scope IN ('s', repeat('s', 255));

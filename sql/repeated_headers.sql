-- A response header that repeats (Set-Cookie, Link, Vary) is stored as an
-- array of its values under one name: a JSON object keeps one value per
-- key, so {"Set-Cookie": "a", "Set-Cookie": "b"} would replay only "b".
-- The array form round-trips, order and duplicates included.

BEGIN;
SELECT outcome FROM idempotency.claim('headers', 'k1', '\x01');
SELECT idempotency.complete('headers', 'k1', 201, '{"id": "ch_1"}',
    '{"Set-Cookie": ["session=a; Path=/", "theme=b", "theme=b"], "Content-Type": "application/json"}');
COMMIT;
SELECT outcome, response_headers,
       response_headers->'Set-Cookie' AS set_cookie,
       jsonb_array_length(response_headers->'Set-Cookie') AS cookies
  FROM idempotency.claim('headers', 'k1', '\x01');

-- The object form keeps the last value only: what jsonb does to any
-- object, before the extension sees it.
SELECT '{"Set-Cookie": "a", "Set-Cookie": "b"}'::jsonb AS collapsed;

DELETE FROM idempotency.keys WHERE scope = 'headers';

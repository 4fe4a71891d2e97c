-- Fingerprints: bodies equal as jsonb fingerprint equal, different
-- requests do not, and the hashes are pgcrypto's SHA-256 and HMAC-SHA256.
CREATE FUNCTION pg_temp.fp(method text, path text, body jsonb) RETURNS bytea
    LANGUAGE sql AS $$ SELECT idempotency.fingerprint(method, path, body) $$;

-- Equal as jsonb: key order, white space, duplicate keys, number spelling.
SELECT pg_temp.fp('POST', '/v1/charges', '{"amount": 1000, "currency": "eur"}')
     = pg_temp.fp('POST', '/v1/charges', '{ "currency":"eur",
                                              "amount" :  1000 }') AS key_order_and_space;
SELECT pg_temp.fp('POST', '/p', '{"a": 1, "a": 2}')
     = pg_temp.fp('POST', '/p', '{"a": 2}') AS duplicate_keys_last_wins;
SELECT pg_temp.fp('POST', '/p', '{"amount": 1000}')
     = pg_temp.fp('POST', '/p', '{"amount": 1000.0}') AS trailing_zeros,
       pg_temp.fp('POST', '/p', '{"amount": 1000}')
     = pg_temp.fp('POST', '/p', '{"amount": 1e3}') AS exponent,
       pg_temp.fp('POST', '/p', '{"amount": 0}')
     = pg_temp.fp('POST', '/p', '{"amount": -0.00}') AS negative_zero,
       pg_temp.fp('POST', '/p', '[0.5]')
     = pg_temp.fp('POST', '/p', '[5E-1]') AS fraction;
SELECT pg_temp.fp('POST', '/p', '{"s": "\u00e9"}')
     = pg_temp.fp('POST', '/p', '{"s": "é"}') AS unicode_escape;
SELECT pg_temp.fp('post', '/p', '{}') = pg_temp.fp('POST', '/p', '{}') AS method_case,
       pg_temp.fp('PoSt', '/p', '{}') = pg_temp.fp('POST', '/p', '{}') AS method_mixed_case;

-- Whatever jsonb's = says, the fingerprints say too.
SELECT a, b, (a::jsonb = b::jsonb) AS jsonb_equal,
       (pg_temp.fp('POST', '/p', a::jsonb) = pg_temp.fp('POST', '/p', b::jsonb)) AS fingerprint_equal
  FROM (VALUES ('1', '1.00'),
               ('1', '"1"'),
               ('[1, 2]', '[2, 1]'),
               ('{"a": [1, {"b": null}]}', '{"a":[1.0,{"b":null}]}'),
               ('{"a": {}}', '{"a": []}'),
               ('null', '"null"'),
               ('true', '"true"'),
               ('[1]', '1'),
               ('[[]]', '[]'),
               ('{"ab": "c"}', '{"a": "bc"}'),
               ('["ab", "c"]', '["a", "bc"]'),
               ('{"a": 1, "b": 2}', '{"b": 2, "a": 1}')) AS t(a, b);

-- Method, path and body each count.
SELECT pg_temp.fp('POST', '/p', '{}') = pg_temp.fp('PUT', '/p', '{}') AS other_method,
       pg_temp.fp('POST', '/p', '{}') = pg_temp.fp('POST', '/q', '{}') AS other_path,
       pg_temp.fp('POST', '/p', '{}') = pg_temp.fp('POST', '/p', '[]') AS other_body,
       pg_temp.fp('POST', '/p/', '{}') = pg_temp.fp('POST', '/p', '"/"') AS path_body_boundary;

-- A body given as text is parsed as JSON first.
SELECT idempotency.fingerprint('POST', '/p', '{"b": 1, "a": 2}'::text)
     = pg_temp.fp('POST', '/p', '{"a": 2, "b": 1.0}') AS text_body;

-- 32 bytes of SHA-256, the same as pgcrypto's digest().
SELECT length(pg_temp.fp('POST', '/p', '{}')) AS bytes;
SELECT idempotency.fingerprint('\x616263'::bytea) = digest('\x616263'::bytea, 'sha256') AS sha256,
       idempotency.fingerprint(''::bytea) = digest(''::bytea, 'sha256') AS sha256_empty,
       encode(idempotency.fingerprint('abc'::bytea), 'hex') AS sha256_abc;

-- With a secret, HMAC-SHA256, the same as pgcrypto's hmac().
SELECT pg_temp.fp('POST', '/p', '{"a": 1}') AS unkeyed \gset
SET idempotency.fingerprint_secret = 's3cr3t';
SELECT idempotency.fingerprint('abc'::bytea) = hmac('abc'::bytea, 's3cr3t'::bytea, 'sha256') AS hmac_sha256;
SELECT pg_temp.fp('POST', '/p', '{"a": 1}') <> :'unkeyed' AS secret_changes_fingerprint,
       pg_temp.fp('POST', '/p', '{"a": 1}') = pg_temp.fp('POST', '/p', '{"a": 1.0}') AS still_canonical;
SHOW idempotency.fingerprint_secret;
RESET idempotency.fingerprint_secret;
SELECT pg_temp.fp('POST', '/p', '{"a": 1}') = :'unkeyed' AS unkeyed_again;

-- A 10 MB body fingerprints fine, as jsonb and as bytes.
SELECT length(pg_temp.fp('POST', '/big',
              jsonb_build_object('blob', repeat('x', 10 * 1024 * 1024)))) AS big_jsonb,
       length(idempotency.fingerprint(convert_to(repeat('y', 10 * 1024 * 1024), 'UTF8'))) AS big_bytes;
SELECT pg_temp.fp('POST', '/big', jsonb_build_object('a', (SELECT jsonb_agg(g) FROM generate_series(1, 200000) g)))
     = pg_temp.fp('POST', '/big', jsonb_build_object('a', (SELECT jsonb_agg(g::numeric * 1.0) FROM generate_series(1, 200000) g))) AS big_array_canonical;

-- Keys and scopes with every character from U+0001 to U+00FF, multibyte
-- characters at the 255/256-byte edges, and invalid UTF-8, which never
-- reaches the extension because text cannot hold it.
SELECT current_setting('server_encoding') AS encoding;
-- One statement here claims hundreds of keys, each holding its lock until
-- the transaction ends: more than the default limit per transaction.
SET idempotency.max_key_locks = 1000;

CREATE FUNCTION pg_temp.verdict(s text, k text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM idempotency.release(s, k) FROM idempotency.claim(s, k, '\x01');
    RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;

-- Each character in a key and in a scope: C0 controls, DEL and the C1
-- controls are IK400; everything else is accepted.
SELECT kind, verdict, count(*) AS characters,
       min(n) AS first_code_point, max(n) AS last_code_point
  FROM (SELECT n,
               CASE WHEN n < 32 THEN 'C0 control' WHEN n = 127 THEN 'DEL'
                    WHEN n BETWEEN 128 AND 159 THEN 'C1 control' ELSE 'printable' END AS kind,
               pg_temp.verdict('scope', 'key-' || chr(n)) AS verdict,
               pg_temp.verdict('scope-' || chr(n), 'key') AS scope_verdict
          FROM generate_series(1, 255) n) t
 WHERE verdict = scope_verdict
 GROUP BY kind, verdict ORDER BY first_code_point;
-- ... and the key and scope verdicts never differ:
SELECT count(*) AS differing
  FROM generate_series(1, 255) n
 WHERE pg_temp.verdict('scope', 'key-' || chr(n)) <> pg_temp.verdict('scope-' || chr(n), 'key');

-- Byte edges with multibyte characters: 255 bytes pass, 256 do not, however
-- the bytes are made of.
SELECT label, octet_length(k) AS bytes, length(k) AS characters, pg_temp.verdict('edge', k) AS verdict
  FROM (VALUES ('255 ASCII', repeat('a', 255)),
               ('256 ASCII', repeat('a', 256)),
               ('254 ASCII + 2-byte', repeat('a', 253) || 'é'),
               ('253 ASCII + 2-byte', repeat('a', 254) || 'é'),
               ('85 x 3-byte', repeat('€', 85)),
               ('85 x 3-byte + 1', repeat('€', 85) || 'a'),
               ('63 x 4-byte + 3', repeat('🔑', 63) || 'abc'),
               ('64 x 4-byte', repeat('🔑', 64))) AS t(label, k);

-- Invalid UTF-8 cannot become text: convert_from() refuses it first.
SELECT idempotency.claim('edge', convert_from('\xff'::bytea, 'UTF8'), '\x01');
SELECT idempotency.claim(convert_from('\xc328'::bytea, 'UTF8'), 'k', '\x01');
SELECT idempotency.claim('edge', convert_from('\xeda080'::bytea, 'UTF8'), '\x01');
-- The same bytes are fine as a fingerprint, and as a body given as bytes.
SELECT length(idempotency.fingerprint('\xfffe00c328'::bytea)) AS fingerprint_bytes;
SELECT pg_temp.verdict('edge', 'nul-free') AS plain;

#!/usr/bin/env bash
# trusted/same_bytes.sh TRUSTED_DB C_DB OUTDIR (from trusted/test.sh, as a
# superuser): the trusted edition in TRUSTED_DB and the C edition, created here
# in C_DB, compute the same fingerprints and downstream keys, byte for byte, for
# the test vectors and a generated corpus of JSON bodies (key order, duplicate
# keys, number spellings, nesting, Unicode, escapes, top-level scalars), for
# methods in every case and paths, under no secret and under two secrets.
set -euo pipefail
tdb=$1 cdb=$2 out=$3
q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

q -d "$cdb" -c 'CREATE EXTENSION IF NOT EXISTS pgcrypto' -c 'CREATE EXTENSION IF NOT EXISTS idempotency'

# The corpus: the vectors by hand, then bodies generated from a fixed seed.
q -d "$tdb" <<'SQL'
DROP TABLE IF EXISTS public.corpus;
CREATE TABLE public.corpus (id serial PRIMARY KEY, method text, path text, body text);
INSERT INTO public.corpus (method, path, body)
SELECT m, p, b
  FROM unnest(ARRAY['POST', 'post', 'Post', 'PUT', 'x-Custom.Verb_1']) AS m,
       unnest(ARRAY['/v1/charges', '/v1/charges/ch_1/capture?expand[]=x', '/é/ü/日本', '/']) AS p,
       unnest(ARRAY[
         '{"amount": 1000, "currency": "eur"}',
         '{"currency": "eur", "amount": 1000}',
         '{"amount": 1000.0, "currency": "eur"}',
         '{"amount": 1e3, "currency": "eur"}',
         '{"amount": 1.000E+3, "currency": "eur"}',
         '{"amount": 10000e-1}',
         '{"a": 1, "a": 2}',
         '{"a": 2}',
         '{"a": {"b": 1, "b": {"c": [1, 2, 3]}}, "a": {"z": null}}',
         '{}', '[]', 'null', 'true', 'false', '0', '-0', '-0.0', '0.000', '"x"', '""',
         '12345678901234567890.123456789000',
         '1e-20', '-1.5E-7', '100', '100.00', '1.10',
         '[1, "1", 1.0, true, null, [], {}, [[[]]], {"": ""}]',
         '{"b": 1, "a": 1, "aa": 1, "ab": 1, "B": 1, "é": 1, "e": 1, "日本": 1, "": 0}',
         '{"name": "Zoë", "emoji": "💳🔑", "cjk": "支付", "combining": "e\u0301", "nfc": "é"}',
         '{"escaped": "\u00e9\ud83d\udcb3\n\t\"\\/", "slash": "a\/b"}',
         '{"deep": [[[[[[[[[[{"k": [1, {"k": [2]}]}]]]]]]]]]]}',
         '   {  "spaced"  :  [ 1 ,  2 ]  }   ',
         '{"amount": 1000, "metadata": {"order_id": "6735", "items": [{"sku": "a", "qty": 2.50}]}}'
       ]) AS b;
-- Generated bodies: objects of up to 8 keys drawn from a small alphabet (so
-- that duplicates occur), values of every kind, numbers in several spellings,
-- nested to depth 3.
SELECT setseed(0.26);
CREATE FUNCTION pg_temp.gen(depth int) RETURNS text LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	kind int := floor(random() * CASE WHEN depth > 2 THEN 6 ELSE 8 END);
	n int;
	r text;
	num numeric;
BEGIN
	CASE kind
	WHEN 0 THEN RETURN 'null';
	WHEN 1 THEN RETURN CASE WHEN random() < 0.5 THEN 'true' ELSE 'false' END;
	WHEN 2, 3 THEN
		num := round((random() * 20000 - 10000)::numeric, floor(random() * 4)::int);
		RETURN (ARRAY[num::text, num::text || '0', (num * 10)::text || 'e-1',
					  CASE WHEN scale(num) = 0 THEN num::text || '.000' ELSE num::text || '00' END])[1 + floor(random() * 4)::int];
	WHEN 4, 5 THEN
		RETURN to_json((ARRAY['eur', 'usd', 'Zoë', '💳', '支付', 'a"b', 'back\slash', 'tab	x', '', 'e' || chr(769)])[1 + floor(random() * 10)::int])::text;
	WHEN 6 THEN
		n := floor(random() * 4);
		SELECT '[' || coalesce(string_agg(pg_temp.gen(depth + 1), ', '), '') || ']' INTO r FROM generate_series(1, n);
		RETURN r;
	ELSE
		n := floor(random() * 8);
		SELECT '{' || coalesce(string_agg(to_json((ARRAY['a', 'b', 'amount', 'currency', 'é', 'aa', 'B', '日本'])[1 + floor(random() * 8)::int])::text
										   || ': ' || pg_temp.gen(depth + 1), ', '), '') || '}' INTO r
		  FROM generate_series(1, n);
		RETURN r;
	END CASE;
END $$;
INSERT INTO public.corpus (method, path, body)
SELECT (ARRAY['POST', 'post', 'DELETE'])[1 + i % 3], '/v1/r/' || i, pg_temp.gen(0)
  FROM generate_series(1, 2000) AS i;
SQL
q -d "$tdb" -c "\\copy public.corpus TO '$out/corpus.csv' CSV"
q -d "$cdb" -c 'DROP TABLE IF EXISTS public.corpus' \
  -c 'CREATE TABLE public.corpus (id int PRIMARY KEY, method text, path text, body text)' \
  -c "\\copy public.corpus FROM '$out/corpus.csv' CSV"

# The same query in both databases; SETUP sets the secrets each edition's way.
digests() {  # digests DB SETUP
  q -d "$1" -At <<SQL
$2
SELECT c.id, encode(idempotency.fingerprint(c.method, c.path, c.body::jsonb), 'hex'),
       encode(idempotency.fingerprint(c.method, c.path, c.body), 'hex'),
       encode(idempotency.fingerprint(convert_to(c.body, 'UTF8')), 'hex'),
       idempotency.downstream_key('scope-' || c.id % 7, 'key/' || c.id,
                                  idempotency.fingerprint(c.method, c.path, c.body::jsonb),
                                  (ARRAY['authorize', 'capture', 'refund', 'é'])[1 + c.id % 4])
  FROM public.corpus AS c ORDER BY c.id;
SQL
}
fail=0
for secret in '' 's3cr3t' 'sécret 🔑 with spaces'; do
  lit=$(printf "%s" "$secret" | sed "s/'/''/g")
  digests "$tdb" "UPDATE idempotency.settings SET fingerprint_secret = '$lit', downstream_secret = 'down-$lit';" >"$out/trusted.digests"
  digests "$cdb" "LOAD 'idempotency'; SET idempotency.fingerprint_secret = '$lit'; SET idempotency.downstream_secret = 'down-$lit';" >"$out/c.digests"
  n=$(wc -l <"$out/c.digests")
  if [ "$n" -lt 2000 ] || ! diff -q "$out/c.digests" "$out/trusted.digests" >/dev/null; then
    echo "secret '$secret': the editions differ on $(diff "$out/c.digests" "$out/trusted.digests" | grep -c '^>') of $n rows"
    diff "$out/c.digests" "$out/trusted.digests" | head -n 10
    fail=1
  else
    echo "secret '$secret': $n rows, 4 values each, the same bytes"
  fi
done
q -d "$tdb" -c "UPDATE idempotency.settings SET fingerprint_secret = '', downstream_secret = ''"

# Bodies equal as jsonb have equal fingerprints, and unequal ones unequal.
q -d "$tdb" -At >"$out/classes" <<'SQL'
SELECT count(DISTINCT (upper(method), path, body::jsonb)) = count(DISTINCT idempotency.fingerprint(method, path, body))
  FROM public.corpus;
SQL
[ "$(cat "$out/classes")" = t ] || { echo "fingerprints do not partition the corpus as jsonb equality does"; fail=1; }
exit $fail

#!/usr/bin/env bash
# trusted/pgtle_body.sh OUTDIR (from trusted/test.sh, as root in the private
# overlay, with a superuser connection): what can be verified of
# dist/trusted/idempotency-pgtle.sql without pg_tle, which Debian does not package.
#   1. The body passed to pgtle.install_extension() is the source with its
#      --@extension-only lines kept, byte for byte, and the file parses: run
#      where pg_tle is absent, it fails at the missing schema pgtle, not earlier.
#   2. That body runs as an extension script, which is how pg_tle runs it: it
#      is installed here as a trusted extension (idempotency_tle_body, the body
#      unchanged), created by the role that is not a superuser (its objects then
#      belong to the bootstrap superuser, under pg_tle to that role); the payment flow
#      runs, and pg_dump keeps its keys, policies and settings
#      (pg_extension_config_dump), which only an extension script can register.
set -euo pipefail
out=$1
q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
owner() { PGPASSWORD=ikowner psql -X -q -v ON_ERROR_STOP=1 -U ikowner "$@"; }
wrapper=dist/trusted/idempotency-pgtle.sql

# 1. the body, and the wrapper's syntax
sed -n '/^\$_pgtle_\$$/,/^\$_pgtle_\$,$/p' "$wrapper" | sed '1d;$d' >"$out/tle-body.sql"
{ sed -e '/^--@extension-only$/d' -e '/^--@end$/d' trusted/idempotency.sql
  echo "COMMENT ON SCHEMA idempotency IS 'idempotency $(sed -nE "s/^default_version *= *'([^']+)'.*/\1/p" idempotency.control) (trusted edition)';"
} >"$out/expected-body.sql"
cmp "$out/tle-body.sql" "$out/expected-body.sql"
grep -q "pg_extension_config_dump('idempotency.keys'" "$out/tle-body.sql"
q -c 'CREATE DATABASE tle_parse'
if q -d tle_parse -f "$wrapper" 2>"$out/tle-parse.err"; then echo "the wrapper ran without pg_tle"; exit 1; fi
grep -q 'schema "pgtle" does not exist' "$out/tle-parse.err" || { cat "$out/tle-parse.err"; exit 1; }

# 2. the body as the script of a trusted extension
extdir=$(pg_config --sharedir)/extension
version=$(sed -nE "s/^default_version *= *'([^']+)'.*/\1/p" idempotency.control)
trap 'rm -f "$extdir/idempotency_tle_body.control" "$extdir/idempotency_tle_body--$version.sql"' EXIT
cp "$out/tle-body.sql" "$extdir/idempotency_tle_body--$version.sql"
cat >"$extdir/idempotency_tle_body.control" <<CONTROL
comment = 'the body of dist/trusted/idempotency-pgtle.sql, as pg_tle would install it'
default_version = '$version'
requires = 'pgcrypto'
trusted = true
relocatable = false
CONTROL
q -c 'CREATE DATABASE tle_body OWNER ikowner'
owner -d tle_body -c 'CREATE EXTENSION idempotency_tle_body CASCADE'
# A trusted extension's objects belong to the bootstrap superuser (under
# pg_tle they belong to the role that creates the extension), so the owner's
# steps run as the superuser here.
q -d tle_body <<'SQL'
INSERT INTO idempotency.policies (scope, ttl) VALUES ('m', '2 days');
UPDATE idempotency.settings SET fingerprint_secret = 'tle';
BEGIN;
SELECT outcome FROM idempotency.claim('m', 'k1', idempotency.fingerprint('POST', '/v1/charges', '{"amount": 1000}'));
SELECT idempotency.complete('m', 'k1', 201, '{"id": "ch_1"}');
COMMIT;
SQL
pg_dump tle_body >"$out/tle-body.dump"
grep -q 'CREATE EXTENSION IF NOT EXISTS idempotency_tle_body' "$out/tle-body.dump"
q -c 'CREATE DATABASE tle_restored'
q -d tle_restored -f "$out/tle-body.dump" >/dev/null
replay=$(q -d tle_restored -At -c "SELECT outcome || ' ' || response_body::text FROM idempotency.claim('m', 'k1',
           idempotency.fingerprint('POST', '/v1/charges', '{\"amount\": 1000.0}'))")
[ "$replay" = 'replay {"id": "ch_1"}' ] || { echo "after the restore: $replay"; exit 1; }
owner -d tle_body -c 'DROP EXTENSION idempotency_tle_body'
[ "$(q -d tle_body -At -c "SELECT count(*) FROM pg_namespace WHERE nspname = 'idempotency'")" = 0 ]
echo "the pg_tle body: identical to the source, an extension script a non-superuser creates, dumped and restored: replay"

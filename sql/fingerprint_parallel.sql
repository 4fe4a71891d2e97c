-- fingerprint() in parallel plans.  The 0.2.0 catalog marks it PARALLEL
-- SAFE, so it runs in the workers: a body that is not JSON is still an
-- IK400 there (0.1.0 parsed a text body in a subtransaction, which no
-- parallel operation may start, so such a plan failed with 25000).  The
-- secrets never reach a worker, so with one set a worker refuses to hash
-- instead of hashing without it (before 0.3.0 it returned plain SHA-256);
-- 0.3.0 marks the functions PARALLEL RESTRICTED: they run in the leader,
-- and a parallel plan computes exactly what a serial one does.
CREATE TABLE public.fp_bodies AS
    SELECT g, format('{"amount": %s, "currency": "eur"}', g) AS body
      FROM generate_series(1, 20000) g;
ANALYZE public.fp_bodies;
SELECT proname, proparallel FROM pg_proc
 WHERE pronamespace = 'idempotency'::regnamespace
   AND proname IN ('fingerprint', 'downstream_key')
 ORDER BY proname, pg_get_function_arguments(oid);
-- The 0.2.0 catalog.
ALTER FUNCTION idempotency.fingerprint(text, text, jsonb) PARALLEL SAFE;
ALTER FUNCTION idempotency.fingerprint(text, text, text) PARALLEL SAFE;
ALTER FUNCTION idempotency.fingerprint(bytea) PARALLEL SAFE;
SET max_parallel_workers_per_gather = 2;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
-- every row in a worker
SET parallel_leader_participation = off;
EXPLAIN (COSTS OFF)
SELECT count(*) FROM public.fp_bodies
 WHERE idempotency.fingerprint('POST', '/v1/charges', body) IS NOT NULL;
SELECT count(*) FROM public.fp_bodies
 WHERE idempotency.fingerprint('POST', '/v1/charges', body) IS NOT NULL;
-- equal to the serial result, row by row
SELECT count(DISTINCT idempotency.fingerprint('POST', '/v1/charges', body)) AS distinct_fingerprints
  FROM public.fp_bodies;
SELECT count(*) AS unlike_sha256 FROM public.fp_bodies
 WHERE idempotency.fingerprint(convert_to(body, 'UTF8'))
       <> digest(convert_to(body, 'UTF8'), 'sha256');
-- (in a worker: the message only)
UPDATE public.fp_bodies SET body = '{"amount": ' WHERE g = 12345;
\set VERBOSITY terse
SELECT count(*) FROM public.fp_bodies
 WHERE idempotency.fingerprint('POST', '/v1/charges', body) IS NOT NULL;
UPDATE public.fp_bodies SET body = '{"amount": 12345}' WHERE g = 12345;

-- With a secret (SET), a worker refuses rather than hash without it.
SET idempotency.fingerprint_secret = 'parallel-secret';
SELECT count(*) AS unlike_hmac FROM public.fp_bodies
 WHERE idempotency.fingerprint(convert_to(body, 'UTF8'))
       <> hmac(convert_to(body, 'UTF8'), 'parallel-secret', 'sha256');
SELECT count(*) FROM public.fp_bodies
 WHERE idempotency.fingerprint('POST', '/v1/charges', body) IS NOT NULL;
RESET idempotency.fingerprint_secret;
-- ... also a secret from ALTER DATABASE (as from postgresql.conf).
SELECT current_database() AS db \gset
ALTER DATABASE :"db" SET idempotency.fingerprint_secret = 'parallel-secret';
\c -
SET max_parallel_workers_per_gather = 2;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET parallel_leader_participation = off;
\set VERBOSITY terse
SELECT count(*) AS unlike_hmac FROM public.fp_bodies
 WHERE idempotency.fingerprint(convert_to(body, 'UTF8'))
       <> hmac(convert_to(body, 'UTF8'), 'parallel-secret', 'sha256');

-- The 0.3.0 catalog: the functions run in the leader, keyed.
ALTER FUNCTION idempotency.fingerprint(text, text, jsonb) PARALLEL RESTRICTED;
ALTER FUNCTION idempotency.fingerprint(text, text, text) PARALLEL RESTRICTED;
ALTER FUNCTION idempotency.fingerprint(bytea) PARALLEL RESTRICTED;
EXPLAIN (COSTS OFF)
SELECT count(*) AS unlike_hmac FROM public.fp_bodies
 WHERE idempotency.fingerprint(convert_to(body, 'UTF8'))
       <> hmac(convert_to(body, 'UTF8'), 'parallel-secret', 'sha256');
SELECT count(*) AS unlike_hmac FROM public.fp_bodies
 WHERE idempotency.fingerprint(convert_to(body, 'UTF8'))
       <> hmac(convert_to(body, 'UTF8'), 'parallel-secret', 'sha256');
ALTER DATABASE :"db" RESET idempotency.fingerprint_secret;
SET idempotency.fingerprint_secret = 'parallel-secret';
SELECT count(*) AS unlike_hmac FROM public.fp_bodies
 WHERE idempotency.fingerprint(convert_to(body, 'UTF8'))
       <> hmac(convert_to(body, 'UTF8'), 'parallel-secret', 'sha256');
RESET idempotency.fingerprint_secret;
\set VERBOSITY default
RESET max_parallel_workers_per_gather;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET parallel_leader_participation;
DROP TABLE public.fp_bodies;

-- fingerprint() is PARALLEL SAFE and is: a parallel plan over it runs, in
-- the workers too, and a body that is not JSON is still an IK400 there.
-- 0.1.0 parsed a text body in a subtransaction, which no parallel
-- operation may start, so such a plan failed with 25000.
CREATE TABLE public.fp_bodies AS
    SELECT g, format('{"amount": %s, "currency": "eur"}', g) AS body
      FROM generate_series(1, 20000) g;
ANALYZE public.fp_bodies;
SET max_parallel_workers_per_gather = 2;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
EXPLAIN (COSTS OFF)
SELECT count(*) FROM public.fp_bodies
 WHERE idempotency.fingerprint('POST', '/v1/charges', body) IS NOT NULL;
SELECT count(*) FROM public.fp_bodies
 WHERE idempotency.fingerprint('POST', '/v1/charges', body) IS NOT NULL;
-- equal to the serial result, row by row
SELECT count(DISTINCT idempotency.fingerprint('POST', '/v1/charges', body)) AS distinct_fingerprints
  FROM public.fp_bodies;
-- (in a worker or the leader, whichever reads the row: the message only)
UPDATE public.fp_bodies SET body = '{"amount": ' WHERE g = 12345;
\set VERBOSITY terse
SELECT count(*) FROM public.fp_bodies
 WHERE idempotency.fingerprint('POST', '/v1/charges', body) IS NOT NULL;
\set VERBOSITY default
RESET max_parallel_workers_per_gather;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
DROP TABLE public.fp_bodies;

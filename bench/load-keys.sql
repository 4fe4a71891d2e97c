-- bench/load-keys.sql: :rows completed keys of scope 'bench' in
-- idempotency.keys, for the benchmarks' large tables.  The keys are spread
-- like random ones (an odd multiplier is a bijection modulo 2^63, so they
-- are distinct), so that a claim lands among them in the primary key's
-- index as it would among real keys; they were created over one day, the
-- first :'since' ago, each kept 1 day to replay and 7 to retain.
--     psql -v rows=N -v since='8 days' -v fingerprint='\x..' -f bench/load-keys.sql
INSERT INTO idempotency.keys
	(scope, key, fingerprint, state, response_status, response_body,
	 created_at, expires_at, retain_until)
SELECT 'bench', key, :'fingerprint', 'completed', 201, '{"id": "ch_bench", "amount": 1000}',
	   created_at, created_at + interval '1 day', created_at + interval '7 days'
  FROM (SELECT ((i * 6364136223846793005::numeric) % 9223372036854775808)::bigint::text AS key,
			   now() - :'since'::interval + i * (interval '1 day' / :rows) AS created_at
		  FROM generate_series(1, :rows) AS i) AS k;

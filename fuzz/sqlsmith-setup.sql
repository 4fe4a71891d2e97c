-- fuzz/sqlsmith-setup.sql: the database sqlsmith fuzzes (fuzz/run.sh).
-- The extension with rows in every state, policies, a charges table, and
-- views that call the extension's functions per row, so that sqlsmith's
-- random queries (which reference tables far more often than they call a
-- given function) run claim(), fingerprint() and read_stats() inside
-- joins, subqueries, aggregates and LATERAL.  sqlsmith connects as the
-- role fuzz: no superuser, so it cannot write files, signal other
-- backends or change server settings.
\set ON_ERROR_STOP 1
CREATE EXTENSION idempotency CASCADE;

INSERT INTO idempotency.policies (scope, mode, ttl, retain, cache_5xx) VALUES
	('merchant_shadow', 'shadow', NULL, NULL, NULL),
	('merchant_off', 'off', NULL, NULL, NULL),
	('merchant_5xx', 'enforce', '1 hour', '2 days', true),
	('short', 'enforce', '1 second', '1 second', false),
	('long', NULL, '30 days', '1 year', NULL);

-- Completed keys, with assorted bodies and headers, each key in a
-- transaction of its own as a request makes it (one transaction may hold
-- only idempotency.max_key_locks key locks).
DO $$
DECLARE
	body jsonb;
	scope text;
BEGIN
	FOR i IN 1..60 LOOP
		body := jsonb_build_object('amount', i * 100, 'currency', 'eur',
			'meta', jsonb_build_object('n', i::numeric / 7, 'tiny', 1e-300::numeric,
									   'huge', 1e300::numeric, 's', 'é🔑' || repeat('x', i)));
		PERFORM idempotency.claim('merchant_' || (i % 4), 'key-' || i,
								  idempotency.fingerprint('POST', '/v1/charges', body));
		PERFORM idempotency.complete('merchant_' || (i % 4), 'key-' || i,
									 (ARRAY[200, 201, 202, 402, 409])[1 + i % 5],
									 jsonb_build_object('id', 'ch_' || i, 'request', body),
									 '{"Content-Type": "application/json"}');
		COMMIT;
	END LOOP;
	-- keys under the policies: shadowed, off, 5xx stored, soon past
	-- retention; each in a transaction of its own, since a transaction
	-- that frees a key (a 5xx not stored) must not commit other writes
	FOREACH body IN ARRAY ARRAY['{}', '[]', 'null', '{"a": [1, 2.50, -0]}']::jsonb[] LOOP
		FOREACH scope IN ARRAY ARRAY['merchant_shadow', 'merchant_off', 'merchant_5xx', 'short'] LOOP
			PERFORM idempotency.claim(scope, md5(body::text),
									  idempotency.fingerprint('PUT', '/v1/x', body));
			PERFORM idempotency.complete(scope, md5(body::text), 503, body);
			COMMIT;
		END LOOP;
	END LOOP;
END $$;

-- Durable claims in progress: live leases with checkpoints, and lapsed ones.
DO $$
DECLARE
	t uuid;
BEGIN
	FOR i IN 1..10 LOOP
		SELECT lease_token INTO t
		  FROM idempotency.claim('merchant_durable', 'order-' || i,
								 idempotency.fingerprint(('\x' || md5(i::text))::bytea),
								 lease => CASE WHEN i % 2 = 0 THEN interval '1 hour'
											   ELSE interval '1 millisecond' END);
		IF i % 3 = 0 THEN
			PERFORM idempotency.checkpoint('merchant_durable', 'order-' || i, 'authorized', t);
		END IF;
	END LOOP;
END $$;

CREATE TABLE public.charges (
	id		text PRIMARY KEY,
	scope	text NOT NULL,
	key		text NOT NULL,
	amount	numeric NOT NULL,
	body	jsonb
);
INSERT INTO public.charges
SELECT 'ch_' || i, 'merchant_' || (i % 4), 'key-' || i, i * 100,
	   jsonb_build_object('amount', i * 100)
  FROM generate_series(1, 60) AS i;

CREATE SCHEMA fuzz;
-- fingerprint() of every row, both overloads
CREATE VIEW fuzz.fingerprints AS
	SELECT k.scope, k.key,
		   idempotency.fingerprint('POST', '/v1/' || k.key, coalesce(k.response_body, 'null')) AS request_fp,
		   idempotency.fingerprint(k.fingerprint) AS fp_of_fp
	  FROM idempotency.keys AS k;
-- claim() of every row that is not held by a live lease: replays, resumes
-- of lapsed durable claims, IK410, or 'new' (which then fails the
-- statement's commit with IK428)
CREATE VIEW fuzz.claims AS
	SELECT k.scope, k.key, c.*
	  FROM idempotency.keys AS k,
		   LATERAL idempotency.claim(k.scope, k.key, k.fingerprint, wait => '0') AS c
	 WHERE k.lease_expires_at IS NULL OR k.lease_expires_at < now();
CREATE VIEW fuzz.stats AS SELECT * FROM idempotency.read_stats();

CREATE ROLE fuzz LOGIN;
ALTER ROLE fuzz SET statement_timeout = '2s';
ALTER ROLE fuzz SET lock_timeout = '1s';
ALTER ROLE fuzz SET work_mem = '4MB';
GRANT USAGE ON SCHEMA idempotency, fuzz TO fuzz;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA idempotency TO fuzz;
GRANT SELECT ON ALL TABLES IN SCHEMA idempotency, fuzz TO fuzz;
GRANT INSERT, UPDATE, DELETE ON idempotency.policies TO fuzz;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.charges TO fuzz;
ANALYZE;

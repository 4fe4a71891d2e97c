-- What a claim decides on is the fingerprint, the state, the windows and
-- the lease: a stored reply of megabytes is not read for it.  Before
-- 0.3.0 every read fetched and copied the whole reply: an IK422 on a key
-- with a 20 MB body cost 15 ms instead of 34 us, and a reap of rows with
-- 1 MB bodies held every body it passed in memory until the batch ended.
-- Measured here: blocks of the keys' TOAST table that this transaction
-- read (pg_stat_get_xact_blocks_fetched), and the backend's peak resident
-- memory (VmHWM), each in a fresh connection.

CREATE FUNCTION public.large_peak_kb() RETURNS bigint
LANGUAGE sql AS $$
    SELECT substring(pg_read_file('/proc/self/status') FROM 'VmHWM:\s*(\d+) kB')::bigint
$$;
CREATE FUNCTION public.large_toast_read() RETURNS bigint
LANGUAGE sql AS $$
    SELECT pg_stat_get_xact_blocks_fetched(reltoastrelid)
      FROM pg_class WHERE oid = 'idempotency.keys'::regclass
$$;
-- A body of about n MB that does not compress.
CREATE FUNCTION public.large_body(mb int) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT jsonb_build_object('blob', string_agg(md5(i::text), ''))
      FROM generate_series(1, mb * 32768) AS i
$$;

BEGIN;
SELECT outcome FROM idempotency.claim('large', 'big', '\x01');
SELECT idempotency.complete('large', 'big', 201, public.large_body(20));
COMMIT;
BEGIN;
SELECT outcome FROM idempotency.claim('large', 'small', '\x01');
SELECT idempotency.complete('large', 'small', 201, '{"id": "ch_small"}');
COMMIT;
-- What a fresh connection builds on its first claim (catalog caches, the
-- keys' executor state) is not what is measured: an IK422 on a small key.
CREATE FUNCTION public.large_warm_up() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM idempotency.claim('large', 'small', '\x02');
EXCEPTION WHEN SQLSTATE 'IK422' THEN
END $$;

-- IK422 (another fingerprint) reads nothing of the reply.
\c
SELECT public.large_warm_up();
SELECT public.large_peak_kb() AS peak_before \gset
BEGIN;
SELECT public.large_toast_read() AS read_before \gset
DO $$
BEGIN
    PERFORM idempotency.claim('large', 'big', '\x02');
EXCEPTION WHEN SQLSTATE 'IK422' THEN
    RAISE NOTICE 'IK422';
END $$;
SELECT public.large_toast_read() - :read_before AS toast_blocks_read_by_ik422,
       public.large_peak_kb() - :peak_before < 8 * 1024 AS ik422_peak_small;
COMMIT;

-- A replay reads the reply once: as many blocks as a plain SELECT of it.
BEGIN;
SELECT public.large_toast_read() AS read_before \gset
SELECT octet_length(response_body->>'blob') FROM idempotency.keys
 WHERE scope = 'large' AND key = 'big';
SELECT public.large_toast_read() - :read_before AS select_read \gset
SELECT public.large_toast_read() AS read_before \gset
SELECT outcome, octet_length(response_body->>'blob')
  FROM idempotency.claim('large', 'big', '\x01');
SELECT public.large_toast_read() - :read_before = :select_read AS replay_reads_reply_once,
       :select_read > 0 AS reply_is_out_of_line;
COMMIT;

-- The reaper reads no reply, and its memory does not grow with the
-- replies of a batch: 40 rows of 1 MB past retention.
DELETE FROM idempotency.keys WHERE scope = 'large' AND key = 'big';
CREATE PROCEDURE pg_temp.large_rows() LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. 40 LOOP
        PERFORM idempotency.claim('large', 'r' || i, '\x01');
        PERFORM idempotency.complete('large', 'r' || i, 201, public.large_body(1));
        COMMIT;
    END LOOP;
END $$;
CALL pg_temp.large_rows();
UPDATE idempotency.keys SET created_at = now() - interval '9 days',
       expires_at = now() - interval '8 days', retain_until = now() - interval '1 day'
 WHERE scope = 'large' AND key LIKE 'r%';
\c
-- The peak counts the shared buffers the backend touched: touch the
-- replies' blocks first, one reply at a time, so that the reap's own
-- memory is what grows.
SELECT count(*) FROM idempotency.keys
 WHERE scope = 'large' AND octet_length(response_body::text) > 0;
SELECT public.large_warm_up();
SELECT public.large_peak_kb() AS peak_before \gset
SELECT idempotency.reap() >= 40 AS reaped;
SELECT public.large_peak_kb() - :peak_before < 16 * 1024 AS reap_peak_small;
SELECT key FROM idempotency.keys WHERE scope = 'large';
DELETE FROM idempotency.keys WHERE scope = 'large';

DROP FUNCTION public.large_peak_kb(), public.large_toast_read(),
    public.large_body(int), public.large_warm_up();

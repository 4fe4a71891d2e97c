-- A backend's memory stays flat however many writes it serves, whatever
-- the DBA attached to idempotency.keys of what the README allows: extra
-- columns (identity, STORED generated, defaults that call a function),
-- indexes (expression, partial, GIN, BRIN), CHECK constraints that call a
-- function, foreign keys to and from the table, AFTER row triggers (one
-- with a WHEN condition).  Every write shares an
-- executor state kept for the session (src/tables.c, src/store.c); before
-- 0.3.0, what the executor compiles per statement (the generated columns'
-- expressions, a trigger's WHEN condition) was compiled again by each
-- write into that state: about 3.8 KB a write with one generated column.

CREATE TABLE public.flat_merchants (merchant text PRIMARY KEY);
INSERT INTO public.flat_merchants VALUES ('m1');
CREATE FUNCTION public.flat_status_ok(int) RETURNS boolean
LANGUAGE sql IMMUTABLE AS 'SELECT $1 IS NULL OR $1 BETWEEN 100 AND 599';
CREATE FUNCTION public.flat_note() RETURNS text
LANGUAGE sql STABLE AS $$SELECT 'note'$$;

ALTER TABLE idempotency.keys
    ADD COLUMN flat_n bigint GENERATED ALWAYS AS IDENTITY,
    ADD COLUMN flat_size int GENERATED ALWAYS AS
        (octet_length(key) + coalesce(response_status, 0)) STORED,
    ADD COLUMN flat_note text DEFAULT public.flat_note(),
    ADD COLUMN flat_merchant text DEFAULT 'm1'
        REFERENCES public.flat_merchants,
    ADD CONSTRAINT flat_status CHECK (public.flat_status_ok(response_status));
CREATE INDEX flat_charge_id ON idempotency.keys ((response_body->>'id'));
CREATE INDEX flat_live_leases ON idempotency.keys (lease_expires_at)
    WHERE state = 'in_progress';
CREATE INDEX flat_body ON idempotency.keys USING gin (response_body);
CREATE INDEX flat_created ON idempotency.keys USING brin (created_at);
CREATE TABLE public.flat_refs (
    key text COLLATE "C",
    scope text COLLATE "C",
    FOREIGN KEY (key, scope) REFERENCES idempotency.keys
);

CREATE TABLE public.flat_audit (trigger name, op text, key text, size int);
CREATE FUNCTION public.flat_audit() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO public.flat_audit VALUES (TG_NAME, TG_OP, OLD.key, OLD.flat_size);
    ELSE
        INSERT INTO public.flat_audit VALUES (TG_NAME, TG_OP, NEW.key, NEW.flat_size);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER flat_audit AFTER INSERT OR UPDATE OR DELETE ON idempotency.keys
    FOR EACH ROW EXECUTE FUNCTION public.flat_audit();
CREATE TRIGGER flat_audit_completed AFTER UPDATE ON idempotency.keys
    FOR EACH ROW WHEN (NEW.state = 'completed')
    EXECUTE FUNCTION public.flat_audit();

-- Per round, six writes of every kind, each in a transaction of its own:
-- a key completed in the claim's transaction (an insert), a durable claim
-- (an insert), its checkpoint and completion (two updates), and a durable
-- claim released (an insert and a delete).
CREATE PROCEDURE pg_temp.writes(first int, last int) LANGUAGE plpgsql AS $$
DECLARE
    t uuid;
BEGIN
    FOR i IN first .. last LOOP
        PERFORM idempotency.claim('flat', 'k' || i, '\x01');
        PERFORM idempotency.complete('flat', 'k' || i, 201, '{"id": "ch"}');
        COMMIT;
        SELECT lease_token INTO t
          FROM idempotency.claim('flat', 'd' || i, '\x01', lease => '1 minute');
        COMMIT;
        PERFORM idempotency.checkpoint('flat', 'd' || i, 'authorized', t);
        COMMIT;
        PERFORM idempotency.complete('flat', 'd' || i, 201, '{"id": "ch_d"}',
                                     lease_token => t);
        COMMIT;
        SELECT lease_token INTO t
          FROM idempotency.claim('flat', 'r' || i, '\x01', lease => '1 minute');
        COMMIT;
        PERFORM idempotency.release('flat', 'r' || i, t);
        COMMIT;
    END LOOP;
END $$;
-- The memory of the keys' cache, exactly (PostgreSQL 18 gives each
-- context's path, 15 only its parent's name).
CREATE FUNCTION pg_temp.cache_bytes() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    bytes bigint;
BEGIN
    IF EXISTS (SELECT FROM pg_attribute
                WHERE attrelid = 'pg_catalog.pg_backend_memory_contexts'::regclass
                  AND attname = 'path') THEN
        EXECUTE $q$
            WITH c AS MATERIALIZED (SELECT * FROM pg_catalog.pg_backend_memory_contexts)
            SELECT sum(x.total_bytes)::bigint
              FROM c AS x JOIN c AS cache ON cache.name = 'idempotency table cache'
                                         AND x.path[cache.level] = cache.path[cache.level]
        $q$ INTO bytes;
    ELSE
        EXECUTE $q$
            SELECT sum(total_bytes)::bigint FROM pg_catalog.pg_backend_memory_contexts
             WHERE name = 'idempotency table cache' OR parent = 'idempotency table cache'
        $q$ INTO bytes;
    END IF;
    RETURN bytes;
END $$;

-- The backend's memory in use: allocated blocks would jump by a block
-- (CacheMemoryContext's grow to 8 MB) for a few bytes more of a cache
-- that a warm session still fills now and then (a plan, a catalog entry).
CREATE FUNCTION pg_temp.backend_used_bytes() RETURNS bigint
LANGUAGE sql AS 'SELECT sum(used_bytes)::bigint FROM pg_catalog.pg_backend_memory_contexts';

CALL pg_temp.writes(1, 500);
SELECT pg_temp.cache_bytes() AS cache_before,
       pg_temp.backend_used_bytes() AS backend_before
\gset
-- 16,667 rounds: 100,002 writes.
CALL pg_temp.writes(501, 17167);
SELECT pg_temp.cache_bytes() - :cache_before AS cache_growth,
       pg_temp.backend_used_bytes() - :backend_before < 256 * 1024 AS backend_flat;

-- The writes did what they say: the generated column and defaults were
-- filled, each trigger fired for its own writes.
SELECT count(*) FILTER (WHERE flat_size = octet_length(key) + 201) AS sized,
       count(*) FILTER (WHERE flat_note = 'note' AND flat_merchant = 'm1') AS defaulted
  FROM idempotency.keys WHERE scope = 'flat';
SELECT trigger, op, count(*) FROM public.flat_audit GROUP BY 1, 2 ORDER BY 1, 2;

DROP TRIGGER flat_audit ON idempotency.keys;
DROP TRIGGER flat_audit_completed ON idempotency.keys;
DROP FUNCTION public.flat_audit();
DROP TABLE public.flat_audit, public.flat_refs;
DELETE FROM idempotency.keys WHERE scope = 'flat';
DROP INDEX idempotency.flat_charge_id, idempotency.flat_live_leases,
    idempotency.flat_body, idempotency.flat_created;
ALTER TABLE idempotency.keys
    DROP COLUMN flat_n, DROP COLUMN flat_size, DROP COLUMN flat_note,
    DROP COLUMN flat_merchant, DROP CONSTRAINT flat_status;
DROP TABLE public.flat_merchants;
DROP FUNCTION public.flat_status_ok(int), public.flat_note();
-- The 100,000 rows are gone; so should their space be, for the tests after.
VACUUM ANALYZE idempotency.keys;

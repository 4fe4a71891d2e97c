-- Every write of idempotency.keys shares one executor state, kept across
-- transactions (src/tables.c, src/store.c).  A write that fails part-way,
-- here in a DBA's AFTER row trigger once the row and its index entries
-- are in, must leave nothing behind that the next write trips on: no slot
-- holding a buffer pin that the abort already released, no trigger state,
-- and no memory that grows write after write.

CREATE TABLE public.write_audit (n serial, key text, op text, recovery_point text);
CREATE FUNCTION public.audit_or_refuse() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.key LIKE 'refused%' OR NEW.recovery_point = 'refused' THEN
        RAISE EXCEPTION 'the audit refuses key %', NEW.key;
    END IF;
    INSERT INTO public.write_audit (key, op, recovery_point)
    VALUES (NEW.key, TG_OP, NEW.recovery_point);
    RETURN NULL;
END $$;
CREATE TRIGGER audit_or_refuse AFTER INSERT OR UPDATE ON idempotency.keys
    FOR EACH ROW EXECUTE FUNCTION public.audit_or_refuse();

BEGIN;
SELECT outcome FROM idempotency.claim('failed-write', 'w1', '\x01');
SELECT idempotency.complete('failed-write', 'w1', 201, '{"id": "ch_1"}');
COMMIT;

-- An insert that fails, in a transaction of its own.
BEGIN;
SELECT outcome FROM idempotency.claim('failed-write', 'refused-1', '\x01');
SELECT idempotency.complete('failed-write', 'refused-1', 201, '{"id": "ch_r1"}');
ROLLBACK;

-- One that fails inside a savepoint, and the next write of the same
-- transaction.
BEGIN;
SELECT outcome FROM idempotency.claim('failed-write', 'w2', '\x01');
SAVEPOINT s;
SELECT outcome FROM idempotency.claim('failed-write', 'refused-2', '\x01');
SELECT idempotency.complete('failed-write', 'refused-2', 201, '{"id": "ch_r2"}');
ROLLBACK TO SAVEPOINT s;
SELECT idempotency.complete('failed-write', 'w2', 201, '{"id": "ch_2"}');
COMMIT;

-- An update that fails (a durable claim's checkpoint), then the updates
-- that follow it.
BEGIN;
SELECT outcome, lease_token AS t FROM idempotency.claim('failed-write', 'w3', '\x01', lease => '1 minute') \gset
COMMIT;
SELECT idempotency.checkpoint('failed-write', 'w3', 'refused', :'t');
SELECT idempotency.checkpoint('failed-write', 'w3', 'authorized', :'t');
SELECT idempotency.complete('failed-write', 'w3', 201, '{"id": "ch_3"}', lease_token => :'t');

SELECT key, op, recovery_point FROM public.write_audit ORDER BY n;
SELECT key, state, response_status, recovery_point FROM idempotency.keys
 WHERE scope = 'failed-write' ORDER BY key;

-- Three hundred writes, a transaction each, leave the cache's memory as
-- they found it: what each write makes (its result relation, the slots
-- its trigger needs, its expressions' memory) goes with the write.
CREATE PROCEDURE pg_temp.writes(first int, last int) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN first .. last LOOP
        PERFORM idempotency.claim('failed-write', 'many-' || i, '\x01');
        PERFORM idempotency.complete('failed-write', 'many-' || i, 201, '{"id": "ch"}');
        COMMIT;
    END LOOP;
END $$;
-- The cache's memory contexts and those under them: PostgreSQL 18 gives
-- each context's path, 15 only its parent's name.
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
CALL pg_temp.writes(1, 10);
SELECT pg_temp.cache_bytes() AS before \gset
CALL pg_temp.writes(11, 310);
SELECT pg_temp.cache_bytes() = :before AS cache_memory_unchanged;
SELECT count(*) FROM public.write_audit WHERE key LIKE 'many-%';

DROP TRIGGER audit_or_refuse ON idempotency.keys;
DROP FUNCTION public.audit_or_refuse();
DROP TABLE public.write_audit;
DELETE FROM idempotency.keys WHERE scope = 'failed-write';

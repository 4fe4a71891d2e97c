-- extension, a new key of a new tenant: ext-new-rtt.sql with the scope
-- drawn from :tenants tenants (bench/callgrind.sh passes 10^9), so that
-- nearly every claim is a scope the per-scope statistics have not seen and,
-- once their table is full, each claim adds an entry and every
-- twentieth of the table's size an eviction: the cost of tenant churn.
\set key random(0, 9223372036854775806)
\set tenant random(1, :tenants)
BEGIN;
SELECT outcome FROM idempotency.claim('tenant_' || :tenant, :key, :fingerprint);
INSERT INTO bench.charges (scope, idem_key, amount) VALUES ('tenant_' || :tenant, :key, 1000);
SELECT idempotency.complete('tenant_' || :tenant, :key, 201, '{"id": "ch_bench", "amount": 1000}');
COMMIT;

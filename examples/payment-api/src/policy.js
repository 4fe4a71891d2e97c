'use strict';
// GET /v1/idempotency: the idempotency policy of the calling merchant, published where
// the IETF draft asks a resource to publish it (draft-ietf-httpapi-idempotency-key-header-07:
// which endpoints take the key, whether it is required, its expiry), and linked from the
// 400 for a missing key.  The windows are the extension's for this merchant: its row
// in idempotency.policies, else the deployment's idempotency.ttl and idempotency.retain.

const { reply } = require('./replies');
const { MAX_KEY_BYTES } = require('./idempotency');

const WINDOWS_SQL = `
SELECT coalesce(extract(epoch FROM p.ttl),
                (SELECT setting::int8 FROM pg_settings WHERE name = 'idempotency.ttl'))::int8 AS ttl,
       coalesce(extract(epoch FROM p.retain),
                (SELECT setting::int8 FROM pg_settings WHERE name = 'idempotency.retain'))::int8 AS retain
  FROM (SELECT) AS one LEFT JOIN idempotency.policies p ON p.scope = $1`;

function policyRoute({ pool, config }) {
  return async function policy(req) {
    const { rows: [windows] } = await pool.query(WINDOWS_SQL, [req.merchant]);
    return {
      reply: reply(req, 200, {
        object: 'idempotency_policy',
        header: 'Idempotency-Key',
        key: { min_bytes: 1, max_bytes: MAX_KEY_BYTES, encoding: 'UTF-8' },
        required: req.keyRequired,
        endpoints: ['POST /v1/charges', 'POST /v1/charges/:id/capture', 'POST /v1/refunds'],
        fingerprint: "the method, the route's path and the parameters as the endpoint interprets them",
        replay_window_seconds: windows.ttl,
        retention_seconds: windows.retain,
        in_flight: { status: 409, wait_seconds: config.inUseWaitSeconds, lease_seconds: config.leaseSeconds },
        errors: { missing: 400, in_use: 409, expired: 410, reused: 422 },
      }),
    };
  };
}

module.exports = { policyRoute };

'use strict';
// Rollout through the extension's modes, end to end through the API: a merchant in
// shadow (a policy row) is served exactly as without idempotency, a policy change
// applies at the next request of the running service, and the API connected as a
// role with idempotency.mode = off (what make bench-api compares against) claims nothing.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startStack } = require('../harness/stack');
const { startApi, processorCall } = require('../harness/services');
const database = require('../harness/database');
const { request } = require('./lib/http');

let stack;
let seq = 0;
const newKey = (label) => `${label}-${(seq += 1)}`;
const sql = async (text, values) => (await stack.admin.query(text, values)).rows;
const params = (amount = 1000) => ({ amount, currency: 'usd', source: 'tok_visa' });
const send = (merchant, key, body, url = stack.api.url) =>
  request(url, 'POST', '/v1/charges', { apiKey: merchant.apiKey, key, params: body });
const setMode = (merchant, mode) => sql(
  `INSERT INTO idempotency.policies (scope, mode) VALUES ($1, $2)
   ON CONFLICT (scope) DO UPDATE SET mode = excluded.mode`, [merchant.id, mode]);

before(async () => { stack = await startStack({ merchants: ['Enforced', 'Shadowed'] }); });
after(() => stack && stack.close());

describe('rollout modes', () => {
  it('shadow: the same key twice is charged twice and nothing is refused, as before the rollout', async () => {
    const [, shadowed] = stack.merchants;
    await setMode(shadowed, 'shadow');
    const key = newKey('shadow');
    const one = await send(shadowed, key, { ...params(), description: 'shadowed twice' });
    const two = await send(shadowed, key, { ...params(), description: 'shadowed twice' });
    const other = await send(shadowed, key, params(2000));
    for (const res of [one, two, other]) {
      assert.equal(res.status, 200, res.text);
      assert.equal(res.headers['idempotent-replayed'], undefined);
    }
    assert.equal(new Set([one.body.id, two.body.id, other.body.id]).size, 3);
    const [{ n }] = await sql('SELECT count(*)::int AS n FROM charges WHERE merchant_id = $1 AND idempotency_key = $2', [shadowed.id, key]);
    assert.equal(n, 3);
    // The processor's key comes from the request whatever the mode: the retry's
    // authorization is the first one, replayed by the processor.
    const auths = (await processorCall(stack.processor, 'GET', '/ledger')).authorizations
      .filter((x) => x.description === 'shadowed twice');
    assert.equal(auths.length, 1);
  });

  it('a policy change applies at the next request of the running service, per merchant', async () => {
    const [enforced, shadowed] = stack.merchants;
    await setMode(shadowed, 'enforce');
    const key = newKey('flip');
    const first = await send(shadowed, key, params());
    const again = await send(shadowed, key, params());
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.equal(again.body.id, first.body.id);
    assert.equal((await send(shadowed, key, params(2000))).status, 422);
    // The other merchant was enforced all along (no policy row: idempotency.mode).
    const k2 = newKey('enforced');
    const e1 = await send(enforced, k2, params());
    assert.equal((await send(enforced, k2, params())).body.id, e1.body.id);
    await setMode(shadowed, 'shadow');
    const k3 = newKey('back');
    const s1 = await send(shadowed, k3, params());
    assert.notEqual((await send(shadowed, k3, params())).body.id, s1.body.id);
  });

  it('idempotency.mode = off for the service\'s role: nothing is claimed, every send is a charge', async () => {
    const off = await startApi({
      databaseUrl: stack.cluster.url(database.DATABASE, database.APP_ROLE_OFF),
      processorUrl: stack.processor.url,
      LEASE_SECONDS: '2',
      PROCESSOR_TIMEOUT_MS: '1500',
    });
    try {
      const [enforced] = stack.merchants;
      const key = newKey('off');
      const one = await send(enforced, key, params(), off.url);
      const two = await send(enforced, key, params(), off.url);
      assert.equal(one.status, 200, one.text);
      assert.equal(two.status, 200, two.text);
      assert.notEqual(one.body.id, two.body.id);
      const [{ n }] = await sql('SELECT count(*)::int AS n FROM idempotency.keys WHERE scope = $1 AND key = $2', [enforced.id, key]);
      assert.equal(n, 0);
    } finally {
      await off.stop();
    }
  });
});

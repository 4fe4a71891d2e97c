'use strict';
// A retry after our retention: the key was reaped, so the claim is 'new' again and the
// API charges again, but the processor's key, idempotency.downstream_key() of the same
// scope, key and request, is the one it was sent the first time.  A processor that keeps
// its keys longer than our retention (the simulated one: 30 days; Adyen: 31) answers with
// the first authorization and capture: the customer is charged once.  One that forgets
// them sooner (Stripe keeps them 24 hours, under our 7-day default) charges again: the
// limit README.md states.  Both merchants run with a retention of 2 seconds (a policy
// row), so that the test waits seconds, not days.

const crypto = require('node:crypto');
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startStack } = require('../harness/stack');
const { startProcessor, startApi, processorCall } = require('../harness/services');
const database = require('../harness/database');
const { request } = require('./lib/http');

let stack;
let forgetful; // a processor that forgets its keys after 1 second, and an API in front of it
const sql = async (text, values) => (await stack.admin.query(text, values)).rows;
const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });

before(async () => {
  stack = await startStack({ merchants: ['Long memory', 'Short memory'] });
  await sql(`INSERT INTO idempotency.policies (scope, ttl, retain)
             SELECT unnest($1::text[]), interval '1 second', interval '2 seconds'`,
  [stack.merchants.map((m) => m.id)]);
  const processor = await startProcessor({ KEY_WINDOW_HOURS: String(1 / 3600) });
  const api = await startApi({
    databaseUrl: stack.cluster.url(database.DATABASE, database.APP_ROLE),
    processorUrl: processor.url,
    LEASE_SECONDS: '2',
    PROCESSOR_TIMEOUT_MS: '1500',
  });
  forgetful = { processor, api };
});
after(async () => {
  if (forgetful) {
    await forgetful.api.stop();
    await forgetful.processor.stop();
  }
  if (stack) await stack.close();
});

// Reap until the key's row is gone: its retention has passed and the reaper deleted it.
async function reapKey(merchant, key) {
  const deadline = Date.now() + 15000;
  for (;;) {
    await sql('SELECT idempotency.reap()');
    const [{ n }] = await sql('SELECT count(*)::int AS n FROM idempotency.keys WHERE scope = $1 AND key = $2',
      [merchant.id, key]);
    if (n === 0) return;
    if (Date.now() > deadline) throw new Error(`key ${key} was not reaped`);
    await sleep(200);
  }
}

// The derivation as README.md spells it out, for a service in another language:
// HMAC-SHA256 under the secret of "IKd1" and the four fields, each a tag byte, a 4-byte
// big-endian length and the bytes; "ikd1_" and the first 160 bits in lower-case base32.
function downstreamKey(secret, scope, key, fingerprint, purpose) {
  const parts = [Buffer.from('IKd1')];
  for (const [tag, value] of [['s', Buffer.from(scope)], ['k', Buffer.from(key)], ['f', fingerprint], ['p', Buffer.from(purpose)]]) {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(value.length);
    parts.push(Buffer.from(tag), length, value);
  }
  const digest = crypto.createHmac('sha256', secret).update(Buffer.concat(parts)).digest().subarray(0, 20);
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  let out = 'ikd1_';
  let bits = 0;
  let value = 0;
  for (const byte of digest) {
    value = ((value << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out;
}

async function chargeTwiceAcrossRetention(apiUrl, processor, merchant, label) {
  const key = `${label}-order-1`;
  const params = { amount: 4200, currency: 'eur', source: 'tok_visa', description: `${label} order 1` };
  const send = () => request(apiUrl, 'POST', '/v1/charges', { apiKey: merchant.apiKey, key, params });

  const first = await send();
  assert.equal(first.status, 200, first.text);
  assert.equal(first.body.status, 'succeeded');
  await reapKey(merchant, key);

  const retry = await send();
  assert.equal(retry.status, 200, retry.text);
  assert.equal(retry.headers['idempotent-replayed'], undefined, 'the retry is not a replay: our key was gone');
  assert.notEqual(retry.body.id, first.body.id, 'the API made a second charge of its own');
  const [{ claims }] = await sql(
    "SELECT claims_new AS claims FROM idempotency.scope_stats WHERE database = 'payments' AND scope = $1", [merchant.id]);
  assert.equal(Number(claims), 2, "the claim was 'new' both times");

  const charges = await sql(
    'SELECT processor_authorization AS auth, state FROM charges WHERE merchant_id = $1 AND idempotency_key = $2 ORDER BY created_at',
    [merchant.id, key]);
  assert.deepEqual(charges.map((c) => c.state), ['captured', 'captured']);
  const ledger = await processorCall(processor, 'GET', '/ledger');
  const authorizations = ledger.authorizations.filter((a) => a.description === params.description);
  return { charges, authorizations };
}

describe('downstream keys, a retry after our retention', () => {
  it('a processor that keeps its keys longer than our retention charges once', async () => {
    const [merchant] = stack.merchants;
    const { charges, authorizations } = await chargeTwiceAcrossRetention(stack.api.url, stack.processor, merchant, 'long');
    assert.equal(authorizations.length, 1, 'one authorization at the processor');
    assert.equal(authorizations[0].captured, true);
    assert.equal(charges[1].auth, charges[0].auth, 'the second charge got the first authorization, replayed');
  });

  it('a key reused after retention for another charge resumes that charge, not the first', async () => {
    const [merchant] = stack.merchants;
    const key = 'reused-order';
    const send = (amount) => request(stack.api.url, 'POST', '/v1/charges',
      { apiKey: merchant.apiKey, key, params: { amount, currency: 'eur', source: 'tok_visa', description: `reused ${amount}` } });
    const first = await send(4200);
    assert.equal(first.status, 200, first.text);
    await reapKey(merchant, key);

    // The new request's capture gets no answer: the claim stays at 'authorized' and the
    // retry resumes it, while the first charge still carries the same key.
    await processorCall(stack.processor, 'POST', '/control/faults', { faults: [{}, { status: 504, acted: true }] });
    const cut = await send(4300);
    assert.equal(cut.status, 504, cut.text);
    const retry = await send(4300);
    assert.equal(retry.status, 200, retry.text);
    assert.equal(retry.body.amount, 4300);
    assert.equal(retry.body.captured, true);
    assert.notEqual(retry.body.id, first.body.id);
    const charges = await sql('SELECT id, amount, state FROM charges WHERE merchant_id = $1 AND idempotency_key = $2 ORDER BY created_at',
      [merchant.id, key]);
    assert.deepEqual(charges, [
      { id: first.body.id, amount: 4200, state: 'captured' },
      { id: retry.body.id, amount: 4300, state: 'captured' },
    ]);
    const ledger = await processorCall(stack.processor, 'GET', '/ledger');
    const auths = ledger.authorizations.filter((a) => a.description === 'reused 4300');
    assert.equal(auths.length, 1);
    assert.equal(auths[0].captured, true);
  });

  it('a refund key reused after retention resumes its own refund, not the first', async () => {
    const [merchant] = stack.merchants;
    const post = (path, key, params) => request(stack.api.url, 'POST', path, { apiKey: merchant.apiKey, key, params });
    const charged = [];
    for (const n of [1, 2]) {
      const res = await post('/v1/charges', `refund-reuse-charge-${n}`, { amount: 5000, currency: 'eur', source: 'tok_visa' });
      assert.equal(res.status, 200, res.text);
      charged.push(res.body.id);
    }
    const key = 'reused-refund';
    const first = await post('/v1/refunds', key, { charge: charged[0], amount: 700 });
    assert.equal(first.status, 200, first.text);
    await reapKey(merchant, key);

    await processorCall(stack.processor, 'POST', '/control/faults', { faults: [{ status: 502, acted: true }] });
    const cut = await post('/v1/refunds', key, { charge: charged[1], amount: 800 });
    assert.equal(cut.status, 502, cut.text);
    const retry = await post('/v1/refunds', key, { charge: charged[1], amount: 800 });
    assert.equal(retry.status, 200, retry.text);
    assert.equal(retry.body.charge, charged[1]);
    assert.equal(retry.body.amount, 800);
    const refunds = await sql('SELECT charge_id, amount, state FROM refunds WHERE merchant_id = $1 AND idempotency_key = $2 ORDER BY created_at',
      [merchant.id, key]);
    assert.deepEqual(refunds, [
      { charge_id: charged[0], amount: 700, state: 'succeeded' },
      { charge_id: charged[1], amount: 800, state: 'succeeded' },
    ]);
  });

  it('the derivation README.md spells out computes what idempotency.downstream_key() does', async () => {
    const [merchant] = stack.merchants;
    const [row] = await sql(`SELECT f.fp, idempotency.downstream_key($1, 'order-7781', f.fp, 'capture') AS key
                               FROM (SELECT idempotency.fingerprint('POST', '/v1/charges', '{"amount": 1000}'::jsonb) AS fp) f`,
    [merchant.id]);
    // the secret harness/cluster.js sets
    assert.equal(downstreamKey('payment-api-example-downstream-secret', merchant.id, 'order-7781', row.fp, 'capture'),
      row.key);
  });

  it('a processor that forgets its keys before our retention ends charges twice (the limit)', async () => {
    const [, merchant] = stack.merchants;
    const { charges, authorizations } = await chargeTwiceAcrossRetention(forgetful.api.url, forgetful.processor, merchant, 'short');
    assert.equal(authorizations.length, 2, 'two authorizations: the processor had forgotten the key');
    assert.notEqual(charges[1].auth, charges[0].auth);
  });
});

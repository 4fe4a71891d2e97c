'use strict';
// The API killed (SIGKILL) in the middle of a durable claim: while the processor is
// authorizing, and between authorization and capture.  The retry is refused (409)
// while the dead worker's lease is live, then resumes from the last recovery point,
// and the processor authorizes and captures the payment once.  With the service's
// default lease and wait, the official client with its default retries resolves a
// request cut by the crash on its own.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Stripe = require('stripe');
const { startStack } = require('../harness/stack');
const { processorCall, startApi } = require('../harness/services');
const database = require('../harness/database');
const { request } = require('./lib/http');

let stack;
const sql = async (text, values) => (await stack.admin.query(text, values)).rows;
const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });

async function until(what, check, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

before(async () => { stack = await startStack(); });
after(() => stack && stack.close());

describe('a worker killed mid-payment', () => {
  const cases = [
    // [name, processor faults, the processor call the worker is killed in, what the
    // database shows by then]
    ['while authorizing', [{ delayMs: 4000 }], 1,
      "SELECT 1 FROM charges c JOIN idempotency.keys k ON k.key = c.idempotency_key WHERE k.key = $1 AND c.state = 'pending' AND k.state = 'in_progress'"],
    ['between authorization and capture', [{}, { delayMs: 4000 }], 2,
      "SELECT 1 FROM idempotency.keys WHERE key = $1 AND recovery_point LIKE 'authorized:ch_%'"],
  ];
  for (const [name, faults, call, killedWhen] of cases) {
    it(`${name}: the retry resumes and the processor charges once`, async () => {
      const key = `crash-${name.replace(/\W+/g, '-')}`;
      const description = key;
      const params = { amount: 2500, currency: 'usd', source: 'tok_visa', description };
      const send = () => request(stack.api.url, 'POST', '/v1/charges', { apiKey: stack.merchants[0].apiKey, key, params });
      const calls = async () => (await processorCall(stack.processor, 'GET', '/ledger')).counts.calls;
      const callsBefore = await calls();
      await processorCall(stack.processor, 'POST', '/control/faults', { faults });
      const inFlight = send().catch((err) => err);
      await until('the worker to be in the processor call', async () =>
        (await calls()) === callsBefore + call && (await sql(killedWhen, [key])).length === 1);
      await stack.api.restart();
      assert.ok((await inFlight) instanceof Error, 'the killed request got no reply');

      const during = await send();
      assert.equal(during.status, 409, during.text);
      assert.equal(during.headers['stripe-should-retry'], 'true');

      let res = during;
      for (let i = 0; i < 100 && res.status === 409; i += 1) {
        await sleep(100);
        res = await send();
      }
      assert.equal(res.status, 200, res.text);
      assert.equal(res.body.captured, true);
      const charges = await sql('SELECT id, state, processor_authorization FROM charges WHERE idempotency_key = $1', [key]);
      assert.equal(charges.length, 1);
      assert.equal(charges[0].id, res.body.id);
      // Let the dead worker's processor call finish, then count at the processor.
      await sleep(4000);
      const auths = (await processorCall(stack.processor, 'GET', '/ledger')).authorizations
        .filter((x) => x.description === description);
      assert.equal(auths.length, 1);
      assert.equal(auths[0].id, charges[0].processor_authorization);
      assert.equal(auths[0].captured, true);
      const [stats] = await sql('SELECT claims_resume FROM idempotency.stats WHERE database = current_database()');
      assert.ok(stats.claims_resume >= 1);
      const replay = await send();
      assert.equal(replay.headers['idempotent-replayed'], 'true');
      assert.deepEqual(replay.body, res.body);
    });
  }
});

describe('the default lease and wait, and the official client with its defaults', () => {
  let api;
  after(() => api && api.stop());

  it('a charge cut by an API crash resolves within the client\'s own retries, charged once', async () => {
    // LEASE_SECONDS, PROCESSOR_TIMEOUT_MS and IN_USE_WAIT_SECONDS as a deployment has them
    api = await startApi({ databaseUrl: stack.cluster.url(database.DATABASE, database.APP_ROLE), processorUrl: stack.processor.url });
    const stripe = new Stripe(stack.merchants[0].apiKey, { host: '127.0.0.1', port: api.port, protocol: 'http', telemetry: false });
    const description = 'cut-by-crash-default-client';
    const calls = async () => (await processorCall(stack.processor, 'GET', '/ledger')).counts.calls;
    const callsBefore = await calls();
    await processorCall(stack.processor, 'POST', '/control/faults', { faults: [{ delayMs: 2000 }] });
    const started = Date.now();
    const pending = stripe.charges.create({ amount: 3100, currency: 'usd', source: 'tok_visa', description });
    await until('the worker to be in the authorization', async () => (await calls()) === callsBefore + 1);
    await api.restart();
    const charge = await pending;
    assert.equal(charge.status, 'succeeded');
    assert.equal(charge.captured, true);
    const seconds = (Date.now() - started) / 1000;
    assert.ok(seconds < 30, `resolved in ${seconds} s`);
    const auths = (await processorCall(stack.processor, 'GET', '/ledger')).authorizations
      .filter((x) => x.description === description);
    assert.equal(auths.length, 1);
    assert.equal(auths[0].captured, true);
    assert.deepEqual((await sql('SELECT id FROM charges WHERE description = $1', [description])).map((r) => r.id), [charge.id]);
    assert.deepEqual(api.unexpectedExits, []);
  });
});

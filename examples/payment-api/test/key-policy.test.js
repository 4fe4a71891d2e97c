'use strict';
// The IETF draft's missing-key rule, per merchant and per deployment, off by default,
// and the idempotency policy the API publishes (GET /v1/idempotency).

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startStack } = require('../harness/stack');
const { startApi } = require('../harness/services');
const database = require('../harness/database');
const { request } = require('./lib/http');

let stack;
let strict; // the same service with REQUIRE_IDEMPOTENCY_KEY=true
let lax; // merchant A: NULL, the deployment's setting
let always; // merchant B: true
let never; // merchant C: false
const sql = async (text, values) => (await stack.admin.query(text, values)).rows;
const charge = (description) => ({ amount: 1500, currency: 'usd', source: 'tok_visa', description });
const chargesFor = async (description) =>
  (await sql('SELECT count(*)::int AS n FROM charges WHERE description = $1', [description]))[0].n;

before(async () => {
  stack = await startStack({ merchants: ['Lax', 'Always', 'Never'] });
  [lax, always, never] = stack.merchants;
  await sql('UPDATE merchants SET require_idempotency_key = true WHERE id = $1', [always.id]);
  await sql('UPDATE merchants SET require_idempotency_key = false WHERE id = $1', [never.id]);
  await sql("INSERT INTO idempotency.policies (scope, ttl, retain) VALUES ($1, '1 hour', '2 hours')", [always.id]);
  strict = await startApi({
    databaseUrl: stack.cluster.url(database.DATABASE, database.APP_ROLE),
    processorUrl: stack.processor.url,
    REQUIRE_IDEMPOTENCY_KEY: 'true',
  });
});
after(async () => {
  if (strict) await strict.stop();
  if (stack) await stack.close();
});

function assertMissingKey(res) {
  assert.equal(res.status, 400, res.text);
  assert.match(res.headers['content-type'], /^application\/problem\+json/);
  assert.equal(res.headers.link, '</v1/idempotency>; rel="describedby"');
  assert.equal(res.body.type, '/v1/idempotency');
  assert.equal(res.body.title, 'Idempotency-Key is missing');
  assert.equal(res.body.status, 400);
  assert.equal(typeof res.body.detail, 'string');
  assert.equal(res.body.error.type, 'invalid_request_error');
  assert.equal(res.body.error.code, 'idempotency_key_missing');
  assert.equal(res.body.error.doc_url, '/v1/idempotency');
  assert.equal(res.headers['stripe-should-retry'], 'false');
}

describe('the missing-key rule', () => {
  it('is off by default: a POST without a key is served, as with Stripe', async () => {
    const res = await request(stack.api.url, 'POST', '/v1/charges', { apiKey: lax.apiKey, params: charge('lax') });
    assert.equal(res.status, 200, res.text);
  });

  it('a merchant that requires the key gets 400 with a problem body, and nothing is charged', async () => {
    assertMissingKey(await request(stack.api.url, 'POST', '/v1/charges', { apiKey: always.apiKey, params: charge('always') }));
    assert.equal(await chargesFor('always'), 0);
    const keyed = await request(stack.api.url, 'POST', '/v1/charges', { apiKey: always.apiKey, key: 'always-1', params: charge('always') });
    assert.equal(keyed.status, 200, keyed.text);
    const read = await request(stack.api.url, 'GET', `/v1/charges/${keyed.body.id}`, { apiKey: always.apiKey });
    assert.equal(read.status, 200, 'a GET needs no key');
  });

  it('the deployment setting applies to merchants without their own, and false overrides it', async () => {
    assertMissingKey(await request(strict.url, 'POST', '/v1/charges', { apiKey: lax.apiKey, params: charge('strict-lax') }));
    assert.equal(await chargesFor('strict-lax'), 0);
    const res = await request(strict.url, 'POST', '/v1/charges', { apiKey: never.apiKey, params: charge('strict-never') });
    assert.equal(res.status, 200, res.text);
  });
});

describe('the published policy', () => {
  it('GET /v1/idempotency: the endpoints, the rule and the windows of the calling merchant', async () => {
    const mine = await request(stack.api.url, 'GET', '/v1/idempotency', { apiKey: lax.apiKey });
    assert.equal(mine.status, 200, mine.text);
    assert.deepEqual(mine.body, {
      object: 'idempotency_policy',
      header: 'Idempotency-Key',
      key: { min_bytes: 1, max_bytes: 255, encoding: 'UTF-8' },
      required: false,
      endpoints: ['POST /v1/charges', 'POST /v1/charges/:id/capture', 'POST /v1/refunds'],
      fingerprint: "the method, the route's path and the parameters as the endpoint interprets them",
      replay_window_seconds: 86400,
      retention_seconds: 604800,
      in_flight: { status: 409, wait_seconds: 0, lease_seconds: 2 },
      errors: { missing: 400, in_use: 409, expired: 410, reused: 422 },
    });
    const theirs = await request(stack.api.url, 'GET', '/v1/idempotency', { apiKey: always.apiKey });
    assert.equal(theirs.body.required, true);
    assert.equal(theirs.body.replay_window_seconds, 3600);
    assert.equal(theirs.body.retention_seconds, 7200);
    const strictPolicy = await request(strict.url, 'GET', '/v1/idempotency', { apiKey: lax.apiKey });
    assert.equal(strictPolicy.body.required, true);
    assert.deepEqual(strictPolicy.body.in_flight, { status: 409, wait_seconds: 12, lease_seconds: 10 });
  });
});

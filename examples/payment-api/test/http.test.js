'use strict';
// Request-level tests of every status the API maps and every header it promises,
// against a real PostgreSQL with the extension, the processor and the API.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startStack } = require('../harness/stack');
const { processorCall } = require('../harness/services');
const { request } = require('./lib/http');

let stack;
let a; // merchant A: { id, apiKey }
let b;
let seq = 0;
const newKey = (label) => `${label}-${process.pid}-${(seq += 1)}`;
const charge = (overrides = {}) => ({ amount: 1000, currency: 'usd', source: 'tok_visa', ...overrides });

const post = (path, opts) => request(stack.api.url, 'POST', path, { apiKey: a.apiKey, ...opts });
const get = (path, opts) => request(stack.api.url, 'GET', path, { apiKey: a.apiKey, ...opts });
const sql = async (text, values) => (await stack.admin.query(text, values)).rows;
const faults = (...list) => processorCall(stack.processor, 'POST', '/control/faults', { faults: list });
const ledger = () => processorCall(stack.processor, 'GET', '/ledger');
const authorizationsFor = async (description) =>
  (await ledger()).authorizations.filter((x) => x.description === description);

function assertError(res, status, type, code, retry) {
  assert.equal(res.status, status, res.text);
  assert.equal(res.body.error.type, type, res.text);
  assert.equal(res.body.error.code, code, res.text);
  assert.equal(typeof res.body.error.message, 'string');
  assert.equal(res.headers['stripe-should-retry'], retry === undefined ? undefined : String(retry));
  assert.match(res.headers['request-id'], /^req_/);
}

before(async () => {
  stack = await startStack({ merchants: ['Merchant A', 'Merchant B'] });
  [a, b] = stack.merchants;
});
after(() => stack && stack.close());

describe('authentication', () => {
  it('answers 401 without an API key, with an unknown one, and accepts bearer and basic auth', async () => {
    assertError(await post('/v1/charges', { apiKey: null, params: charge() }), 401, 'invalid_request_error', 'api_key_invalid', false);
    assertError(await post('/v1/charges', { apiKey: 'sk_test_unknownunknownunknown', params: charge() }),
      401, 'invalid_request_error', 'api_key_invalid', false);
    const basic = `Basic ${Buffer.from(`${a.apiKey}:`).toString('base64')}`;
    const res = await post('/v1/charges', { apiKey: null, headers: [['Authorization', basic]], key: newKey('basic'), params: charge() });
    assert.equal(res.status, 200, res.text);
    assert.equal((await sql('SELECT merchant_id FROM charges WHERE id = $1', [res.body.id]))[0].merchant_id, a.id);
  });
});

describe('charges and replays', () => {
  it('creates a charge, and replays it for the same key and parameters in another order', async () => {
    const key = newKey('replay');
    const first = await post('/v1/charges', { key, body: 'amount=1500&currency=usd&source=tok_visa&metadata[order]=42&description=books' });
    assert.equal(first.status, 200, first.text);
    assert.equal(first.body.object, 'charge');
    assert.equal(first.body.status, 'succeeded');
    assert.equal(first.body.captured, true);
    assert.deepEqual(first.body.metadata, { order: '42' });
    assert.equal(first.headers['idempotency-key'], key);
    assert.equal(first.headers['idempotent-replayed'], undefined);
    assert.equal(first.headers['stripe-should-retry'], undefined);

    const again = await post('/v1/charges', { key, body: 'description=books&metadata[order]=42&source=tok_visa&currency=usd&amount=1500' });
    assert.equal(again.status, 200, again.text);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.equal(again.headers['request-id'], first.headers['request-id']);
    assert.equal(again.headers['idempotency-key'], key);
    assert.deepEqual(again.body, first.body);
    assert.equal((await sql('SELECT count(*)::int AS n FROM charges WHERE idempotency_key = $1', [key]))[0].n, 1);
    assert.equal((await authorizationsFor('books')).length, 1);
  });

  it('retrieves a charge, and 404s an unknown, malformed or other merchant\'s charge', async () => {
    const created = await post('/v1/charges', { key: newKey('get'), params: charge() });
    const got = await get(`/v1/charges/${created.body.id}`);
    assert.equal(got.status, 200);
    assert.deepEqual(got.body, created.body);
    assertError(await get('/v1/charges/ch_doesnotexist'), 404, 'invalid_request_error', 'resource_missing', false);
    assertError(await get('/v1/charges/not-an-id'), 404, 'invalid_request_error', 'resource_missing', false);
    assertError(await get(`/v1/charges/${created.body.id}`, { apiKey: b.apiKey }), 404, 'invalid_request_error', 'resource_missing', false);
    assertError(await get('/v1/nothing'), 404, 'invalid_request_error', 'resource_missing', false);
  });

  it('keeps merchants apart: the same key and body under another merchant is a new charge', async () => {
    const key = newKey('scope');
    const mine = await post('/v1/charges', { key, params: charge() });
    const theirs = await post('/v1/charges', { key, params: charge(), apiKey: b.apiKey });
    assert.equal(theirs.status, 200);
    assert.equal(theirs.headers['idempotent-replayed'], undefined);
    assert.notEqual(theirs.body.id, mine.body.id);
    const rows = await sql('SELECT merchant_id FROM charges WHERE idempotency_key = $1 ORDER BY merchant_id', [key]);
    assert.deepEqual(rows.map((r) => r.merchant_id), [a.id, b.id].sort());
  });

  it('runs a request without a key unclaimed: two sends are two charges', async () => {
    const one = await post('/v1/charges', { params: charge({ description: 'unkeyed' }) });
    const two = await post('/v1/charges', { params: charge({ description: 'unkeyed' }) });
    assert.equal(one.status, 200);
    assert.equal(two.status, 200);
    assert.notEqual(one.body.id, two.body.id);
    assert.equal(one.headers['idempotency-key'], undefined);
  });
});

describe('idempotency errors', () => {
  it('answers 422 for the same key with other parameters, and stores nothing for it', async () => {
    const key = newKey('mismatch');
    const first = await post('/v1/charges', { key, params: charge() });
    const other = await post('/v1/charges', { key, params: charge({ amount: 999 }) });
    assertError(other, 422, 'idempotency_error', 'idempotency_key_reused', false);
    const again = await post('/v1/charges', { key, params: charge() });
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.equal(again.body.id, first.body.id);
  });

  it('answers 409 while the same key is in flight, then replays the first request\'s reply', async () => {
    const key = newKey('inflight');
    await faults({ delayMs: 1000 });
    const firstPromise = post('/v1/charges', { key, params: charge({ description: 'slow' }) });
    // The first request holds the key's lease while the processor takes its time.
    let conflict;
    for (let i = 0; i < 50; i += 1) {
      conflict = await post('/v1/charges', { key, params: charge({ description: 'slow' }) });
      if (conflict.status === 409) break;
      await new Promise((r) => { setTimeout(r, 20); });
    }
    assertError(conflict, 409, 'idempotency_error', 'idempotency_key_in_use', true);
    const first = await firstPromise;
    assert.equal(first.status, 200);
    const replay = await post('/v1/charges', { key, params: charge({ description: 'slow' }) });
    assert.equal(replay.headers['idempotent-replayed'], 'true');
    assert.equal(replay.body.id, first.body.id);
    assert.equal((await authorizationsFor('slow')).length, 1);
  });

  it('answers 410 past the replay window, and charges nothing', async () => {
    const key = newKey('expired');
    await post('/v1/charges', { key, params: charge() });
    await sql(`UPDATE idempotency.keys SET created_at = created_at - interval '25 hours',
                 expires_at = expires_at - interval '25 hours', retain_until = retain_until - interval '25 hours'
                WHERE scope = $1 AND key = $2`, [a.id, key]);
    assertError(await post('/v1/charges', { key, params: charge() }), 410, 'idempotency_error', 'idempotency_key_expired', false);
    assert.equal((await sql('SELECT count(*)::int AS n FROM charges WHERE idempotency_key = $1', [key]))[0].n, 1);
  });

  it('checks the key: 1 to 255 bytes of UTF-8, one header', async () => {
    const ok = await post('/v1/charges', { key: 'k'.repeat(255), params: charge() });
    assert.equal(ok.status, 200, ok.text);
    const e = 'é'; // two bytes in UTF-8, sent as such (Node writes header strings as latin1)
    const utf8 = (s) => Buffer.from(s, 'utf8').toString('latin1');
    assert.equal((await post('/v1/charges', { key: utf8(e.repeat(127)), params: charge() })).status, 200);
    assertError(await post('/v1/charges', { key: utf8(e.repeat(128)), params: charge() }), 400, 'idempotency_error', 'idempotency_key_invalid', false);
    assertError(await post('/v1/charges', { key: 'k'.repeat(256), params: charge() }), 400, 'idempotency_error', 'idempotency_key_invalid', false);
    assertError(await post('/v1/charges', { key: '', params: charge() }), 400, 'idempotency_error', 'idempotency_key_invalid', false);
    assertError(await post('/v1/charges', { key: '\u00e9', params: charge() }), 400, 'idempotency_error', 'idempotency_key_invalid', false);
    assertError(await post('/v1/charges', { key: utf8('k\u0085'), params: charge() }), 400, 'idempotency_error', 'idempotency_key_invalid', false);
    assertError(await post('/v1/charges', { headers: [['Idempotency-Key', 'x1'], ['Idempotency-Key', 'x2']], params: charge() }),
      400, 'idempotency_error', 'idempotency_key_invalid', false);
  });
});

describe('validation: a 400 is not stored, the key stays free', () => {
  it('names the parameter, and the corrected request with the same key is charged', async () => {
    const key = newKey('invalid');
    const missing = await post('/v1/charges', { key, params: { currency: 'usd', source: 'tok_visa' } });
    assertError(missing, 400, 'invalid_request_error', 'parameter_missing', false);
    assert.equal(missing.body.error.param, 'amount');
    assert.equal((await sql('SELECT count(*)::int AS n FROM idempotency.keys WHERE key = $1', [key]))[0].n, 0);
    const fixed = await post('/v1/charges', { key, params: charge() });
    assert.equal(fixed.status, 200, fixed.text);
    assert.equal(fixed.headers['idempotent-replayed'], undefined);
  });

  it('refuses every kind of bad input with a typed 400', async () => {
    const cases = [
      [{ ...charge(), colour: 'red' }, 'parameter_unknown', 'colour'],
      [charge({ amount: 'ten' }), 'parameter_invalid_integer', 'amount'],
      [charge({ amount: 49 }), 'amount_too_small', 'amount'],
      [charge({ amount: 100000000 }), 'amount_too_large', 'amount'],
      [charge({ currency: 'dollars' }), 'parameter_invalid', 'currency'],
      [{ amount: 1000, currency: 'usd' }, 'parameter_missing', 'source'],
      [charge({ customer: 'cus_1' }), 'parameter_missing', 'customer'],
      [charge({ source: 'visa' }), 'parameter_invalid', 'source'],
      [charge({ capture: 'maybe' }), 'parameter_invalid_boolean', 'capture'],
      [charge({ description: 'nul\u0000' }), 'parameter_invalid', 'description'],
      [charge({ metadata: { ['k'.repeat(41)]: 'v' } }), 'parameter_invalid', 'metadata'],
    ];
    for (const [params, code, param] of cases) {
      const res = await post('/v1/charges', { key: newKey('bad'), params });
      assertError(res, 400, 'invalid_request_error', code, false);
      assert.equal(res.body.error.param, param, res.text);
    }
    assertError(await post('/v1/charges', { key: newKey('bad'), body: 'amount[]=1&currency=usd&source=tok_visa' }),
      400, 'invalid_request_error', 'parameter_invalid_string', false);
    assertError(await post('/v1/charges', { key: newKey('bad'), body: '{"amount": 1000}', headers: [['Content-Type', 'application/json']] }),
      400, 'invalid_request_error', 'invalid_content_type', false);
    assertError(await post('/v1/charges', { key: newKey('bad'), body: `description=${'x'.repeat(20000)}` }),
      400, 'invalid_request_error', 'invalid_request_body', false);
  });
});

describe('the fingerprint is the request as the endpoint reads it', () => {
  it('replays the same charge spelt with another path case, a trailing slash, 01000 or USD', async () => {
    const key = newKey('spelling');
    const first = await post('/v1/charges', { key, body: 'amount=1000&currency=usd&source=tok_visa&capture=true' });
    assert.equal(first.status, 200, first.text);
    for (const [path, body] of [
      ['/v1/charges/', 'amount=1000&currency=usd&source=tok_visa&capture=true'],
      ['/V1/Charges', 'amount=1000&currency=usd&source=tok_visa'],
      ['/v1/charges', 'amount=01000&currency=USD&source=tok_visa&capture=true'],
    ]) {
      const again = await post(path, { key, body });
      assert.equal(again.status, 200, `${path} ${body}: ${again.text}`);
      assert.equal(again.headers['idempotent-replayed'], 'true');
      assert.equal(again.body.id, first.body.id);
    }
    assertError(await post('/v1/charges', { key, body: 'amount=1001&currency=usd&source=tok_visa' }),
      422, 'idempotency_error', 'idempotency_key_reused', false);
    assert.equal((await sql('SELECT count(*)::int AS n FROM charges WHERE idempotency_key = $1', [key]))[0].n, 1);
  });

  it('a capture spelt /V1/Charges/:id/Capture/ is the same capture', async () => {
    const created = await post('/v1/charges', { key: newKey('cap-spelling'), params: charge({ capture: false }) });
    const key = newKey('cap-spelling');
    const first = await post(`/v1/charges/${created.body.id}/capture`, { key });
    assert.equal(first.status, 200, first.text);
    const again = await post(`/V1/Charges/${created.body.id}/Capture/`, { key });
    assert.equal(again.status, 200, again.text);
    assert.equal(again.headers['idempotent-replayed'], 'true');
  });
});

describe('a body the form parser did not read is refused', () => {
  it('a chunked JSON body is a 400, never a capture without parameters', async () => {
    const created = await post('/v1/charges', { key: newKey('chunked'), params: charge({ capture: false }) });
    for (const chunked of [true, false]) {
      const res = await post(`/v1/charges/${created.body.id}/capture`, {
        key: newKey('chunked'), body: '{"amount": 100}', chunked, headers: [['Content-Type', 'application/json']],
      });
      assertError(res, 400, 'invalid_request_error', 'invalid_content_type', false);
    }
    assert.equal((await sql('SELECT state FROM charges WHERE id = $1', [created.body.id]))[0].state, 'authorized');
    const empty = await post(`/v1/charges/${created.body.id}/capture`, {
      key: newKey('chunked'), body: '', chunked: true, headers: [['Content-Type', 'application/json']],
    });
    assert.equal(empty.status, 200, empty.text);
  });
});

describe('card declines are answers: 402, stored', () => {
  it('replays the decline, with the failed charge', async () => {
    const key = newKey('declined');
    const first = await post('/v1/charges', { key, params: charge({ source: 'tok_chargeDeclined' }) });
    assertError(first, 402, 'card_error', 'card_declined', false);
    assert.equal(first.body.error.decline_code, 'generic_decline');
    const failed = await get(`/v1/charges/${first.body.error.charge}`);
    assert.equal(failed.body.status, 'failed');
    const again = await post('/v1/charges', { key, params: charge({ source: 'tok_chargeDeclined' }) });
    assert.equal(again.status, 402);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    assert.equal(again.headers['stripe-should-retry'], 'false');
    assert.deepEqual(again.body, first.body);
  });
});

describe('processor failures: a 5xx is not stored, the retry is charged once', () => {
  for (const acted of [false, true]) {
    it(`authorization answered 502 ${acted ? 'after' : 'before'} the processor acted`, async () => {
      const key = newKey('auth502');
      const description = `auth502-${acted}`;
      await faults({ status: 502, acted });
      const failed = await post('/v1/charges', { key, params: charge({ description }) });
      assertError(failed, 502, 'api_error', 'processor_unavailable', true);
      // The 5xx is not stored; the claim stays, its lease ended, at its pending charge.
      const [pending] = await sql('SELECT id, state FROM charges WHERE idempotency_key = $1', [key]);
      assert.equal(pending.state, 'pending');
      const [row] = await sql('SELECT state, recovery_point FROM idempotency.keys WHERE key = $1', [key]);
      assert.deepEqual(row, { state: 'in_progress', recovery_point: `pending:${pending.id}` });
      const retry = await post('/v1/charges', { key, params: charge({ description }) });
      assert.equal(retry.status, 200, retry.text);
      assert.equal(retry.headers['idempotent-replayed'], undefined);
      assert.equal(retry.body.id, pending.id, 'the retry resumed the pending charge');
      const auths = await authorizationsFor(description);
      assert.equal(auths.length, 1);
      assert.equal(auths[0].captured, true);
    });
  }

  it('capture answered 504 after authorization: the retry resumes at the capture', async () => {
    const key = newKey('cap504');
    await faults({}, { status: 504, acted: true });
    const failed = await post('/v1/charges', { key, params: charge({ description: 'cap504' }) });
    assertError(failed, 504, 'api_error', 'processor_timeout', true);
    const retry = await post('/v1/charges', { key, params: charge({ description: 'cap504' }) });
    assert.equal(retry.status, 200, retry.text);
    assert.equal(retry.body.captured, true);
    assert.equal((await sql('SELECT count(*)::int AS n FROM charges WHERE idempotency_key = $1', [key]))[0].n, 1);
    assert.equal((await authorizationsFor('cap504')).length, 1);
    const stats = await sql('SELECT claims_resume FROM idempotency.stats WHERE database = current_database()');
    assert.ok(stats[0].claims_resume >= 1);
  });
});

describe('capture and refunds', () => {
  it('captures a charge made with capture=false once; a second capture is a stored 400', async () => {
    const created = await post('/v1/charges', { key: newKey('uncaptured'), params: charge({ capture: false }) });
    assert.equal(created.body.captured, false);
    assert.equal(created.body.status, 'succeeded');
    const key = newKey('capture');
    const captured = await post(`/v1/charges/${created.body.id}/capture`, { key });
    assert.equal(captured.status, 200, captured.text);
    assert.equal(captured.body.captured, true);
    assert.equal(captured.body.amount_captured, 1000);
    const replay = await post(`/v1/charges/${created.body.id}/capture`, { key });
    assert.equal(replay.headers['idempotent-replayed'], 'true');
    const secondKey = newKey('capture');
    assertError(await post(`/v1/charges/${created.body.id}/capture`, { key: secondKey }), 400, 'invalid_request_error', 'charge_already_captured', false);
    const stored = await post(`/v1/charges/${created.body.id}/capture`, { key: secondKey });
    assert.equal(stored.status, 400);
    assert.equal(stored.headers['idempotent-replayed'], 'true');
    assertError(await post('/v1/charges/ch_nosuchcharge/capture', { key: newKey('capture') }), 404, 'invalid_request_error', 'resource_missing', false);
    assertError(await post(`/v1/charges/${created.body.id}/capture`, { key: newKey('capture'), apiKey: b.apiKey }),
      404, 'invalid_request_error', 'resource_missing', false);
  });

  it('refunds up to the captured amount and no further', async () => {
    const created = await post('/v1/charges', { key: newKey('refundable'), params: charge() });
    const id = created.body.id;
    const part = await post('/v1/refunds', { key: newKey('refund'), params: { charge: id, amount: 600 } });
    assert.equal(part.status, 200, part.text);
    assert.equal(part.body.object, 'refund');
    assert.equal(part.body.amount, 600);
    const got = await get(`/v1/refunds/${part.body.id}`);
    assert.deepEqual(got.body, part.body);
    assertError(await get(`/v1/refunds/${part.body.id}`, { apiKey: b.apiKey }), 404, 'invalid_request_error', 'resource_missing', false);
    const tooMuch = await post('/v1/refunds', { key: newKey('refund'), params: { charge: id, amount: 401 } });
    assertError(tooMuch, 400, 'invalid_request_error', 'amount_too_large', false);
    const rest = await post('/v1/refunds', { key: newKey('refund'), params: { charge: id } });
    assert.equal(rest.body.amount, 400);
    assertError(await post('/v1/refunds', { key: newKey('refund'), params: { charge: id, amount: 1 } }),
      400, 'invalid_request_error', 'charge_already_refunded', false);
    assertError(await post('/v1/refunds', { key: newKey('refund'), params: { charge: id, amount: 1 }, apiKey: b.apiKey }),
      400, 'invalid_request_error', 'resource_missing', false);
    const after = await get(`/v1/charges/${id}`);
    assert.equal(after.body.amount_refunded, 1000);
    assert.equal(after.body.refunded, true);
  });

  it('a refund answered 502 keeps its reservation; the retry resumes and refunds once', async () => {
    const created = await post('/v1/charges', { key: newKey('refund502'), params: charge() });
    const key = newKey('refund502');
    await faults({ status: 502, acted: true });
    const failed = await post('/v1/refunds', { key, params: { charge: created.body.id, amount: 300 } });
    assertError(failed, 502, 'api_error', 'processor_unavailable', true);
    // A concurrent refund cannot take the reserved amount meanwhile.
    assertError(await post('/v1/refunds', { key: newKey('refund'), params: { charge: created.body.id, amount: 701 } }),
      400, 'invalid_request_error', 'amount_too_large', false);
    const retry = await post('/v1/refunds', { key, params: { charge: created.body.id, amount: 300 } });
    assert.equal(retry.status, 200, retry.text);
    const rows = await sql('SELECT state, amount FROM refunds WHERE charge_id = $1', [created.body.id]);
    assert.deepEqual(rows, [{ state: 'succeeded', amount: 300 }]);
    assert.equal((await get(`/v1/charges/${created.body.id}`)).body.amount_refunded, 300);
    const [auth] = await sql('SELECT processor_authorization AS id FROM charges WHERE id = $1', [created.body.id]);
    assert.equal((await ledger()).authorizations.find((x) => x.id === auth.id).refunded, 300);
  });
});

describe('unavailable database', () => {
  it('answers 503 with Stripe-Should-Retry: true while PostgreSQL is down', async () => {
    await stack.cluster.crash();
    try {
      assertError(await post('/v1/charges', { key: newKey('down'), params: charge() }), 503, 'api_error', 'database_unavailable', true);
    } finally {
      await stack.cluster.start();
    }
    const res = await post('/v1/charges', { key: newKey('down'), params: charge() });
    assert.equal(res.status, 200, res.text);
  });
});

describe('metrics', () => {
  it('serves the service\'s counters next to the extension\'s', async () => {
    const key = newKey('metrics');
    await post('/v1/charges', { key, params: charge() });
    await post('/v1/charges', { key, params: charge() });
    const text = await (await fetch(stack.api.metricsUrl)).text();
    assert.match(text, /^# TYPE payment_api_requests_total counter$/m);
    assert.match(text, /^payment_api_idempotency_total\{result="replay"\} [1-9]/m);
    assert.match(text, /^payment_api_request_duration_seconds_bucket\{route="POST \/v1\/charges",le="\+Inf"\} [1-9]/m);
    assert.match(text, /^payment_api_processor_calls_total\{operation="authorize",result="ok"\} [1-9]/m);
    const [stats] = await sql('SELECT claims_replay FROM idempotency.stats WHERE database = current_database()');
    assert.ok(stats.claims_replay >= 1);
  });
});

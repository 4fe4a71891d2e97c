'use strict';
// The official stripe npm client against the API, through the fault proxy: what a
// merchant's code sees when a connection is cut, a duplicate races, a key is reused,
// or the processor fails.  The client retries on its own (maxNetworkRetries) with the
// same Idempotency-Key, guided by Stripe-Should-Retry.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Stripe = require('stripe');
const { startStack } = require('../harness/stack');
const { processorCall } = require('../harness/services');

let stack;
let stripe;
let seq = 0;
const newKey = (label) => `${label}-${process.pid}-${(seq += 1)}`;
const sql = async (text, values) => (await stack.admin.query(text, values)).rows;
const faults = (...list) => processorCall(stack.processor, 'POST', '/control/faults', { faults: list });
const authorizationsFor = async (description) =>
  (await processorCall(stack.processor, 'GET', '/ledger')).authorizations.filter((x) => x.description === description);
const chargesFor = async (description) =>
  (await sql('SELECT id FROM charges WHERE description = $1', [description])).map((r) => r.id);

before(async () => {
  stack = await startStack({ proxy: {} });
  stripe = new Stripe(stack.merchants[0].apiKey, {
    host: '127.0.0.1',
    port: stack.proxy.port,
    protocol: 'http',
    maxNetworkRetries: 4,
    timeout: 10000,
    telemetry: false,
  });
});
after(() => stack && stack.close());

describe('the official stripe client', () => {
  it('retries a connection cut after the charge, with its own key, and gets the replay', async () => {
    stack.proxy.forceNext('cut');
    const charge = await stripe.charges.create({ amount: 2000, currency: 'eur', source: 'tok_visa', description: 'cut' });
    assert.equal(charge.status, 'succeeded');
    assert.equal(charge.lastResponse.headers['idempotent-replayed'], 'true');
    assert.equal(stack.proxy.counts.cut, 1);
    assert.deepEqual(await chargesFor('cut'), [charge.id]);
    assert.equal((await authorizationsFor('cut')).length, 1);
    const [key] = await sql('SELECT idempotency_key FROM charges WHERE id = $1', [charge.id]);
    assert.ok(key.idempotency_key, 'the client sent a key of its own');
  });

  it('retries a 409 while a duplicate is in flight, and both get the one charge', async () => {
    await faults({ delayMs: 1200 });
    const params = { amount: 3000, currency: 'usd', source: 'tok_visa', description: 'raced' };
    const idempotencyKey = newKey('raced');
    const first = stripe.charges.create(params, { idempotencyKey });
    await new Promise((r) => { setTimeout(r, 300); });
    const second = await stripe.charges.create(params, { idempotencyKey });
    const firstCharge = await first;
    assert.equal(second.id, firstCharge.id);
    assert.equal(second.lastResponse.headers['idempotent-replayed'], 'true');
    assert.equal(second.lastResponse.requestId, firstCharge.lastResponse.requestId);
    assert.deepEqual(await chargesFor('raced'), [firstCharge.id]);
    const text = await (await fetch(stack.api.metricsUrl)).text();
    assert.match(text, /^payment_api_idempotency_total\{result="idempotency_key_in_use"\} [1-9]/m);
  });

  it('a duplicate sent on a second connection is charged once', async () => {
    stack.proxy.forceNext('duplicate');
    const charge = await stripe.charges.create({ amount: 4000, currency: 'usd', source: 'tok_visa', description: 'duplicated' },
      { idempotencyKey: newKey('duplicated') });
    await new Promise((r) => { setTimeout(r, 500); });
    assert.deepEqual(await chargesFor('duplicated'), [charge.id]);
    assert.equal((await authorizationsFor('duplicated')).length, 1);
  });

  it('surfaces a 422 for a reused key without retrying it', async () => {
    const idempotencyKey = newKey('reused');
    await stripe.charges.create({ amount: 1000, currency: 'usd', source: 'tok_visa', description: 'reused' }, { idempotencyKey });
    const before422 = stack.proxy.counts.requests;
    await assert.rejects(
      stripe.charges.create({ amount: 1001, currency: 'usd', source: 'tok_visa', description: 'reused' }, { idempotencyKey }),
      (err) => {
        // stripe-node picks StripeIdempotencyError for 400 and 404 only; a 422 is a
        // StripeAPIError whose raw type is idempotency_error (README: how Stripe differs).
        assert.equal(err.type, 'StripeAPIError');
        assert.equal(err.statusCode, 422);
        assert.equal(err.rawType, 'idempotency_error');
        assert.equal(err.code, 'idempotency_key_reused');
        assert.equal(err.headers['stripe-should-retry'], 'false');
        return true;
      });
    assert.equal(stack.proxy.counts.requests - before422, 1, 'Stripe-Should-Retry: false stopped the retries');
    assert.equal((await chargesFor('reused')).length, 1);
  });

  it('retries a processor 502 (an unknown outcome) and the processor charges once', async () => {
    await faults({ status: 502, acted: true });
    const charge = await stripe.charges.create({ amount: 5000, currency: 'usd', source: 'tok_visa', description: 'flaky' },
      { idempotencyKey: newKey('flaky') });
    assert.equal(charge.captured, true);
    assert.deepEqual(await chargesFor('flaky'), [charge.id]);
    const auths = await authorizationsFor('flaky');
    assert.equal(auths.length, 1);
    assert.equal(auths[0].id, (await sql('SELECT processor_authorization FROM charges WHERE id = $1', [charge.id]))[0].processor_authorization);
  });

  it('raises StripeCardError for a decline, and does not retry it', async () => {
    await assert.rejects(
      stripe.charges.create({ amount: 1000, currency: 'usd', source: 'tok_chargeDeclinedInsufficientFunds', description: 'declined' }),
      (err) => {
        assert.equal(err.type, 'StripeCardError');
        assert.equal(err.decline_code, 'insufficient_funds');
        assert.match(err.charge, /^ch_/);
        return true;
      });
  });

  it('raises StripeInvalidRequestError with the parameter, and StripeAuthenticationError for a bad key', async () => {
    await assert.rejects(stripe.charges.create({ amount: 10, currency: 'usd', source: 'tok_visa' }),
      (err) => err.type === 'StripeInvalidRequestError' && err.code === 'amount_too_small' && err.param === 'amount');
    const stranger = new Stripe('sk_test_notakeynotakeynotakey', {
      host: '127.0.0.1', port: stack.proxy.port, protocol: 'http', telemetry: false,
    });
    await assert.rejects(stranger.charges.retrieve('ch_x'), (err) => err.type === 'StripeAuthenticationError');
  });

  it('captures, refunds and retrieves through the client', async () => {
    const charge = await stripe.charges.create({ amount: 1200, currency: 'usd', customer: 'cus_42', capture: false,
      metadata: { order: 'A-1' } });
    assert.equal(charge.captured, false);
    const captured = await stripe.charges.capture(charge.id);
    assert.equal(captured.captured, true);
    const refund = await stripe.refunds.create({ charge: charge.id, amount: 200 });
    assert.equal(refund.amount, 200);
    assert.equal((await stripe.refunds.retrieve(refund.id)).charge, charge.id);
    const again = await stripe.charges.retrieve(charge.id);
    assert.equal(again.amount_refunded, 200);
    assert.deepEqual(again.metadata, { order: 'A-1' });
  });
});

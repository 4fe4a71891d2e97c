'use strict';
// `make example`: a short session with the official stripe client against the payment
// API, showing what the Idempotency-Key does at the HTTP level: a retry replayed after
// a lost reply, a 409 while a duplicate is in flight, a 422 for a reused key, and a
// processor 502 retried without a second charge.  Everything runs on loopback in a
// throwaway cluster, and is stopped at the end.

const Stripe = require('stripe');
const { startStack } = require('../harness/stack');
const { processorCall } = require('../harness/services');

const title = (text) => console.log(`\n=== ${text} ===`);
const show = (label, value) => console.log(`  ${label.padEnd(28)} ${typeof value === 'string' ? value : JSON.stringify(value)}`);

async function main() {
  console.log('starting a throwaway PostgreSQL, the simulated processor and the payment API ...');
  const stack = await startStack({ merchants: ['Example Shop'], processor: { LATENCY_MS: '2-5' }, proxy: {} });
  try {
    const sql = async (text, values) => (await stack.admin.query(text, values)).rows;
    const ledger = () => processorCall(stack.processor, 'GET', '/ledger');
    const options = { host: '127.0.0.1', port: stack.proxy.port, protocol: 'http', telemetry: false };
    const stripe = new Stripe(stack.merchants[0].apiKey, { ...options, maxNetworkRetries: 3 });
    const impatient = new Stripe(stack.merchants[0].apiKey, { ...options, maxNetworkRetries: 0 });
    show('API (behind a fault proxy)', `http://127.0.0.1:${stack.proxy.port}`);
    show('merchant', stack.merchants[0].id);

    title('1. The reply is lost: the client retries with the same key and gets the stored reply');
    stack.proxy.forceNext('cut');
    const first = await stripe.charges.create(
      { amount: 2000, currency: 'eur', source: 'tok_visa', description: 'order 1001' },
      { idempotencyKey: 'order-1001' });
    show('connections cut by the proxy', String(stack.proxy.counts.cut));
    show('charge', `${first.id} ${first.status}, captured: ${first.captured}`);
    show('Idempotent-Replayed', first.lastResponse.headers['idempotent-replayed']);
    show('Request-Id (the original)', first.lastResponse.requestId);
    show('charges for order-1001', (await sql("SELECT id FROM charges WHERE idempotency_key = 'order-1001'")).map((r) => r.id));

    title('2. A duplicate while the first is in flight: 409, then the replay');
    await processorCall(stack.processor, 'POST', '/control/faults', { faults: [{ delayMs: 1000 }] });
    const params = { amount: 3500, currency: 'eur', source: 'tok_visa', description: 'order 1002' };
    const inFlight = stripe.charges.create(params, { idempotencyKey: 'order-1002' });
    await new Promise((r) => { setTimeout(r, 300); });
    try {
      await impatient.charges.create(params, { idempotencyKey: 'order-1002' });
    } catch (err) {
      show('duplicate (no retries)', `${err.statusCode} ${err.rawType} ${err.code}`);
      show('Stripe-Should-Retry', err.headers['stripe-should-retry']);
    }
    const original = await inFlight;
    const again = await stripe.charges.create(params, { idempotencyKey: 'order-1002' });
    show('original', original.id);
    show('retried duplicate', `${again.id}, Idempotent-Replayed: ${again.lastResponse.headers['idempotent-replayed']}`);

    title('3. The same key with other parameters: 422, not retried');
    try {
      await stripe.charges.create({ ...params, amount: 9900 }, { idempotencyKey: 'order-1002' });
    } catch (err) {
      show('answer', `${err.statusCode} ${err.rawType} ${err.code}`);
      show('stripe-node raises', `${err.type} (Stripe itself answers 400 here; see the README)`);
      show('Stripe-Should-Retry', err.headers['stripe-should-retry']);
      show('message', err.message);
    }

    title('4. The processor answers 502 after charging: nothing stored, the retry is charged once');
    await processorCall(stack.processor, 'POST', '/control/faults', { faults: [{ status: 502, acted: true }] });
    const flaky = await stripe.charges.create(
      { amount: 4200, currency: 'eur', source: 'tok_visa', description: 'order 1003' },
      { idempotencyKey: 'order-1003' });
    const auths = (await ledger()).authorizations.filter((a) => a.description === 'order 1003');
    show('charge', `${flaky.id} ${flaky.status}`);
    show('processor failures so far', (await ledger()).counts);
    show('authorizations at processor', auths.map((a) => `${a.id} ${a.amount} captured: ${a.captured}`));
    const metrics = await (await fetch(stack.api.metricsUrl)).text();
    for (const line of metrics.split('\n').filter((l) => /^payment_api_(idempotency_total|processor_calls_total)/.test(l))) {
      console.log(`  ${line}`);
    }

    title('What the database holds: the keys, and the extension\'s counters');
    for (const row of await sql(`SELECT key, state, response_status, recovery_point, response_body->>'id' AS charge
                                  FROM idempotency.keys ORDER BY created_at`)) {
      show(row.key, `${row.state} ${row.response_status} ${row.charge} (recovery point: ${row.recovery_point})`);
    }
    const [stats] = await sql(`SELECT claims_new, claims_replay, claims_resume, errors_ik409, errors_ik422,
                                      completions, releases_5xx FROM idempotency.stats WHERE database = current_database()`);
    show('idempotency.stats', stats);
  } finally {
    await stack.close();
  }
  console.log('\nstopped everything that was started.');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

'use strict';
// Many clients with the official stripe client (its default retries and timeout) create,
// capture and refund charges for a fixed time, through the fault proxy (cut connections,
// delays, duplicates), to the API with its default lease and wait, connected through
// PgBouncer in transaction pooling mode, against a processor that fails at a rate
// (half of the failures after the money moved), while
// the API is killed with SIGKILL twice, its backends are ended once and PostgreSQL is
// killed (-m immediate) once; the API must never exit on its own.
// Each logical request has its own Idempotency-Key; the client retries on its own, and
// when its retries run out the test sends the same request with the same key again,
// until it has an answer.  Then the books are checked, from the database and from the
// processor.  CHAOS_SECONDS and CHAOS_CLIENTS size the run.

const { it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Stripe = require('stripe');
const { startStack } = require('../harness/stack');
const { processorCall } = require('../harness/services');

const SECONDS = Number(process.env.CHAOS_SECONDS || 30);
const CLIENTS = Number(process.env.CHAOS_CLIENTS || 12);
const RESOLVE_WITHIN_MS = 120000;

let stack;
const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });
const sql = async (text, values) => (await stack.admin.query(text, values)).rows;

before(async () => {
  stack = await startStack({
    merchants: ['Chaos A', 'Chaos B', 'Chaos C'],
    processor: { LATENCY_MS: '1-15', FAILURE_RATE: '0.03', ACTED_RATE: '0.5' },
    proxy: { rates: { cut: 0.03, delay: 0.03, duplicate: 0.03 }, delayMs: 300 },
    pooler: true,
    api: { defaults: true },
  });
});
after(() => stack && stack.close());

// Sends one logical request until it has an answer.  An answer is a success, a decline
// or a 400; anything else (a cut connection, a 409, a 5xx, the database or the API
// being down) is sent again with the same key.
async function resolve(send, counters) {
  const deadline = Date.now() + RESOLVE_WITHIN_MS;
  for (let attempt = 1; ; attempt += 1) {
    try {
      const value = await send();
      if (attempt > 1) counters.resolvedByResend += 1;
      return { outcome: 'ok', value };
    } catch (err) {
      if (err.type === 'StripeCardError') return { outcome: 'declined', err };
      if (err.type === 'StripeInvalidRequestError') return { outcome: 'invalid', err };
      if ([401, 410, 422].includes(err.statusCode)) return { outcome: 'wrong', err };
      if (Date.now() > deadline) return { outcome: 'unresolved', err };
      counters.testRetries += 1;
      await sleep(100 + Math.random() * 300);
    }
  }
}

async function client(index, end, merchant, log, counters) {
  const stripe = new Stripe(merchant.apiKey, { host: '127.0.0.1', port: stack.proxy.port, protocol: 'http', telemetry: false });
  for (let n = 1; Date.now() < end; n += 1) {
    const tag = `chaos-${index}-${n}`;
    const amount = 100 + Math.floor(Math.random() * 9900);
    const capture = Math.random() < 0.75;
    const source = Math.random() < 0.05 ? 'tok_chargeDeclined' : 'tok_visa';
    const key = `${tag}-create`;
    const created = await resolve(() => stripe.charges.create(
      { amount, currency: 'usd', source, description: tag, capture, metadata: { tag } }, { idempotencyKey: key }), counters);
    log.push({ op: 'create', tag, key, merchant: merchant.id, amount, capture, ...created });
    if (created.outcome !== 'ok') continue;
    let captured = created.value.captured;
    if (!captured) {
      const captureKey = `${tag}-capture`;
      const result = await resolve(() => stripe.charges.capture(created.value.id, {}, { idempotencyKey: captureKey }), counters);
      log.push({ op: 'capture', tag, key: captureKey, merchant: merchant.id, charge: created.value.id, ...result });
      captured = result.outcome === 'ok';
    }
    if (!captured) continue;
    const refunds = Math.floor(Math.random() * 3);
    for (let r = 1; r <= refunds; r += 1) {
      const refundKey = `${tag}-refund-${r}`;
      const refundAmount = 1 + Math.floor(Math.random() * amount * 0.7);
      const result = await resolve(() => stripe.refunds.create(
        { charge: created.value.id, amount: refundAmount }, { idempotencyKey: refundKey }), counters);
      log.push({ op: 'refund', tag, key: refundKey, merchant: merchant.id, charge: created.value.id, amount: refundAmount, ...result });
    }
  }
}

// The faults on a schedule: the API killed at a quarter and at three quarters of the
// run, every backend of the service ended (pg_terminate_backend) at a third, PostgreSQL
// killed at half.  restart() refuses an API that is not running: one that exited on its
// own fails the run instead of being started again unnoticed.
async function faults(end, events) {
  const at = (share) => sleep(Math.max(0, end - SECONDS * 1000 * (1 - share) - Date.now()));
  await at(0.25);
  await stack.api.restart();
  events.apiKills += 1;
  await at(1 / 3);
  const [{ n }] = await sql(`SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
                              WHERE usename = 'payments_app'`);
  events.backendsTerminated += n;
  await at(0.5);
  await stack.cluster.crash();
  events.pgCrashes += 1;
  await sleep(1000);
  await stack.cluster.start();
  await at(0.75);
  await stack.api.restart();
  events.apiKills += 1;
}

it(`${CLIENTS} clients for ${SECONDS} s with cut connections, processor failures and killed servers keep the books straight`, async (t) => {
  const log = [];
  const counters = { testRetries: 0, resolvedByResend: 0 };
  const events = { apiKills: 0, pgCrashes: 0, backendsTerminated: 0 };
  const end = Date.now() + SECONDS * 1000;
  await Promise.all([
    faults(end, events),
    ...Array.from({ length: CLIENTS }, (_, i) => client(i, end, stack.merchants[i % stack.merchants.length], log, counters)),
  ]);

  const ledger = await processorCall(stack.processor, 'GET', '/ledger');
  const byOutcome = {};
  for (const entry of log) byOutcome[`${entry.op}:${entry.outcome}`] = (byOutcome[`${entry.op}:${entry.outcome}`] || 0) + 1;
  t.diagnostic(`chaos run: ${JSON.stringify({ seconds: SECONDS, clients: CLIENTS, requests: log.length, byOutcome,
    ...counters, ...events, proxy: stack.proxy.counts, processor: ledger.counts })}`);

  // Every logical request got an answer, and never one that a correct client cannot get.
  const open = log.filter((e) => e.outcome === 'unresolved' || e.outcome === 'wrong');
  assert.deepEqual(open.map((e) => `${e.key}: ${e.err.statusCode} ${e.err.message}`), []);
  // The API never exited but when killed, and the faults did happen.
  assert.deepEqual(stack.api.unexpectedExits, [], 'the API exited on its own');
  assert.ok(stack.api.running, 'the API is running at the end');
  assert.equal(events.apiKills, 2);
  assert.ok(events.backendsTerminated > 0);
  assert.equal(events.pgCrashes, 1);
  assert.ok(stack.proxy.counts.cut > 0 && stack.proxy.counts.duplicated > 0 && stack.proxy.counts.delayed > 0);
  assert.ok(ledger.counts.failed_before > 0 && ledger.counts.failed_after > 0);

  const merchants = stack.merchants.map((m) => m.id);
  const charges = await sql('SELECT * FROM charges WHERE merchant_id = ANY($1)', [merchants]);
  const refunds = await sql('SELECT * FROM refunds WHERE merchant_id = ANY($1)', [merchants]);
  const keys = await sql('SELECT scope, key, state, response_status, response_body FROM idempotency.keys WHERE scope = ANY($1)', [merchants]);
  const chargeById = new Map(charges.map((c) => [c.id, c]));
  const keyOf = new Map(keys.map((k) => [`${k.scope}/${k.key}`, k]));

  // Every charge a client was told succeeded exists, once, as told.
  for (const e of log.filter((x) => x.op === 'create' && x.outcome === 'ok')) {
    const row = chargeById.get(e.value.id);
    assert.ok(row, `charge ${e.value.id} of ${e.key} exists`);
    assert.equal(row.merchant_id, e.merchant);
    assert.equal(row.idempotency_key, e.key);
    assert.equal(row.amount, e.amount);
  }
  for (const e of log.filter((x) => x.op === 'create' && x.outcome === 'declined')) {
    assert.equal(chargeById.get(e.err.charge).state, 'failed');
  }
  // No idempotency key has two charges, and no request of the log is missing one.
  const perKey = new Map();
  for (const c of charges) perKey.set(`${c.merchant_id}/${c.idempotency_key}`, (perKey.get(`${c.merchant_id}/${c.idempotency_key}`) || 0) + 1);
  assert.deepEqual([...perKey].filter(([, n]) => n > 1), []);
  assert.equal(charges.length, log.filter((x) => x.op === 'create' && x.outcome !== 'invalid').length);
  // Every charge and refund has its stored key, with its reply; nothing is left in progress.
  assert.deepEqual(keys.filter((k) => k.state !== 'completed').map((k) => k.key), []);
  for (const c of charges) {
    const k = keyOf.get(`${c.merchant_id}/${c.idempotency_key}`);
    assert.ok(k, `charge ${c.id} has its key`);
    assert.equal(k.response_status === 402 ? k.response_body.error.charge : k.response_body.id, c.id);
  }
  for (const r of refunds) {
    const k = keyOf.get(`${r.merchant_id}/${r.idempotency_key}`);
    assert.ok(k && k.response_status === 200 && k.response_body.id === r.id, `refund ${r.id} has its key`);
    assert.equal(r.state, 'succeeded');
  }
  // Refunds never exceed their charge, and the charge's total is their sum.
  const refunded = new Map();
  for (const r of refunds) refunded.set(r.charge_id, (refunded.get(r.charge_id) || 0) + r.amount);
  for (const c of charges) {
    assert.equal(c.amount_refunded, refunded.get(c.id) || 0);
    assert.ok(c.amount_refunded <= c.amount_captured);
  }
  for (const e of log.filter((x) => x.op === 'refund' && x.outcome === 'ok')) {
    assert.ok(refunds.some((r) => r.id === e.value.id && r.amount === e.amount));
  }

  // The processor charged each request once: one authorization per logical request, each
  // the charge's own, captured exactly when the charge is, refunded exactly as much.
  const authsByTag = new Map();
  for (const a of ledger.authorizations) authsByTag.set(a.description, [...(authsByTag.get(a.description) || []), a]);
  assert.deepEqual([...authsByTag].filter(([, list]) => list.length > 1).map(([tag]) => tag), []);
  const authById = new Map(ledger.authorizations.map((a) => [a.id, a]));
  const withAuth = charges.filter((c) => c.processor_authorization);
  assert.equal(withAuth.length, ledger.authorizations.filter((a) => a.status === 'authorized').length);
  // No authorization at the processor without its charge here.
  const authorizedCharges = new Set(withAuth.map((c) => c.processor_authorization));
  assert.deepEqual(ledger.authorizations.filter((a) => a.status === 'authorized' && !authorizedCharges.has(a.id))
    .map((a) => a.description), []);
  for (const c of withAuth) {
    const a = authById.get(c.processor_authorization);
    assert.ok(a, `the processor has ${c.processor_authorization}`);
    assert.equal(a.amount, c.amount);
    assert.equal(a.description, c.description);
    assert.equal(a.captured, c.state === 'captured');
    assert.equal(a.refunded, c.amount_refunded);
  }
  assert.equal(ledger.refunds.length, refunds.length);
});

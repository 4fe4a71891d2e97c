'use strict';
// PostgreSQL dropping a connection that the API has checked out of its pool: a backend
// ended by pg_terminate_backend() (a DBA ending a runaway session) and the server stopped
// with -m immediate, each while a request's transaction waits on a lock.  The request is
// answered 503 with Stripe-Should-Retry: true, the API keeps running (node-postgres
// emits 'error' on a checked-out client, which ends a process that does not listen),
// and the retry with the same key is charged once.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startStack } = require('../harness/stack');
const { request } = require('./lib/http');

let stack;
const sql = async (text, values) => (await stack.admin.query(text, values)).rows;
const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });
const charge = { amount: 1200, currency: 'usd', source: 'tok_visa' };
const post = (key) => request(stack.api.url, 'POST', '/v1/charges', { apiKey: stack.merchants[0].apiKey, key, params: charge });

before(async () => { stack = await startStack(); });
after(() => stack && stack.close());

// Holds an exclusive lock on charges in a session of its own until the returned
// function is called, and waits until one of the API's backends waits for it.
async function blockCharges() {
  const locker = await stack.admin.connect();
  locker.on('error', () => {});
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE charges IN ACCESS EXCLUSIVE MODE');
  return {
    async waiter() {
      for (let i = 0; i < 200; i += 1) {
        const rows = await sql(`SELECT pid FROM pg_stat_activity
                                 WHERE application_name = 'payment-api' AND wait_event_type = 'Lock'`);
        if (rows.length) return rows[0].pid;
        await sleep(25);
      }
      throw new Error('no API backend waited for the lock');
    },
    async unblock() {
      try {
        await locker.query('ROLLBACK');
      } catch { /* the server went away with the lock */ }
      locker.release(true);
    },
  };
}

function assertUnavailable(res) {
  assert.equal(res.status, 503, res.text);
  assert.equal(res.body.error.code, 'database_unavailable');
  assert.equal(res.headers['stripe-should-retry'], 'true');
}

async function assertStillServing(key) {
  await sleep(300);
  assert.deepEqual(stack.api.unexpectedExits, [], 'the API exited on its own');
  assert.ok(stack.api.running, 'the API is running');
  const res = await post(key);
  assert.equal(res.status, 200, res.text);
  assert.equal((await sql('SELECT count(*)::int AS n FROM charges WHERE idempotency_key = $1', [key]))[0].n, 1);
}

describe('a database connection lost while the API has it checked out', () => {
  it('pg_terminate_backend() of a busy API backend: 503, and the API keeps serving', async () => {
    const lock = await blockCharges();
    const inFlight = post('terminated');
    try {
      const pid = await lock.waiter();
      await sql('SELECT pg_terminate_backend($1)', [pid]);
      assertUnavailable(await inFlight);
    } finally {
      await lock.unblock();
    }
    await assertStillServing('terminated');
  });

  it('PostgreSQL stopped with -m immediate under a busy API backend: 503 while down, then served', async () => {
    const lock = await blockCharges();
    const inFlight = post('crashed');
    try {
      await lock.waiter();
      await stack.cluster.crash();
      assertUnavailable(await inFlight);
      assertUnavailable(await post('crashed'));
    } finally {
      await lock.unblock();
      await stack.cluster.start();
    }
    await assertStillServing('crashed');
  });
});

'use strict';
// Everything a run needs, started in order and stopped in reverse: a throwaway cluster
// with the payments database, merchants, optionally PgBouncer between the API and the
// cluster (pooler: true), the processor, the API, and optionally the fault proxy in
// front of the API.  api.defaults keeps the service's own lease and wait instead of the
// short ones the request-level tests use.  close() stops whatever was started, also after a
// failure half-way, and is safe to call twice.

const { Pool } = require('pg');
const { Cluster } = require('./cluster');
const database = require('./database');
const { startProcessor, startApi } = require('./services');
const { FaultProxy } = require('./proxy');
const { PgBouncer } = require('./pgbouncer');

async function startStack({
  merchants = ['Merchant A'],
  processor = {},
  api = {},
  proxy = null,
  pooler = false,
  clusterSettings = {},
} = {}) {
  const stack = { closers: [] };
  // Also fails, after stopping everything, when the API had exited without being told
  // to: every test file that closes its stack in after() then fails on it.
  stack.close = async () => {
    const closers = stack.closers.splice(0).reverse();
    for (const close of closers) {
      try {
        await close();
      } catch (err) {
        process.stderr.write(`stack: stopping failed: ${err.message}\n`);
      }
    }
    const exits = stack.api ? stack.api.unexpectedExits.splice(0) : [];
    if (exits.length) throw new Error(`the payment API exited on its own: ${JSON.stringify(exits)}`);
  };
  try {
    const cluster = await new Cluster({ settings: clusterSettings }).init();
    stack.cluster = cluster;
    stack.closers.push(async () => {
      stack.serverLog = await cluster.destroy();
    });
    await cluster.start();
    database.createDatabase(cluster);
    stack.merchants = merchants.map((name) => database.newMerchant(name));
    database.addMerchants(cluster, stack.merchants);

    stack.admin = new Pool({ connectionString: cluster.url(database.DATABASE, 'postgres'), max: 2 });
    stack.admin.on('error', () => {});
    stack.closers.push(() => stack.admin.end());

    const role = api.role || database.APP_ROLE;
    let databaseUrl = cluster.url(database.DATABASE, role);
    if (pooler) {
      stack.pooler = new PgBouncer(cluster, { database: database.DATABASE, users: [role] });
      stack.closers.push(() => stack.pooler.stop());
      await stack.pooler.start();
      databaseUrl = stack.pooler.url(role);
    }

    stack.processor = await startProcessor(processor);
    stack.closers.push(() => stack.processor.stop());

    stack.api = await startApi({
      databaseUrl,
      processorUrl: stack.processor.url,
      // short, and an immediate 409, which the request-level tests check
      ...(api.defaults ? {} : { LEASE_SECONDS: '2', PROCESSOR_TIMEOUT_MS: '1500', IN_USE_WAIT_SECONDS: '0' }),
      ...api.env,
    });
    stack.closers.push(() => stack.api.stop());

    if (proxy) {
      stack.proxy = new FaultProxy({ targetPort: stack.api.port, ...proxy });
      await stack.proxy.listen();
      stack.closers.push(() => stack.proxy.close());
    }
    return stack;
  } catch (err) {
    await stack.close();
    throw err;
  }
}

module.exports = { startStack };

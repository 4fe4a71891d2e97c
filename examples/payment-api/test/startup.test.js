'use strict';
// Deploying from an empty server, one step missing at a time: the service refuses to
// start, with a message naming the step, instead of starting and answering every
// payment with a 500 (and Stripe-Should-Retry: true).  db/schema.sql refuses to run
// before the role it grants to exists.  One cluster, without
// idempotency.downstream_secret until the test sets it.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { Cluster } = require('../harness/cluster');
const database = require('../harness/database');
const { startProcessor, startApi } = require('../harness/services');

const schema = fs.readFileSync(path.join(__dirname, '..', 'db', 'schema.sql'), 'utf8');
let cluster;
let processor;
const apis = [];

before(async () => {
  cluster = await new Cluster({ settings: { 'idempotency.downstream_secret': "''" } }).init();
  await cluster.start();
  processor = await startProcessor();
});
after(async () => {
  for (const api of apis) await api.stop();
  if (processor) await processor.stop();
  if (cluster) await cluster.destroy();
});

async function refusal(role, db = database.DATABASE) {
  try {
    apis.push(await startApi({ databaseUrl: cluster.url(db, role), processorUrl: processor.url }));
  } catch (err) {
    return err.message;
  }
  assert.fail(`the API started as ${role} on ${db}`);
}

describe('deploying from an empty server', () => {
  it('db/schema.sql refuses to run before the role payments_app exists', () => {
    cluster.psql('postgres', 'CREATE DATABASE early');
    assert.throws(() => cluster.psql('early', schema), /role payments_app does not exist[\s\S]*CREATE ROLE payments_app/);
  });

  it('the service refuses to start without the extension, without its grants, and without the downstream secret', async () => {
    database.createDatabase(cluster);
    cluster.psql('postgres', 'CREATE DATABASE bare; CREATE ROLE stranger LOGIN;');
    assert.match(await refusal(database.APP_ROLE, 'bare'), /"failed to start".*the idempotency extension is not installed in this database: run db\/schema.sql/);
    assert.match(await refusal('stranger'), /the role stranger lacks SELECT on merchants;.*USAGE on the schema idempotency: run db\/schema.sql/);
    assert.match(await refusal('nobody'), /cannot connect to the database of DATABASE_URL: .*role .*nobody.* does not exist/);
    assert.match(await refusal(database.APP_ROLE), /cannot derive processor keys: idempotency.downstream_secret is not set \(Set idempotency.downstream_secret once/);

    cluster.psql('postgres', "ALTER SYSTEM SET idempotency.downstream_secret = 'set-at-last'; SELECT pg_reload_conf();");
    await new Promise((r) => { setTimeout(r, 500); });
    const api = await startApi({ databaseUrl: cluster.url(database.DATABASE, database.APP_ROLE), processorUrl: processor.url });
    apis.push(api);
    assert.ok(api.running);
  });
});

'use strict';
// The payments database in a throwaway cluster: the roles, db/schema.sql, and
// merchants with their API keys.

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const DATABASE = 'payments';
const APP_ROLE = 'payments_app';
// The same service, connected as this role, runs with idempotency.mode = off:
// what `make bench-api` compares against.  (The mode is a superuser setting, so
// the application cannot switch it off for itself.)
const APP_ROLE_OFF = 'payments_app_off';

const schema = fs.readFileSync(path.join(__dirname, '..', 'db', 'schema.sql'), 'utf8');

function literal(text) {
  return `'${String(text).replace(/'/g, "''")}'`;
}

function createDatabase(cluster, { extraSql = '' } = {}) {
  cluster.psql('postgres', `
    CREATE ROLE ${APP_ROLE} LOGIN;
    CREATE ROLE ${APP_ROLE_OFF} LOGIN IN ROLE ${APP_ROLE};
    ALTER ROLE ${APP_ROLE_OFF} SET idempotency.mode = 'off';
    CREATE DATABASE ${DATABASE};`);
  cluster.psql(DATABASE, `${extraSql}\n${schema}`);
}

// merchants: [{ id: 'acct_...', name, apiKey: 'sk_test_...' }]
function addMerchants(cluster, merchants) {
  const rows = merchants.map((m) => {
    const digest = crypto.createHash('sha256').update(m.apiKey, 'utf8').digest('hex');
    return `INSERT INTO merchants VALUES (${literal(m.id)}, ${literal(m.name)});
            INSERT INTO api_keys (key_sha256, merchant_id) VALUES ('\\x${digest}', ${literal(m.id)});`;
  });
  cluster.psql(DATABASE, rows.join('\n'));
}

function newMerchant(name) {
  const suffix = crypto.randomBytes(9).toString('base64url').replace(/[^A-Za-z0-9]/g, 'x');
  return { id: `acct_${suffix}`, name, apiKey: `sk_test_${crypto.randomBytes(18).toString('hex')}` };
}

module.exports = { DATABASE, APP_ROLE, APP_ROLE_OFF, createDatabase, addMerchants, newMerchant };

'use strict';
// What the service needs from its database, checked at start-up with the role it runs
// as, so that a deployment that lacks a step refuses to start with a message naming it,
// rather than answering every payment with a 500: the database reachable, the
// extension installed, the schema's tables, the grants db/schema.sql gives, and
// idempotency.downstream_secret set (every processor key is derived under it).

const TABLES = [
  ['merchants', ['SELECT']],
  ['api_keys', ['SELECT']],
  ['charges', ['SELECT', 'INSERT', 'UPDATE', 'DELETE']],
  ['refunds', ['SELECT', 'INSERT', 'UPDATE']],
];
// The functions the service calls (idempotency.js), by the signatures db/schema.sql grants.
const FUNCTIONS = [
  'idempotency.claim(text, text, bytea, interval, interval)',
  'idempotency.complete(text, text, integer, jsonb, jsonb, uuid)',
  'idempotency.checkpoint(text, text, text, uuid)',
  'idempotency.fingerprint(text, text, jsonb)',
];
const SCHEMA_STEP = 'run db/schema.sql in this database as a superuser (README: Deploying from an empty server)';

async function preflight(pool) {
  let client;
  try {
    client = await pool.connect();
  } catch (err) {
    throw new Error(`cannot connect to the database of DATABASE_URL: ${err.message}`);
  }
  try {
    const { rows: [{ role, extension }] } = await client.query(
      "SELECT current_user AS role, (SELECT extversion FROM pg_extension WHERE extname = 'idempotency') AS extension");
    if (extension === null) {
      throw new Error(`the idempotency extension is not installed in this database: ${SCHEMA_STEP}`);
    }
    const missing = [];
    for (const [table, privileges] of TABLES) {
      const { rows: [row] } = await client.query(
        `SELECT to_regclass($1) IS NOT NULL AS present,
                ARRAY(SELECT p FROM unnest($2::text[]) AS p
                       WHERE to_regclass($1) IS NOT NULL AND NOT has_table_privilege(to_regclass($1), p)) AS lacking`,
        [table, privileges]);
      if (!row.present) missing.push(`the table ${table}`);
      else if (row.lacking.length) missing.push(`${row.lacking.join(', ')} on ${table}`);
    }
    const { rows: [merchants] } = await client.query(
      `SELECT to_regclass('merchants') IS NOT NULL AS present,
              EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass('merchants')
                         AND attname = 'require_idempotency_key' AND NOT attisdropped) AS column`);
    if (merchants.present && !merchants.column) missing.push('the column merchants.require_idempotency_key');
    const { rows: [{ usage }] } = await client.query("SELECT has_schema_privilege('idempotency', 'USAGE') AS usage");
    if (!usage) missing.push('USAGE on the schema idempotency');
    else {
      const { rows: [{ policies }] } = await client.query(
        "SELECT has_column_privilege('idempotency.policies', 'retain', 'SELECT') AS policies");
      if (!policies) missing.push('SELECT on idempotency.policies (scope, ttl, retain)');
    }
    for (const signature of usage ? FUNCTIONS : []) {
      const { rows: [row] } = await client.query(
        `SELECT to_regprocedure($1) IS NOT NULL AS present,
                coalesce(has_function_privilege(to_regprocedure($1), 'EXECUTE'), false) AS granted`, [signature]);
      if (!row.present) missing.push(`the function ${signature} (extension ${extension})`);
      else if (!row.granted) missing.push(`EXECUTE on ${signature}`);
    }
    if (missing.length) {
      throw new Error(`the role ${role} lacks ${missing.join('; ')}: ${SCHEMA_STEP}, `
        + 'and connect as the role it grants to (payments_app)');
    }
    try {
      await client.query(`SELECT idempotency.downstream_key('preflight', 'preflight',
                            idempotency.fingerprint('GET', '/preflight', '{}'::jsonb), 'preflight')`);
    } catch (err) {
      throw new Error(`the service cannot derive processor keys: ${err.message}${err.hint ? ` (${err.hint})` : ''}`);
    }
  } finally {
    client.release();
  }
}

module.exports = { preflight };

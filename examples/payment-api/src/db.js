'use strict';
// The connection pool and one helper for a transaction.  One HTTP request runs one or
// more short transactions; none of them stays open while the processor is called.

const { Pool, types } = require('pg');

// bigint as a number: every integer here (amounts, epoch seconds) is far below 2^53.
types.setTypeParser(types.builtins.INT8, Number);

function createPool({ databaseUrl, poolSize }, log) {
  const pool = new Pool({
    connectionString: databaseUrl,
    max: poolSize,
    connectionTimeoutMillis: 5000,
    application_name: 'payment-api',
  });
  // A connection dies when PostgreSQL restarts, fails over or ends its backend.  An
  // idle one is reported by the pool's 'error' event; one checked out by a request by
  // the client's own, which node-postgres emits besides failing the query.  Unheard,
  // either would end the process: every client gets a listener when it connects, and
  // the request's query error becomes a 503 (errors.js), its client destroyed.
  pool.on('error', (err) => log('idle database connection lost', { error: err.message }));
  pool.on('connect', (client) => {
    client.on('error', (err) => log('database connection lost', { error: err.message, code: err.code }));
  });
  return pool;
}

// Runs fn(client) between BEGIN and COMMIT; any error rolls back.  A connection
// that failed is destroyed rather than returned to the pool.
async function transaction(pool, fn) {
  const client = await pool.connect();
  let healthy = true;
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    try {
      await client.query('ROLLBACK');
    } catch {
      healthy = false;
    }
    throw err;
  } finally {
    client.release(!healthy);
  }
}

module.exports = { createPool, transaction };

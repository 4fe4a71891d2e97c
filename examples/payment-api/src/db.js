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
  // An idle connection dies when PostgreSQL restarts.  Without a listener the pool's
  // 'error' event would end the process; the next request opens a new connection.
  pool.on('error', (err) => log('idle database connection lost', { error: err.message }));
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

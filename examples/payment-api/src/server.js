'use strict';
// The payment API's process: the HTTP API on PORT and /metrics on METRICS_PORT, both
// on loopback.  Metrics are on a port of their own so that they are never served to
// API callers.  It starts only when its database has what it needs (preflight.js).  SIGTERM stops accepting requests and lets those in flight finish.

const http = require('node:http');
const { loadConfig } = require('./config');
const { createPool } = require('./db');
const { createApp } = require('./app');
const { createProcessor } = require('./processor');
const { createMetrics } = require('./metrics');
const { preflight } = require('./preflight');

function log(message, fields = {}) {
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), message, ...fields })}\n`);
}

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server.address().port));
  });
}

async function main() {
  const config = loadConfig();
  const metrics = createMetrics();
  const pool = createPool(config, log);
  await preflight(pool);
  const processor = createProcessor(config, metrics);
  const api = http.createServer(createApp({ pool, config, processor, metrics, log }));
  const metricsServer = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/metrics') {
      res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4' });
      res.end(metrics.render());
    } else {
      res.writeHead(404).end();
    }
  });
  const apiPort = await listen(api, config.port);
  const metricsPort = await listen(metricsServer, config.metricsPort);
  log('listening', { port: apiPort, metricsPort });
  process.once('SIGTERM', () => {
    log('stopping');
    metricsServer.close();
    api.close(() => pool.end());
    api.closeIdleConnections();
  });
}

main().catch((err) => {
  log('failed to start', { error: err.message });
  process.exit(1);
});

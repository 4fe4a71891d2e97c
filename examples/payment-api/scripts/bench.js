'use strict';
// `make bench-api`: what an API user pays for idempotency.  The same service runs twice
// against one throwaway cluster: as payments_app (idempotency enforced) and as
// payments_app_off (the role has idempotency.mode = off: claim() returns 'new' and
// records nothing, complete() is skipped).  Rounds of each alternate, so that drift of
// the shared machine falls on both alike; each case is the median of its rounds, and
// the ratio is the median of the per-round ratios.  A third case replays completed
// keys.  Each request is POST /v1/charges (authorize and capture at the processor)
// with a new Idempotency-Key, over keep-alive connections.
//   BENCH_API_ROUNDS (5), BENCH_API_SECONDS (5), BENCH_API_CLIENTS ("1 16": a run of
//   rounds per number of clients), BENCH_API_PROCESSOR_LATENCY_MS (0),
//   BENCH_API_RESULTS (bench-results)

const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { startStack } = require('../harness/stack');
const { startApi } = require('../harness/services');
const database = require('../harness/database');
const { encode } = require('../test/lib/http');

const env = (name, fallback) => Number(process.env[name] || fallback);
const ROUNDS = env('BENCH_API_ROUNDS', 5);
const SECONDS = env('BENCH_API_SECONDS', 5);
const CLIENT_COUNTS = String(process.env.BENCH_API_CLIENTS || '1 16').trim().split(/\s+/).map(Number);
const LATENCY = String(process.env.BENCH_API_PROCESSOR_LATENCY_MS || '0');
const RESULTS = path.resolve(__dirname, '..', process.env.BENCH_API_RESULTS || 'bench-results');

function post(agent, port, apiKey, key, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port, path: '/v1/charges', method: 'POST', agent,
      headers: {
        Authorization: `Bearer ${apiKey}`,
        'Idempotency-Key': key,
        'Content-Type': 'application/x-www-form-urlencoded',
        'Content-Length': Buffer.byteLength(body),
      },
    }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
    req.end(body);
  });
}

// One round: `clients` loops for SECONDS, each sending a request as soon as the last
// one is answered.  keyFor(client, i) names the key of a loop's i-th request.
async function round({ port, apiKey, keyFor, clients }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
  const body = encode({ amount: 1000, currency: 'usd', source: 'tok_visa', description: 'bench' }).toString();
  const latencies = [];
  let failures = 0;
  const started = process.hrtime.bigint();
  const end = Date.now() + SECONDS * 1000;
  await Promise.all(Array.from({ length: clients }, async (_, client) => {
    for (let i = 0; Date.now() < end; i += 1) {
      const t0 = process.hrtime.bigint();
      const status = await post(agent, port, apiKey, keyFor(client, i), body);
      latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (status !== 200) failures += 1;
    }
  }));
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  agent.destroy();
  latencies.sort((x, y) => x - y);
  const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
  return { requests: latencies.length, failures, rps: latencies.length / elapsed, p50: at(0.5), p99: at(0.99) };
}

const median = (values) => {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

async function main() {
  const stack = await startStack({ merchants: ['Bench'], processor: { LATENCY_MS: LATENCY } });
  const off = await startApi({
    databaseUrl: stack.cluster.url(database.DATABASE, database.APP_ROLE_OFF),
    processorUrl: stack.processor.url,
  });
  stack.closers.push(() => off.stop());
  try {
    const { apiKey } = stack.merchants[0];
    const cases = {
      enforce: { port: stack.api.port, prefix: 'enf' },
      off: { port: off.port, prefix: 'off' },
    };
    const results = [];
    let run = 0;
    for (const clients of CLIENT_COUNTS) {
      const measure = async (name, keyFor) => {
        const result = await round({ port: cases[name].port, apiKey, keyFor, clients });
        if (result.failures) throw new Error(`${name}: ${result.failures} requests failed`);
        return result;
      };
      console.log(`bench-api: ${clients} clients, ${ROUNDS} rounds of ${SECONDS} s per case, processor latency ${LATENCY} ms`);
      // A warm-up round of each, not counted: connections, plans and caches.
      for (const name of ['enforce', 'off']) {
        run += 1;
        const r = run;
        await measure(name, (c, i) => `warm-${name}-${r}-${c}-${i}`);
      }
      const rounds = [];
      for (let n = 1; n <= ROUNDS; n += 1) {
        const order = n % 2 ? ['enforce', 'off'] : ['off', 'enforce'];
        const entry = { round: n };
        for (const name of order) {
          run += 1;
          const r = run;
          entry[name] = await measure(name, (c, i) => `${cases[name].prefix}-${r}-${c}-${i}`);
          entry[name].run = r;
        }
        // Replays: the keys completed by this round's enforce run, sent again.
        const perClient = Math.max(1, Math.floor(entry.enforce.requests / clients));
        entry.replay = await measure('enforce', (c, i) => `enf-${entry.enforce.run}-${c}-${i % perClient}`);
        rounds.push(entry);
        console.log(`  round ${n}: enforce ${entry.enforce.rps.toFixed(0)} req/s, off ${entry.off.rps.toFixed(0)} req/s, `
          + `replay ${entry.replay.rps.toFixed(0)} req/s`);
      }
      const summary = {};
      for (const name of ['enforce', 'off', 'replay']) {
        summary[name] = {
          rps: median(rounds.map((r) => r[name].rps)),
          p50: median(rounds.map((r) => r[name].p50)),
          p99: median(rounds.map((r) => r[name].p99)),
          ratio_rps: median(rounds.map((r) => r[name].rps / r.off.rps)),
          ratio_rps_min: Math.min(...rounds.map((r) => r[name].rps / r.off.rps)),
          ratio_rps_max: Math.max(...rounds.map((r) => r[name].rps / r.off.rps)),
          ratio_p50: median(rounds.map((r) => r[name].p50 / r.off.p50)),
          ratio_p99: median(rounds.map((r) => r[name].p99 / r.off.p99)),
        };
      }
      results.push({ clients, rounds, summary });
    }
    const [{ n: charges }] = (await stack.admin.query('SELECT count(*)::int AS n FROM charges')).rows;
    const [{ n: keys }] = (await stack.admin.query('SELECT count(*)::int AS n FROM idempotency.keys')).rows;
    const version = (await stack.admin.query('SHOW server_version')).rows[0].server_version;
    write(results, { charges, keys, version });
  } finally {
    await stack.close();
  }
}

function write(results, facts) {
  fs.mkdirSync(RESULTS, { recursive: true });
  const cpu = os.cpus()[0].model;
  const lines = [
    '# make bench-api',
    '',
    `${new Date().toISOString()}: ${os.cpus().length} CPUs (${cpu}), Node.js ${process.versions.node}, `
      + `PostgreSQL ${facts.version}, ${ROUNDS} interleaved rounds of ${SECONDS} s per case, `
      + `processor latency ${LATENCY} ms. Each request: POST /v1/charges with a new Idempotency-Key `
      + '(authorize and capture at the processor) over keep-alive connections; replay: a completed '
      + 'key sent again. Medians of the rounds; ratios are medians of the per-round ratios to off.',
    '',
    '| clients | case | requests/s | p50 ms | p99 ms | requests/s vs off (rounds\' range) | p50 vs off | p99 vs off |',
    '|---:|---|---:|---:|---:|---:|---:|---:|',
    ...results.flatMap(({ clients, summary }) => ['off', 'enforce', 'replay'].map((name) => {
      const s = summary[name];
      return `| ${clients} | ${name} | ${s.rps.toFixed(0)} | ${s.p50.toFixed(2)} | ${s.p99.toFixed(2)} | `
        + `${s.ratio_rps.toFixed(2)} (${s.ratio_rps_min.toFixed(2)}-${s.ratio_rps_max.toFixed(2)}) | `
        + `${s.ratio_p50.toFixed(2)} | ${s.ratio_p99.toFixed(2)} |`;
    })),
    '',
    `Charges written: ${facts.charges}; keys stored: ${facts.keys} (the off rounds store none). `
      + `Load average at the end: ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} (the machine is shared).`,
    '',
  ];
  fs.writeFileSync(path.join(RESULTS, 'results.md'), lines.join('\n'));
  const csv = ['clients,round,case,requests,rps,p50_ms,p99_ms',
    ...results.flatMap(({ clients, rounds }) => rounds.flatMap((r) => ['enforce', 'off', 'replay'].map((name) =>
      [clients, r.round, name, r[name].requests, r[name].rps.toFixed(1), r[name].p50.toFixed(3), r[name].p99.toFixed(3)].join(','))))];
  fs.writeFileSync(path.join(RESULTS, 'rounds.csv'), `${csv.join('\n')}\n`);
  console.log(`\n${lines.join('\n')}`);
  console.log(`results in ${RESULTS}/ (results.md, rounds.csv)`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

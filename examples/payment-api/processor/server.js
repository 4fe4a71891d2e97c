'use strict';
// A simulated card processor, run as a process of its own so that it outlives the
// API's crashes, as a real one would.  Settings (environment):
//   PORT             listening port on 127.0.0.1 (0: any; the port is printed)
//   LATENCY_MS       "MIN-MAX" or "N": the time each call takes (default 0)
//   FAILURE_RATE     share of calls answered 502 or 504 (default 0)
//   ACTED_RATE       share of those failures that happen after the operation was done,
//                    so that the reply is lost but the money moved (default 0.5)
//   KEY_WINDOW_HOURS how long a processor key replays (default 720: 30 days)
// Control, for tests: POST /control/faults {"faults": [{"status": 502, "acted": true},
// {"delayMs": 800}]} makes the next calls fail or wait so, in order (a fault may have
// both); POST /control/settings changes the rates at run time; GET /ledger returns the books.

const http = require('node:http');
const { Ledger } = require('./ledger');

function range(text) {
  const [min, max = min] = String(text || '0').split('-').map(Number);
  if (!(min >= 0 && max >= min)) throw new Error(`LATENCY_MS must be N or MIN-MAX, not ${text}`);
  return { min, max };
}

function rate(name, text, fallback) {
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!(value >= 0 && value <= 1)) throw new Error(`${name} must be from 0 to 1, not ${text}`);
  return value;
}

const settings = {
  latency: range(process.env.LATENCY_MS),
  failureRate: rate('FAILURE_RATE', process.env.FAILURE_RATE, 0),
  actedRate: rate('ACTED_RATE', process.env.ACTED_RATE, 0.5),
};
const ledger = new Ledger({ keyWindowMs: Number(process.env.KEY_WINDOW_HOURS || 720) * 3600e3 });
const scripted = [];
const counts = { calls: 0, failed_before: 0, failed_after: 0 };

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

function nextFault() {
  if (scripted.length) return scripted.shift();
  if (Math.random() >= settings.failureRate) return null;
  return { status: Math.random() < 0.5 ? 502 : 504, acted: Math.random() < settings.actedRate };
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {};
}

function reply(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
}

// One operation: latency, then maybe a failure before acting; the operation itself,
// once per key; then maybe a failure after acting (the reply is lost, the money moved).
async function operate(req, res, request, act) {
  counts.calls += 1;
  const { min, max } = settings.latency;
  if (max > 0) await sleep(min + Math.random() * (max - min));
  const fault = nextFault();
  if (fault && fault.delayMs) await sleep(fault.delayMs);
  if (fault && fault.status && !fault.acted) {
    counts.failed_before += 1;
    return reply(res, fault.status, { message: 'processor unavailable' });
  }
  const answer = await ledger.once(req.headers['idempotency-key'], request, act);
  if (fault && fault.status) {
    counts.failed_after += 1;
    return reply(res, fault.status, { message: 'processor unavailable' });
  }
  return reply(res, answer.status, answer.body);
}

async function route(req, res) {
  const url = new URL(req.url, 'http://processor');
  const body = req.method === 'POST' ? await readJson(req) : null;
  const capture = url.pathname.match(/^\/v1\/authorizations\/([^/]+)\/capture$/);
  if (req.method === 'POST' && url.pathname === '/v1/authorizations') {
    return operate(req, res, { op: 'authorize', ...body }, () => ledger.authorize(body));
  }
  if (req.method === 'POST' && capture) {
    const authorization = decodeURIComponent(capture[1]);
    return operate(req, res, { op: 'capture', authorization, ...body }, () => ledger.capture(authorization, body));
  }
  if (req.method === 'POST' && url.pathname === '/v1/refunds') {
    return operate(req, res, { op: 'refund', ...body }, () => ledger.refund(body));
  }
  if (req.method === 'GET' && url.pathname === '/ledger') return reply(res, 200, { ...ledger.snapshot(), counts });
  if (req.method === 'POST' && url.pathname === '/control/faults') {
    scripted.push(...body.faults);
    return reply(res, 200, { queued: scripted.length });
  }
  if (req.method === 'POST' && url.pathname === '/control/settings') {
    if (body.latencyMs !== undefined) settings.latency = range(body.latencyMs);
    if (body.failureRate !== undefined) settings.failureRate = rate('failureRate', body.failureRate, 0);
    if (body.actedRate !== undefined) settings.actedRate = rate('actedRate', body.actedRate, 0.5);
    return reply(res, 200, settings);
  }
  return reply(res, 404, { message: 'not found' });
}

const server = http.createServer((req, res) => {
  route(req, res).catch((err) => reply(res, 400, { message: err.message }));
});
server.keepAliveTimeout = 60000;
server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  process.stdout.write(`processor listening on ${server.address().port}\n`);
});
process.once('SIGTERM', () => server.close());

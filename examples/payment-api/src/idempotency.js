'use strict';
// The Idempotency-Key header and the extension's durable claim.
//
// Every write of this API calls the card processor, which cannot happen inside a
// database transaction, so every keyed write is a durable claim (README: "Durable
// claims"): claim with a lease and record the request's own rows in one transaction,
// commit, call the processor, then checkpoint or complete in later transactions with
// the lease token.  A request without the header runs unclaimed, as with Stripe.

const crypto = require('node:crypto');
const { idempotencyError } = require('./errors');

const MAX_KEY_BYTES = 255;
const utf8 = new TextDecoder('utf-8', { fatal: true });

// The header's value, or null when the request has none.  Node hands header values
// over as latin1, one character per byte, so the bytes are recovered and must be UTF-8:
// the limit of 1-255 is in bytes, as the extension counts them.
function requestKey(req) {
  const occurrences = req.rawHeaders.filter((_, i) => i % 2 === 0 && /^idempotency-key$/i.test(req.rawHeaders[i]));
  if (occurrences.length === 0) return null;
  if (occurrences.length > 1) {
    throw idempotencyError(400, 'idempotency_key_invalid', 'Send one Idempotency-Key header, not several.');
  }
  const bytes = Buffer.from(req.get('idempotency-key'), 'latin1');
  if (bytes.length === 0 || bytes.length > MAX_KEY_BYTES) {
    throw idempotencyError(400, 'idempotency_key_invalid',
      `Invalid Idempotency-Key: it must be 1 to ${MAX_KEY_BYTES} bytes long, not ${bytes.length}.`);
  }
  try {
    return utf8.decode(bytes);
  } catch {
    throw idempotencyError(400, 'idempotency_key_invalid', 'Invalid Idempotency-Key: it must be UTF-8.');
  }
}

// The claim and, in the same statement, the processor's keys for the purposes this
// request will call it for: idempotency.downstream_key() derives each from the scope,
// the key and the fingerprint, so every retry, resume or second process sends the same.
const CLAIM_SQL = `
SELECT c.outcome, c.response_status, c.response_headers, c.response_body,
       c.recovery_point, c.lease_token,
       (SELECT json_object_agg(p, idempotency.downstream_key($1, $2, f.fp, p))
          FROM unnest($6::text[]) AS p) AS processor_keys
  FROM (SELECT idempotency.fingerprint($3, $4, $5::jsonb) AS fp) AS f,
       LATERAL idempotency.claim($1, $2, f.fp, lease => $7::interval) AS c`;

// A request's claim of its key.  outcome: 'new', 'replay' or 'resume'.
class Claim {
  constructor(scope, key, row, metrics) {
    this.metrics = metrics;
    this.scope = scope;
    this.key = key;
    this.outcome = row.outcome;
    this.recoveryPoint = row.recovery_point;
    this.token = row.lease_token;
    this.processorKeys = row.processor_keys || {};
    this.stored = row.outcome === 'replay'
      ? { status: row.response_status, headers: row.response_headers || {}, body: row.response_body }
      : null;
  }

  // fingerprint: the method, the route's path and the parameters as the endpoint
  // interprets them (claimFor), so that the same request spelt another way (parameters
  // in another order, 01000 for 1000, USD for usd, /V1/Charges/ for /v1/charges) is the
  // same request.
  static async open(db, { scope, key, method, path, params, leaseSeconds, purposes, metrics }) {
    const { rows } = await db.query(CLAIM_SQL,
      [scope, key, method, path, JSON.stringify(params), purposes, `${leaseSeconds} seconds`]);
    metrics.idempotency.inc({ result: rows[0].outcome });
    return new Claim(scope, key, rows[0], metrics);
  }

  processorKey(purpose) {
    const processorKey = this.processorKeys[purpose];
    if (!processorKey) throw new Error(`no processor key was derived for ${purpose}`);
    return processorKey;
  }

  // Records progress and renews the lease, in the transaction that records the step.
  async checkpoint(db, point) {
    await db.query('SELECT idempotency.checkpoint($1, $2, $3, $4)', [this.scope, this.key, point, this.token]);
    this.recoveryPoint = point;
  }

  // Stores the response (a 5xx is not stored: after a checkpoint the claim stays for a
  // retry to resume, before one the key is free).  Returns what complete() returned:
  // 'stored', 'released' or, in off and shadow modes, 'skipped'.
  async complete(db, response) {
    const { rows } = await db.query('SELECT idempotency.complete($1, $2, $3, $4, $5, $6) AS result',
      [this.scope, this.key, response.status, response.body, response.headers, this.token]);
    this.metrics.idempotency.inc({ result: `complete_${rows[0].result}` });
    return rows[0].result;
  }
}

// A request sent without a key: nothing is claimed or stored, and the processor gets a
// key of its own for this attempt only.  As with Stripe, such a request is not safe to retry.
class Unclaimed {
  constructor() {
    this.outcome = 'new';
    this.recoveryPoint = null;
    this.key = null;
    this.stored = null;
  }

  processorKey() { return `unkeyed_${crypto.randomUUID()}`; }

  async checkpoint(db, point) { this.recoveryPoint = point; }

  async complete() { return 'unkeyed'; }
}

// req.idempotencyKey was read by requestKey() before the transaction began;
// req.routePath is the matched route's path (app.js); params are the request's
// parameters as the endpoint validated and interpreted them, which is what the
// fingerprint covers.
function claimFor(db, req, { leaseSeconds, purposes, params }) {
  if (req.idempotencyKey === null) return new Unclaimed();
  return Claim.open(db, {
    scope: req.merchant,
    key: req.idempotencyKey,
    method: req.method,
    path: req.routePath,
    params,
    leaseSeconds,
    purposes,
    metrics: req.app.locals.metrics,
  });
}

module.exports = { MAX_KEY_BYTES, requestKey, claimFor, Claim, Unclaimed };

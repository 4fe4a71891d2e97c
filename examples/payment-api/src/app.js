'use strict';
// The HTTP application: a Stripe-compatible subset over the idempotency extension.
// Every route handler returns { reply, replayed, retry } or throws; the error handler
// turns whatever was thrown into a Stripe-shaped error, so no request goes unanswered.

const express = require('express');
const { authenticate } = require('./auth');
const { chargeRoutes } = require('./charges');
const { refundRoutes } = require('./refunds');
const { requestKey } = require('./idempotency');
const { ApiError, MissingKeyError, POLICY_PATH, invalidRequest, fromDatabase } = require('./errors');
const { policyRoute } = require('./policy');
const { errorReply, send } = require('./replies');
const { randomId } = require('./ids');
const { storable } = require('./params');

// Body-parser's failures (a body too large, too many parameters, too deep) are the
// caller's: a 400 in Stripe's shape, as any other bad input.
function bodyError(err) {
  const message = err.type === 'entity.too.large' ? 'The request body is too large.'
    : err.type === 'parameters.too.many' ? 'The request has too many parameters.'
      : 'The request body could not be parsed as form parameters.';
  return invalidRequest('invalid_request_body', message);
}

const WAIT_STEP_MS = 200;
const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

// Whether the request has a body that no parser read: resolves at its first byte, or
// at its end.  A request without Transfer-Encoding or Content-Length has no body.
function unreadBody(req) {
  if (req.get('transfer-encoding') === undefined && Number(req.get('content-length') || 0) === 0) {
    return Promise.resolve(false);
  }
  return new Promise((resolve, reject) => {
    const done = (value) => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', reject);
      resolve(value);
    };
    const onData = (chunk) => { if (chunk.length > 0) done(true); };
    const onEnd = () => done(false);
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', reject);
  });
}

function createApp({ pool, config, processor, metrics, log }) {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.locals.metrics = metrics;
  const context = { pool, config, processor, newId: randomId };
  const charges = chargeRoutes(context);
  const refunds = refundRoutes(context);
  const authenticateRequest = authenticate(pool);

  app.use((req, res, next) => {
    req.id = randomId('req');
    req.idempotencyKey = null;
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const route = res.locals.route || 'unmatched';
      metrics.requests.inc({ method: req.method, route, status: res.statusCode });
      metrics.duration.observe({ route }, Number(process.hrtime.bigint() - started) / 1e9);
    });
    next();
  });
  // Stripe's encoding: form parameters, metadata[key]=value as nested objects (qs).
  app.use(express.urlencoded({ extended: true, limit: '16kb', parameterLimit: 200, depth: 2 }));
  // Authentication first, so that nothing else about a request is told to a caller
  // without a valid key.
  app.use('/v1', async (req, res, next) => {
    const merchant = await authenticateRequest(req);
    req.merchant = merchant.id;
    req.keyRequired = merchant.requireKey ?? config.requireIdempotencyKey;
    if (req.body === undefined) {
      // The form parser read no body: another content type, or none.  Any byte of a
      // body it did not read (chunked ones have no Content-Length) is refused, never
      // taken as "no parameters".
      if (await unreadBody(req)) {
        throw invalidRequest('invalid_content_type', 'Send parameters as application/x-www-form-urlencoded.');
      }
      req.body = {};
    }
    storable(req.body);
    // Stripe ignores the header on GET: reads are safe to repeat.  Every POST is a
    // write, so every POST needs the header where the merchant's policy requires it.
    if (req.method === 'POST') {
      req.idempotencyKey = requestKey(req);
      if (req.idempotencyKey === null && req.keyRequired) throw new MissingKeyError();
    }
    next();
  });

  // name is the method and the route's path; req.routePath is that path with this
  // request's parameters, whatever case or trailing slash the request spelt it with
  // (Express routes both to the same handler), for the claim's fingerprint.
  const route = (name, handler) => async (req, res) => {
    res.locals.route = name;
    req.routePath = name.split(' ')[1].replace(/:(\w+)/g, (_, param) => req.params[param]);
    const { reply, replayed, retry } = await waitingForKey(req, handler);
    send(res, reply, { replayed, key: req.idempotencyKey, retry });
  };
  // A keyed request whose key another request holds (IK409: in flight, or a crashed
  // worker's lease not yet lapsed) is run again every WAIT_STEP_MS, for up to
  // IN_USE_WAIT_SECONDS, while its client is connected: then it replays the holder's
  // reply or resumes its claim, where a 409 would have spent the client's retries.
  // Each attempt's transaction rolled back at the claim, so running it again is safe.
  const waitingForKey = async (req, handler) => {
    const deadline = Date.now() + config.inUseWaitSeconds * 1000;
    for (;;) {
      try {
        return await handler(req);
      } catch (err) {
        if (err.code !== 'IK409' || Date.now() + WAIT_STEP_MS > deadline || req.socket.destroyed) throw err;
        await sleep(WAIT_STEP_MS);
      }
    }
  };
  app.post('/v1/charges', route('POST /v1/charges', charges.create));
  app.get('/v1/charges/:id', route('GET /v1/charges/:id', charges.retrieve));
  app.post('/v1/charges/:id/capture', route('POST /v1/charges/:id/capture', charges.capture));
  app.post('/v1/refunds', route('POST /v1/refunds', refunds.create));
  app.get('/v1/refunds/:id', route('GET /v1/refunds/:id', refunds.retrieve));
  app.get(POLICY_PATH, route(`GET ${POLICY_PATH}`, policyRoute({ pool, config })));

  app.use((req) => {
    throw new ApiError(404, 'invalid_request_error', 'resource_missing',
      `Unrecognized request URL (${req.method}: ${req.path}).`);
  });

  // Four parameters: that is how Express tells an error handler from a middleware.
  app.use((err, req, res, next) => {
    let apiErr = err;
    if (!(err instanceof ApiError)) {
      apiErr = err.type && err.status < 500 ? bodyError(err) : fromDatabase(err);
      if (apiErr.status >= 500) log('request failed', { request: req.id, route: res.locals.route, error: err.message, code: err.code });
    }
    if (apiErr.type === 'idempotency_error') metrics.idempotency.inc({ result: apiErr.code });
    // A 5xx here was not stored: the transaction that would have stored it did not commit.
    // Retrying it is safe only with a key.
    send(res, errorReply(req, apiErr), { key: req.idempotencyKey, retry: req.idempotencyKey !== null || req.method === 'GET' });
  });
  return app;
}

module.exports = { createApp };

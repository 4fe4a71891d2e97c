'use strict';
// A reply is { status, headers, body }: what a request answers, and what the extension
// stores for its key and replays, so a replay is the same status, headers and body,
// with the original Request-Id.  Headers that describe this delivery rather than the
// answer (Idempotent-Replayed, and Stripe-Should-Retry on a 5xx, whose advice depends
// on whether it was stored) are added when it is sent.

function reply(req, status, body, headers = {}) {
  return { status, body, headers: { 'Content-Type': 'application/json', 'Request-Id': req.id, ...headers } };
}

// A 4xx answer is final for these parameters; it says so, also when replayed.
function errorReply(req, err) {
  const headers = err.status < 500 ? { 'Stripe-Should-Retry': String(err.shouldRetry()) } : {};
  return reply(req, err.status, err.body(), { ...headers, ...err.headers() });
}

// extra: { replayed, key, retry }: retry is the Stripe-Should-Retry advice of a 5xx.
function send(res, { status, headers, body }, { replayed = false, key = null, retry } = {}) {
  res.status(status);
  for (const [name, value] of Object.entries(headers || {})) res.set(name, value);
  if (key !== null) res.set('Idempotency-Key', key);
  if (replayed) res.set('Idempotent-Replayed', 'true');
  if (status >= 500) res.set('Stripe-Should-Retry', String(replayed ? false : retry !== false));
  res.send(JSON.stringify(body));
}

module.exports = { reply, errorReply, send };

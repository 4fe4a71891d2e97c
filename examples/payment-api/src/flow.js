'use strict';
// The steps every keyed write shares, between the claim and the reply.
// A handler returns { reply, replayed, retry }; app.js sends it.

const { apiError } = require('./errors');
const { errorReply } = require('./replies');

// A recovery point names the step reached and the business row the claim made, as
// "step:id": a resumed claim finds its own row by that id, never by merchant and key,
// which another request may have used before (a key is new again after retention).
function recoveryPoint(step, id) {
  return `${step}:${id}`;
}

function parseRecoveryPoint(point) {
  const colon = point === null ? -1 : point.indexOf(':');
  if (colon === -1) throw new Error(`the recovery point ${JSON.stringify(point)} names no row`);
  return { step: point.slice(0, colon), id: point.slice(colon + 1) };
}

function replay(claim) {
  return { reply: claim.stored, replayed: true };
}

// Ends the request in the transaction that records its result: the reply is stored for
// the key, except a 5xx, which complete() does not store.  Retrying a 5xx is safe when
// the request has a key (the retry resumes, or runs again with the same processor key);
// without one it could be charged twice, so the client is told not to.
async function finish(db, claim, reply) {
  const result = await claim.complete(db, reply);
  return { reply, retry: result !== 'stored' && result !== 'unkeyed' };
}

// The processor gave no answer (5xx, timeout, connection lost): it may have acted.
function processorFailure(outcome) {
  if (outcome.result === 'rejected') {
    return apiError(500, 'processor_rejected', 'The card processor refused the request.');
  }
  if (outcome.reason === 'timeout' || outcome.reason === 'status 504') {
    return apiError(504, 'processor_timeout',
      'The card processor did not answer in time. Retry with the same Idempotency-Key: it will not be charged twice.');
  }
  return apiError(502, 'processor_unavailable',
    'The card processor failed. Retry with the same Idempotency-Key: it will not be charged twice.');
}

module.exports = { recoveryPoint, parseRecoveryPoint, replay, finish, processorFailure };

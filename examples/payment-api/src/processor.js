'use strict';
// The client of the card processor.  Every call carries the processor's own
// Idempotency-Key, derived from ours (idempotency.downstream_key), so that sending it
// again after a crash, a timeout or a 502 can never charge twice: the processor answers
// a repeated key with its first answer.  A 5xx, a timeout or a lost connection is an
// unknown outcome (the processor may have acted); only a 2xx or a decline is an answer.

async function call(config, path, processorKey, payload) {
  let response;
  try {
    response = await fetch(new URL(path, config.processorUrl), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Idempotency-Key': processorKey },
      body: JSON.stringify(payload),
      signal: AbortSignal.timeout(config.processorTimeoutMs),
    });
  } catch (err) {
    return { result: 'unknown', reason: err.name === 'TimeoutError' ? 'timeout' : 'connection' };
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    return { result: 'unknown', reason: `status ${response.status} with a body that is not JSON` };
  }
  if (response.ok) return { result: 'ok', data };
  if (response.status === 402) return { result: 'declined', data };
  if (response.status >= 500) return { result: 'unknown', reason: `status ${response.status}` };
  return { result: 'rejected', reason: `status ${response.status}: ${data && data.message}` };
}

function createProcessor(config, metrics) {
  const counted = (operation) => async (...args) => {
    const outcome = await call(config, ...args);
    metrics.processor.inc({ operation, result: outcome.result });
    return outcome;
  };
  const authorize = counted('authorize');
  const capture = counted('capture');
  const refund = counted('refund');
  return {
    authorize: (key, { amount, currency, source, customer, merchant, description }) =>
      authorize('/v1/authorizations', key, { amount, currency, payment_method: source || customer, merchant, description }),
    capture: (key, authorization, amount) =>
      capture(`/v1/authorizations/${encodeURIComponent(authorization)}/capture`, key, { amount }),
    refund: (key, authorization, amount) =>
      refund('/v1/refunds', key, { authorization, amount }),
  };
}

module.exports = { createProcessor };

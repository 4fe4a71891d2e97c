'use strict';
// The simulated processor's books: authorizations, captures and refunds, and its own
// idempotency keys.  Like a real processor it answers a repeated key with its first
// answer for a window longer than the API's (so a retry the API lets through is never
// charged twice here), and refuses a key reused for another request.

const crypto = require('node:crypto');

const DECLINES = {
  tok_chargeDeclined: ['generic_decline', 'Your card was declined.'],
  tok_chargeDeclinedInsufficientFunds: ['insufficient_funds', 'Your card has insufficient funds.'],
};

class ProcessorError extends Error {
  constructor(status, body) {
    super(body.message);
    this.status = status;
    this.body = body;
  }
}

const id = (prefix) => `${prefix}_${crypto.randomBytes(12).toString('hex')}`;

class Ledger {
  constructor({ keyWindowMs }) {
    this.keyWindowMs = keyWindowMs;
    this.keys = new Map(); // processor key -> { request, answer: Promise<{status, body}>, at }
    this.authorizations = new Map();
    this.refunds = [];
  }

  // Runs act() once per key: a repeated key gets the first answer (waiting for it if the
  // first is still running); the same key with another request is refused.
  once(key, request, act) {
    if (typeof key !== 'string' || key.length === 0 || key.length > 255) {
      return Promise.resolve({ status: 400, body: { message: 'Idempotency-Key is required (1-255 characters).' } });
    }
    const fingerprint = JSON.stringify(request);
    const known = this.keys.get(key);
    if (known && Date.now() - known.at < this.keyWindowMs) {
      if (known.fingerprint !== fingerprint) {
        return Promise.resolve({ status: 409, body: { message: `Idempotency-Key ${key} was used for another request.` } });
      }
      return known.answer;
    }
    const answer = Promise.resolve().then(act).then(
      (body) => ({ status: body.status === 'declined' ? 402 : 200, body }),
      (err) => {
        if (!(err instanceof ProcessorError)) throw err;
        return { status: err.status, body: err.body };
      });
    this.keys.set(key, { fingerprint, answer, at: Date.now() });
    return answer;
  }

  authorize({ amount, currency, payment_method: paymentMethod, merchant, description }) {
    if (!Number.isInteger(amount) || amount <= 0 || typeof currency !== 'string' || typeof paymentMethod !== 'string') {
      throw new ProcessorError(400, { message: 'amount, currency and payment_method are required.' });
    }
    const auth = { id: id('auth'), amount, currency, merchant, description, payment_method: paymentMethod,
      status: 'authorized', captured: false, refunded: 0 };
    const decline = DECLINES[paymentMethod];
    if (decline) Object.assign(auth, { status: 'declined', decline_code: decline[0], message: decline[1] });
    this.authorizations.set(auth.id, auth);
    return { ...auth };
  }

  // Capturing an authorization twice returns the first capture: the money moves once.
  capture(authorization, { amount }) {
    const auth = this.authorizations.get(authorization);
    if (!auth || auth.status !== 'authorized') throw new ProcessorError(404, { message: `No authorization ${authorization}.` });
    if (amount !== auth.amount) throw new ProcessorError(400, { message: 'Only the full amount can be captured.' });
    if (!auth.captured) Object.assign(auth, { captured: true, capture_id: id('cap') });
    return { id: auth.capture_id, authorization: auth.id, amount: auth.amount, status: 'captured' };
  }

  refund({ authorization, amount }) {
    const auth = this.authorizations.get(authorization);
    if (!auth || !auth.captured) throw new ProcessorError(400, { message: `Authorization ${authorization} is not captured.` });
    if (!Number.isInteger(amount) || amount <= 0 || auth.refunded + amount > auth.amount) {
      throw new ProcessorError(400, { message: `Refund of ${amount} exceeds what is left of ${authorization}.` });
    }
    auth.refunded += amount;
    const refund = { id: id('pref'), authorization, amount, status: 'succeeded' };
    this.refunds.push(refund);
    return refund;
  }

  snapshot() {
    return { authorizations: [...this.authorizations.values()], refunds: this.refunds };
  }
}

module.exports = { Ledger };

'use strict';
// POST /v1/charges, GET /v1/charges/:id, POST /v1/charges/:id/capture.
//
// Creating a charge is a durable claim in three transactions (README: "Durable claims"):
//   1. claim the key with a lease, insert the charge as pending and record
//      checkpoint('pending:<charge id>'); commit;
//   2. authorize at the processor; record it with checkpoint('authorized:<charge id>'); commit;
//   3. capture at the processor; store the reply with complete(); commit.
// A worker that dies anywhere leaves the claim leased; once the lease lapses the client's
// retry gets outcome 'resume' with the last recovery point, finds the charge by the id
// in it, and carries on from there, sending the processor the same keys, so nothing is
// authorized or captured twice.

const { transaction } = require('./db');
const { claimFor } = require('./idempotency');
const { ApiError, notFound, invalidRequest } = require('./errors');
const { reply, errorReply } = require('./replies');
const validate = require('./params');
const objects = require('./objects');
const { recoveryPoint, parseRecoveryPoint, replay, finish, processorFailure } = require('./flow');

const PENDING = 'pending';
const AUTHORIZED = 'authorized';

async function chargeById(db, merchant, id, { lock = false } = {}) {
  const { rows } = await db.query(
    `SELECT ${objects.CHARGE_COLUMNS} FROM charges WHERE id = $1 AND merchant_id = $2${lock ? ' FOR UPDATE' : ''}`,
    [id, merchant]);
  return rows[0] || null;
}

// The charge a resumed claim inserted in its first transaction, named by its recovery
// point, and the step it reached.
async function chargeOfClaim(db, merchant, claim) {
  const { step, id } = parseRecoveryPoint(claim.recoveryPoint);
  const charge = await chargeById(db, merchant, id);
  if (!charge) throw new Error(`the recovery point ${claim.recoveryPoint} names no charge of ${merchant}`);
  return { step, charge };
}

async function insertPending(db, merchant, key, p, id) {
  const { rows } = await db.query(
    `INSERT INTO charges (id, merchant_id, idempotency_key, amount, currency, source, customer,
                          description, metadata, capture, state)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending')
     RETURNING ${objects.CHARGE_COLUMNS}`,
    [id, merchant, key, p.amount, p.currency, p.source, p.customer, p.description, p.metadata, p.capture]);
  return rows[0];
}

async function updateCharge(db, id, assignments, values) {
  const { rows } = await db.query(
    `UPDATE charges SET ${assignments} WHERE id = $1 RETURNING ${objects.CHARGE_COLUMNS}`, [id, ...values]);
  return rows[0];
}

function chargeRoutes({ pool, config, processor, newId }) {
  const lease = { leaseSeconds: config.leaseSeconds };

  // Step 2: authorize.  A decline is an answer (402, stored); no answer is an unknown
  // outcome: the 5xx is not stored and, after checkpoint('pending:...'), the claim stays
  // with its pending charge, so the retry resumes here and sends the processor the same
  // authorization key, which replays the authorization if there was one.  Nothing is
  // written in that transaction, so no commit keeps data while its key is freed.  A
  // request without a key has no retry: its pending charge is deleted.
  async function authorize(req, claim, charge) {
    const outcome = await processor.authorize(claim.processorKey('authorize'), { ...charge, merchant: req.merchant });
    if (outcome.result === 'declined') {
      return transaction(pool, async (db) => {
        const failed = await updateCharge(db, charge.id,
          "state = 'failed', failure_code = $2, failure_message = $3",
          [outcome.data.decline_code, outcome.data.message]);
        const err = new ApiError(402, 'card_error', 'card_declined', outcome.data.message,
          { decline_code: outcome.data.decline_code, charge: failed.id });
        return { done: await finish(db, claim, errorReply(req, err)) };
      });
    }
    if (outcome.result !== 'ok') {
      return transaction(pool, async (db) => {
        if (claim.key === null) await db.query('DELETE FROM charges WHERE id = $1', [charge.id]);
        return { done: await finish(db, claim, errorReply(req, processorFailure(outcome))) };
      });
    }
    return transaction(pool, async (db) => {
      const authorized = await updateCharge(db, charge.id,
        "state = 'authorized', processor_authorization = $2", [outcome.data.id]);
      if (!authorized.capture) return { done: await finish(db, claim, reply(req, 200, objects.charge(authorized))) };
      await claim.checkpoint(db, recoveryPoint(AUTHORIZED, authorized.id));
      return { charge: authorized };
    });
  }

  // Step 3, and the capture endpoint: capture, then store the captured charge.  Without
  // an answer the 5xx is not stored; after checkpoint('authorized') the claim stays, so
  // the retry resumes here with the same capture key.
  async function capture(req, claim, charge, processorKey) {
    const outcome = await processor.capture(processorKey, charge.processor_authorization, charge.amount);
    return transaction(pool, async (db) => {
      if (outcome.result !== 'ok') return finish(db, claim, errorReply(req, processorFailure(outcome)));
      const captured = await updateCharge(db, charge.id,
        "state = 'captured', amount_captured = amount", []);
      return finish(db, claim, reply(req, 200, objects.charge(captured)));
    });
  }

  // The parameters are validated before the claim: a 400 claims nothing, so the key
  // stays free for the corrected request, and the claim's fingerprint covers the
  // parameters as interpreted here.
  async function create(req) {
    const params = validate.createCharge(req.body);
    const first = await transaction(pool, async (db) => {
      const claim = await claimFor(db, req, { ...lease, params, purposes: ['authorize', 'capture'] });
      if (claim.outcome === 'replay') return { done: replay(claim) };
      if (claim.outcome === 'resume') return { claim, ...(await chargeOfClaim(db, req.merchant, claim)) };
      const pending = await insertPending(db, req.merchant, claim.key, params, newId('ch'));
      await claim.checkpoint(db, recoveryPoint(PENDING, pending.id));
      return { claim, charge: pending, step: PENDING };
    });
    if (first.done) return first.done;
    const { claim, step } = first;
    let { charge } = first;
    if (step === PENDING) {
      const authorized = await authorize(req, claim, charge);
      if (authorized.done) return authorized.done;
      charge = authorized.charge;
    }
    return capture(req, claim, charge, claim.processorKey('capture'));
  }

  async function retrieve(req) {
    const { id } = req.params;
    const row = validate.isId('charge', id) ? await chargeById(pool, req.merchant, id) : null;
    if (!row) return { reply: errorReply(req, notFound('charge', id, 'id')) };
    return { reply: reply(req, 200, objects.charge(row)) };
  }

  // A charge made with capture=false is captured here, under a claim of its own key.
  async function captureEndpoint(req) {
    const { id } = req.params;
    const params = validate.captureCharge(req.body);
    if (!validate.isId('charge', id)) throw notFound('charge', id, 'id');
    const first = await transaction(pool, async (db) => {
      const claim = await claimFor(db, req, { ...lease, params, purposes: ['capture'] });
      if (claim.outcome === 'replay') return { done: replay(claim) };
      // Locked, so that a concurrent refund or capture sees this one's state.
      const charge = await chargeById(db, req.merchant, id, { lock: true });
      let err = null;
      if (!charge) err = notFound('charge', id, 'id');
      else if (charge.state === 'captured') err = invalidRequest('charge_already_captured', `Charge ${id} has already been captured.`);
      else if (charge.state !== 'authorized') err = invalidRequest('charge_not_capturable', `Charge ${id} is ${charge.state} and cannot be captured.`);
      if (err) return { done: await finish(db, claim, errorReply(req, err)) };
      return { claim, charge };
    });
    if (first.done) return first.done;
    return capture(req, first.claim, first.charge, first.claim.processorKey('capture'));
  }

  return { create, retrieve, capture: captureEndpoint };
}

module.exports = { chargeRoutes };

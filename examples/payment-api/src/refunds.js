'use strict';
// POST /v1/refunds and GET /v1/refunds/:id.
//
// A refund is money leaving, so its amount is reserved before the processor is called:
// the first transaction claims the key, inserts the refund as pending (the refunds_sum
// trigger adds it to the charge, whose CHECK keeps the total within what was captured)
// and records checkpoint('requested:<refund id>').  If the processor gives no answer, the 5xx is not
// stored but the claim and the reservation stay, and the retry resumes and asks again
// with the same processor key: a second refund of the same money can never be started
// while the first one's outcome is unknown.  The resumed claim finds its refund by the
// id in the recovery point, not by merchant and key, which an earlier request may share.

const { transaction } = require('./db');
const { claimFor } = require('./idempotency');
const { notFound, invalidRequest } = require('./errors');
const { reply, errorReply } = require('./replies');
const validate = require('./params');
const objects = require('./objects');
const { recoveryPoint, parseRecoveryPoint, replay, finish, processorFailure } = require('./flow');

const REQUESTED = 'requested';

async function refundById(db, merchant, id) {
  const { rows } = await db.query(
    `SELECT ${objects.REFUND_COLUMNS} FROM refunds WHERE id = $1 AND merchant_id = $2`, [id, merchant]);
  return rows[0] || null;
}

async function refundOfClaim(db, merchant, claim) {
  const { id } = parseRecoveryPoint(claim.recoveryPoint);
  const { rows } = await db.query(
    `SELECT ${objects.REFUND_COLUMNS}, (SELECT processor_authorization FROM charges c WHERE c.id = refunds.charge_id)
       FROM refunds WHERE id = $1 AND merchant_id = $2`, [id, merchant]);
  if (rows.length !== 1) throw new Error(`the recovery point ${claim.recoveryPoint} names no refund of ${merchant}`);
  return rows[0];
}

// Why the charge cannot be refunded by this amount, or null.  The charge's row is
// locked by the caller, so the answer holds until the refund is inserted.
function refusal(charge, params) {
  if (!charge) return invalidRequest('resource_missing', `No such charge: '${params.charge}'`, 'charge');
  if (charge.state !== 'captured') {
    return invalidRequest('charge_not_captured', `Charge ${charge.id} has not been captured; there is nothing to refund.`, 'charge');
  }
  const remaining = charge.amount_captured - charge.amount_refunded;
  if (remaining === 0) return invalidRequest('charge_already_refunded', `Charge ${charge.id} has already been refunded.`, 'charge');
  if (params.amount !== null && params.amount > remaining) {
    return invalidRequest('amount_too_large',
      `Refund amount (${params.amount}) is greater than the unrefunded amount on charge ${charge.id} (${remaining}).`, 'amount');
  }
  return null;
}

function refundRoutes({ pool, processor, config, newId }) {
  // Validated before the claim, as a charge (charges.js).
  async function create(req) {
    const params = validate.createRefund(req.body);
    const first = await transaction(pool, async (db) => {
      const claim = await claimFor(db, req, { leaseSeconds: config.leaseSeconds, params, purposes: ['refund'] });
      if (claim.outcome === 'replay') return { done: replay(claim) };
      if (claim.outcome === 'resume') return { claim, refund: await refundOfClaim(db, req.merchant, claim) };
      const { rows } = validate.isId('charge', params.charge)
        ? await db.query(`SELECT ${objects.CHARGE_COLUMNS} FROM charges WHERE id = $1 AND merchant_id = $2 FOR UPDATE`,
          [params.charge, req.merchant])
        : { rows: [] };
      const charge = rows[0];
      const err = refusal(charge, params);
      if (err) return { done: await finish(db, claim, errorReply(req, err)) };
      const amount = params.amount ?? charge.amount_captured - charge.amount_refunded;
      const inserted = await db.query(
        `INSERT INTO refunds (id, merchant_id, charge_id, idempotency_key, amount, metadata, state)
         VALUES ($1, $2, $3, $4, $5, $6, 'pending') RETURNING ${objects.REFUND_COLUMNS}`,
        [newId('re'), req.merchant, charge.id, claim.key, amount, params.metadata]);
      await claim.checkpoint(db, recoveryPoint(REQUESTED, inserted.rows[0].id));
      return { claim, refund: { ...inserted.rows[0], processor_authorization: charge.processor_authorization } };
    });
    if (first.done) return first.done;
    const { claim, refund } = first;
    const outcome = await processor.refund(claim.processorKey('refund'), refund.processor_authorization, refund.amount);
    return transaction(pool, async (db) => {
      if (outcome.result !== 'ok') return finish(db, claim, errorReply(req, processorFailure(outcome)));
      const { rows } = await db.query(
        `UPDATE refunds SET state = 'succeeded', processor_refund = $2 WHERE id = $1 RETURNING ${objects.REFUND_COLUMNS}`,
        [refund.id, outcome.data.id]);
      return finish(db, claim, reply(req, 200, objects.refund(rows[0])));
    });
  }

  async function retrieve(req) {
    const { id } = req.params;
    const row = validate.isId('refund', id) ? await refundById(pool, req.merchant, id) : null;
    if (!row) return { reply: errorReply(req, notFound('refund', id, 'id')) };
    return { reply: reply(req, 200, objects.refund(row)) };
  }

  return { create, retrieve };
}

module.exports = { refundRoutes };

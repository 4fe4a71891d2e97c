'use strict';
// Rows of charges and refunds as Stripe's API objects.

const STATUS = { pending: 'pending', authorized: 'succeeded', captured: 'succeeded', failed: 'failed' };

const CHARGE_COLUMNS = `id, merchant_id, idempotency_key, amount, currency, source, customer,
  description, metadata, capture, state, processor_authorization, failure_code, failure_message,
  amount_captured, amount_refunded, floor(extract(epoch FROM created_at))::int8 AS created`;

const REFUND_COLUMNS = `id, merchant_id, charge_id, idempotency_key, amount, metadata, state, processor_refund,
  (SELECT currency FROM charges WHERE charges.id = refunds.charge_id) AS currency,
  floor(extract(epoch FROM created_at))::int8 AS created`;

function charge(row) {
  return {
    id: row.id,
    object: 'charge',
    amount: row.amount,
    amount_captured: row.amount_captured,
    amount_refunded: row.amount_refunded,
    captured: row.state === 'captured',
    created: row.created,
    currency: row.currency,
    customer: row.customer,
    description: row.description,
    failure_code: row.failure_code,
    failure_message: row.failure_message,
    livemode: false,
    metadata: row.metadata,
    paid: row.state === 'authorized' || row.state === 'captured',
    payment_method: row.source || row.customer,
    refunded: row.amount_captured > 0 && row.amount_refunded === row.amount_captured,
    status: STATUS[row.state],
  };
}

function refund(row) {
  return {
    id: row.id,
    object: 'refund',
    amount: row.amount,
    charge: row.charge_id,
    created: row.created,
    currency: row.currency,
    metadata: row.metadata,
    status: row.state === 'succeeded' ? 'succeeded' : 'pending',
  };
}

module.exports = { CHARGE_COLUMNS, REFUND_COLUMNS, charge, refund };

'use strict';
// The SQLSTATE-to-HTTP mapping for the errors no request can provoke on purpose
// (IK428 is a bug in the service, 53400 needs more keys in one transaction than the
// service ever claims, IK503 an operator's change to the keys table), next to those
// the other tests provoke, so that the whole table is checked in one place.

const { it } = require('node:test');
const assert = require('node:assert/strict');
const { fromDatabase, ApiError } = require('../src/errors');

const pgError = (code, message = 'x') => Object.assign(new Error(message), { code });

it('maps every SQLSTATE of the contract to its status, type and retry advice', () => {
  const table = [
    ['IK400', 400, 'idempotency_error', false],
    ['IK409', 409, 'idempotency_error', true],
    ['IK410', 410, 'idempotency_error', false],
    ['IK422', 422, 'idempotency_error', false],
    ['IK428', 500, 'api_error', true],
    ['53400', 500, 'api_error', true],
    ['IK503', 503, 'api_error', true],
    ['25006', 503, 'api_error', true],
    ['57P01', 503, 'api_error', true],
    ['08006', 503, 'api_error', true],
    ['ECONNREFUSED', 503, 'api_error', true],
    ['23514', 500, 'api_error', true],
  ];
  for (const [code, status, type, retry] of table) {
    const err = fromDatabase(pgError(code));
    assert.ok(err instanceof ApiError);
    assert.deepEqual([err.status, err.type, err.shouldRetry()], [status, type, retry], code);
  }
  assert.equal(fromDatabase(new Error('Connection terminated unexpectedly')).status, 503);
  // Only the extension's messages (the caller's own scope and key) are passed on.
  assert.equal(fromDatabase(pgError('23514', 'new row for relation "charges" violates check constraint')).message,
    'An internal error occurred.');
  assert.equal(fromDatabase(pgError('IK400', 'argument "key" must be 1 to 255 bytes')).message,
    'argument "key" must be 1 to 255 bytes');
});


'use strict';
// Validation of the form parameters, Stripe's way: every parameter is known, typed and
// bounded, and each failure is a 400 that names the parameter.  The body arrives parsed
// by qs (metadata[k]=v is an object), so every value is checked for its shape as well.

const { invalidRequest } = require('./errors');

const MIN_AMOUNT = 50;
const MAX_AMOUNT = 99999999;
const METADATA_KEYS = 50;
const METADATA_KEY_LENGTH = 40;
const METADATA_VALUE_LENGTH = 500;
const DESCRIPTION_LENGTH = 1000;

// C0 controls other than tab, newline and carriage return, and DEL: PostgreSQL text
// cannot hold NUL, and none of them belongs in a description or metadata.
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;

const ID_PATTERNS = {
  charge: /^ch_[A-Za-z0-9]{1,64}$/,
  refund: /^re_[A-Za-z0-9]{1,64}$/,
};

// Whether every name and value in the parsed body could be stored: the claim records
// the parameters as jsonb, which cannot hold NUL.  Checked before the claim, so that
// such a body is a 400 rather than a database error.
function storable(value, name = null) {
  if (typeof value === 'string') {
    if (value.includes('\u0000')) throw invalidRequest('parameter_invalid', `Invalid ${name}: it contains NUL.`, name);
    return;
  }
  if (value !== null && typeof value === 'object') {
    for (const [key, inner] of Object.entries(value)) {
      const path = name === null ? key : `${name}[${key}]`;
      if (key.includes('\u0000')) throw invalidRequest('parameter_invalid', 'A parameter name contains NUL.', null);
      storable(inner, path);
    }
  }
}

function isObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function rejectUnknown(body, allowed) {
  for (const name of Object.keys(body)) {
    if (!allowed.includes(name)) {
      throw invalidRequest('parameter_unknown', `Received unknown parameter: ${name}`, name);
    }
  }
}

function string(body, name, { required = false, maxLength = 5000, pattern } = {}) {
  const value = body[name];
  if (value === undefined || value === '') {
    if (required) throw invalidRequest('parameter_missing', `Missing required param: ${name}.`, name);
    return null;
  }
  if (typeof value !== 'string') {
    throw invalidRequest('parameter_invalid_string', `Invalid string: ${name} must be a string.`, name);
  }
  if (value.length > maxLength || CONTROL.test(value) || (pattern && !pattern.test(value))) {
    throw invalidRequest('parameter_invalid', `Invalid ${name}: ${JSON.stringify(value.slice(0, 80))}.`, name);
  }
  return value;
}

function integer(body, name, { required = false, min, max }) {
  const text = string(body, name, { required, maxLength: 20 });
  if (text === null) return null;
  if (!/^[0-9]+$/.test(text)) {
    throw invalidRequest('parameter_invalid_integer', `Invalid integer: ${text}`, name);
  }
  const value = Number(text);
  if (value < min) {
    throw invalidRequest('amount_too_small', `Amount must be at least ${min}.`, name);
  }
  if (value > max) {
    throw invalidRequest('amount_too_large', `Amount must be no more than ${max}.`, name);
  }
  return value;
}

function boolean(body, name, fallback) {
  const text = string(body, name, { maxLength: 5 });
  if (text === null) return fallback;
  if (text !== 'true' && text !== 'false') {
    throw invalidRequest('parameter_invalid_boolean', `Invalid boolean: ${text}`, name);
  }
  return text === 'true';
}

function metadata(body) {
  const value = body.metadata;
  if (value === undefined || value === '') return {};
  if (!isObject(value)) {
    throw invalidRequest('parameter_invalid', 'Invalid metadata: must be a set of key-value pairs (metadata[key]=value).', 'metadata');
  }
  const keys = Object.keys(value);
  if (keys.length > METADATA_KEYS) {
    throw invalidRequest('parameter_invalid', `Invalid metadata: at most ${METADATA_KEYS} keys.`, 'metadata');
  }
  const result = {};
  for (const key of keys) {
    if (key.length === 0 || key.length > METADATA_KEY_LENGTH || CONTROL.test(key) || key.includes('[')) {
      throw invalidRequest('parameter_invalid', `Invalid metadata key: keys are 1-${METADATA_KEY_LENGTH} characters.`, 'metadata');
    }
    result[key] = string(value, key, { maxLength: METADATA_VALUE_LENGTH });
    if (result[key] === null) {
      throw invalidRequest('parameter_invalid', `Invalid metadata[${key}]: values are non-empty strings.`, `metadata[${key}]`);
    }
  }
  return result;
}

function createCharge(body) {
  rejectUnknown(body, ['amount', 'currency', 'source', 'customer', 'description', 'metadata', 'capture']);
  const amount = integer(body, 'amount', { required: true, min: MIN_AMOUNT, max: MAX_AMOUNT });
  const currency = string(body, 'currency', { required: true, pattern: /^[A-Za-z]{3}$/ }).toLowerCase();
  const source = string(body, 'source', { pattern: /^(tok|card|src)_[A-Za-z0-9_]{1,64}$/ });
  const customer = string(body, 'customer', { pattern: /^cus_[A-Za-z0-9]{1,64}$/ });
  if ((source === null) === (customer === null)) {
    throw invalidRequest('parameter_missing', 'Exactly one of source or customer is required.',
      source === null ? 'source' : 'customer');
  }
  return {
    amount,
    currency,
    source,
    customer,
    description: string(body, 'description', { maxLength: DESCRIPTION_LENGTH }),
    metadata: metadata(body),
    capture: boolean(body, 'capture', true),
  };
}

function captureCharge(body) {
  rejectUnknown(body, []);
  return {};
}

function createRefund(body) {
  rejectUnknown(body, ['charge', 'amount', 'metadata']);
  return {
    charge: string(body, 'charge', { required: true, maxLength: 100 }),
    amount: integer(body, 'amount', { min: 1, max: MAX_AMOUNT }),
    metadata: metadata(body),
  };
}

// An object id from the path or a parameter: a malformed one cannot exist.
function isId(kind, value) {
  return typeof value === 'string' && ID_PATTERNS[kind].test(value);
}

module.exports = { storable, createCharge, captureCharge, createRefund, isId };

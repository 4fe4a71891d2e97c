'use strict';
// API keys to merchants.  A secret key arrives as `Authorization: Bearer sk_test_...`
// (what the official client sends) or as the user of basic auth (curl -u sk_test_...:).
// The merchant found is the idempotency scope of the request, so that one merchant's
// keys can never replay, block or reveal another's; with it comes the merchant's
// require_idempotency_key (NULL: the deployment's REQUIRE_IDEMPOTENCY_KEY).

const crypto = require('node:crypto');
const { ApiError } = require('./errors');

const KEY_PATTERN = /^sk_(test|live)_[A-Za-z0-9]{16,128}$/;
// Known keys are remembered for a short while: a lookup per request would be a database
// round trip that has nothing to do with payments.  A revoked key stops working within
// this time, and a changed require_idempotency_key applies within it.
const CACHE_MS = 30000;
const CACHE_MAX = 10000;

const unauthorized = (message) => new ApiError(401, 'invalid_request_error', 'api_key_invalid', message);

function presentedKey(header) {
  if (!header) return null;
  const [scheme, credentials = ''] = header.split(' ', 2);
  if (/^bearer$/i.test(scheme)) return credentials.trim();
  if (/^basic$/i.test(scheme)) {
    const decoded = Buffer.from(credentials, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon === -1 ? decoded : decoded.slice(0, colon);
  }
  return '';
}

function redact(key) {
  return key.length > 12 ? `${key.slice(0, 8)}${'*'.repeat(8)}${key.slice(-4)}` : '*'.repeat(key.length);
}

function authenticate(pool) {
  const cache = new Map();
  return async function authenticateRequest(req) {
    const key = presentedKey(req.get('authorization'));
    if (key === null || key === '') {
      throw unauthorized('You did not provide an API key. Provide it in the Authorization header '
        + '(Authorization: Bearer YOUR_SECRET_KEY).');
    }
    if (!KEY_PATTERN.test(key)) throw unauthorized(`Invalid API Key provided: ${redact(key)}`);
    const digest = crypto.createHash('sha256').update(key, 'utf8').digest();
    const cacheKey = digest.toString('hex');
    const hit = cache.get(cacheKey);
    if (hit && hit.until > Date.now()) return hit.merchant;
    const { rows } = await pool.query(
      `SELECT k.merchant_id AS id, m.require_idempotency_key AS "requireKey"
         FROM api_keys k JOIN merchants m ON m.id = k.merchant_id WHERE k.key_sha256 = $1`, [digest]);
    if (rows.length === 0) throw unauthorized(`Invalid API Key provided: ${redact(key)}`);
    if (cache.size >= CACHE_MAX) cache.clear();
    cache.set(cacheKey, { merchant: rows[0], until: Date.now() + CACHE_MS });
    return rows[0];
  };
}

module.exports = { authenticate };

'use strict';
// Object ids in Stripe's style: a prefix and 24 random base-62 characters.

const crypto = require('node:crypto');

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

function randomId(prefix) {
  // 248 = 4 * 62: bytes at or above it are skipped so that every character is equally likely.
  let out = '';
  while (out.length < 24) {
    for (const byte of crypto.randomBytes(32)) {
      if (byte < 248 && out.length < 24) out += ALPHABET[byte % 62];
    }
  }
  return `${prefix}_${out}`;
}

module.exports = { randomId };

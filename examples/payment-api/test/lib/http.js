'use strict';
// Plain HTTP calls to the API for the request-level tests: exact headers and bodies,
// without the Stripe client's retries in the way.

const http = require('node:http');

// Stripe's form encoding: nested objects as name[key]=value.
function encode(params, prefix = null, out = new URLSearchParams()) {
  for (const [name, value] of Object.entries(params)) {
    const key = prefix ? `${prefix}[${name}]` : name;
    if (value !== null && typeof value === 'object') encode(value, key, out);
    else out.append(key, String(value));
  }
  return out;
}

// headers may repeat a name (an array of [name, value] pairs), which fetch cannot send.
// chunked: the body goes out with Transfer-Encoding: chunked, without a Content-Length.
function request(baseUrl, method, path, { apiKey, key, params, body, headers = [], chunked = false } = {}) {
  const url = new URL(path, baseUrl);
  const payload = body !== undefined ? body : params ? encode(params).toString() : '';
  // With headers given as a list Node adds none of its own, not even Host.
  const list = [['Host', url.host], ...headers];
  if (apiKey) list.push(['Authorization', `Bearer ${apiKey}`]);
  if (key !== undefined) list.push(['Idempotency-Key', key]);
  if (payload && !list.some(([n]) => /^content-type$/i.test(n))) {
    list.push(['Content-Type', 'application/x-www-form-urlencoded']);
  }
  if (chunked) list.push(['Transfer-Encoding', 'chunked']);
  else list.push(['Content-Length', String(Buffer.byteLength(payload))]);
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers: list.flat(), agent: false }, (res) => {
      const chunks = [];
      res.on('data', (chunk) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json = null;
        try { json = JSON.parse(text); } catch { json = null; }
        resolve({ status: res.statusCode, headers: res.headers, body: json, text });
      });
    });
    req.on('error', reject);
    // A Buffer, not a string: Node writes the headers with the first chunk, in that
    // chunk's encoding, and header values must go out as the bytes given (latin1).
    req.end(Buffer.from(payload, 'utf8'));
  });
}

module.exports = { request, encode };

'use strict';
// A fault-injecting TCP proxy in front of the API, for the tests.  It reads the HTTP/1.1
// requests on each client connection (by Content-Length; the Stripe client sends no
// chunked bodies) and, for each, at the configured rates:
//   cut       forwards the request, then closes both connections before the client has
//             its reply: either at once, or when the reply starts (the server has acted);
//   delay     holds the request for delayMs before forwarding it;
//   duplicate forwards it, and sends the same bytes again on a second connection, whose
//             reply is thrown away: a concurrent duplicate of the same request.
// Everything else is passed through unchanged.  forceNext('cut', ...) makes the next
// requests get these faults, for tests that need one fault at one place.

const net = require('node:net');

const HEADER_END = Buffer.from('\r\n\r\n');

// The first complete request in buffer: { request, rest }, or null.
function splitRequest(buffer) {
  const end = buffer.indexOf(HEADER_END);
  if (end === -1) return null;
  const head = buffer.subarray(0, end).toString('latin1');
  const match = head.match(/\r\ncontent-length:\s*(\d+)/i);
  const total = end + HEADER_END.length + (match ? Number(match[1]) : 0);
  if (buffer.length < total) return null;
  return { request: buffer.subarray(0, total), rest: buffer.subarray(total) };
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

class FaultProxy {
  constructor({ targetPort, rates = {}, delayMs = 300, random = Math.random }) {
    this.targetPort = targetPort;
    this.rates = { cut: 0, delay: 0, duplicate: 0, ...rates };
    this.delayMs = delayMs;
    this.random = random;
    this.counts = { connections: 0, requests: 0, cut: 0, delayed: 0, duplicated: 0 };
    this.forced = [];
    this.sockets = new Set();
    this.server = net.createServer((client) => this.connection(client));
  }

  listen() {
    return new Promise((resolve) => {
      this.server.listen(0, '127.0.0.1', () => {
        this.port = this.server.address().port;
        resolve(this.port);
      });
    });
  }

  track(socket) {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    return socket;
  }

  forceNext(...faults) {
    this.forced.push(...faults);
  }

  // One fault, or none, for the next request.
  pick() {
    if (this.forced.length) return this.forced.shift();
    const r = this.random();
    const { cut, delay, duplicate } = this.rates;
    if (r < cut) return 'cut';
    if (r < cut + delay) return 'delay';
    if (r < cut + delay + duplicate) return 'duplicate';
    return null;
  }

  connection(client) {
    this.counts.connections += 1;
    this.track(client);
    const upstream = this.track(net.connect(this.targetPort, '127.0.0.1'));
    let pending = Buffer.alloc(0);
    let cutOnReply = false;
    let queue = Promise.resolve();
    const closeBoth = () => {
      client.destroy();
      upstream.destroy();
    };
    upstream.on('data', (data) => {
      if (cutOnReply) closeBoth();
      else client.write(data);
    });
    upstream.on('error', closeBoth);
    upstream.on('close', closeBoth);
    client.on('error', closeBoth);
    client.on('close', closeBoth);
    client.on('data', (data) => {
      pending = Buffer.concat([pending, data]);
      for (let next = splitRequest(pending); next; next = splitRequest(pending)) {
        pending = next.rest;
        const { request } = next;
        queue = queue.then(() => this.forward(request, upstream, closeBoth, () => { cutOnReply = true; }));
      }
    });
  }

  async forward(request, upstream, closeBoth, cutWhenReplyStarts) {
    this.counts.requests += 1;
    const fault = this.pick();
    if (fault === 'delay') {
      this.counts.delayed += 1;
      await sleep(this.delayMs);
    }
    if (fault === 'cut') {
      this.counts.cut += 1;
      if (this.random() < 0.5) {
        upstream.write(request, () => setImmediate(closeBoth));
        return;
      }
      cutWhenReplyStarts();
    }
    if (fault === 'duplicate') {
      this.counts.duplicated += 1;
      this.sendCopy(request);
    }
    upstream.write(request);
  }

  sendCopy(request) {
    const copy = this.track(net.connect(this.targetPort, '127.0.0.1'));
    copy.on('error', () => copy.destroy());
    copy.on('data', () => copy.end());
    copy.setTimeout(10000, () => copy.destroy());
    copy.write(request);
  }

  close() {
    for (const socket of this.sockets) socket.destroy();
    return new Promise((resolve) => { this.server.close(() => resolve()); });
  }
}

module.exports = { FaultProxy, splitRequest };

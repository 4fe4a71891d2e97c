'use strict';
// A loopback TCP port that nothing listens on: the kernel picks one for a listener
// that is closed at once.  Another program could take it in between; on a test
// machine that is rare, and the server that then fails to listen says so.

const net = require('node:net');

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

module.exports = { freePort };

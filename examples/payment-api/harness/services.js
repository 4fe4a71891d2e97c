'use strict';
// The processor and the payment API as child processes, each on a loopback port chosen
// here, so that the API can be killed (SIGKILL) and started again on the same port.

const { spawn } = require('node:child_process');
const path = require('node:path');
const { freePort } = require('./ports');

const ROOT = path.join(__dirname, '..');

// A child process that is ready once it prints `ready` on stdout.  An exit that stop()
// did not ask for is recorded in unexpectedExits (with the end of its output), so that a
// test can fail on it: a service that dies on its own must never be restarted unnoticed.
class Service {
  constructor(name, script, env, ready) {
    Object.assign(this, { name, script, env, ready, child: null, output: '', unexpectedExits: [] });
  }

  get running() { return this.child !== null; }

  start() {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [path.join(ROOT, this.script)], {
        env: { ...process.env, ...this.env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      this.child = child;
      let started = false;
      const timer = setTimeout(() => reject(new Error(`${this.name} did not start: ${this.output}`)), 20000);
      const onData = (chunk) => {
        this.output = (this.output + chunk).slice(-20000);
        if (!started && this.ready.test(this.output)) {
          started = true;
          clearTimeout(timer);
          resolve(this);
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('exit', (code, signal) => {
        if (this.child === child) this.child = null;
        if (started && !child.stopRequested) {
          this.unexpectedExits.push({ code, signal, output: this.output.slice(-2000) });
        }
        if (!started) {
          clearTimeout(timer);
          reject(new Error(`${this.name} exited (${code ?? signal}) before it was ready: ${this.output}`));
        }
      });
    });
  }

  // Ends the process with the signal and waits for it to be gone.
  stop(signal = 'SIGTERM') {
    const { child } = this;
    if (!child) return Promise.resolve();
    return new Promise((resolve) => {
      child.once('exit', () => resolve());
      child.stopRequested = true;
      child.kill(signal);
    });
  }

  kill() { return this.stop('SIGKILL'); }

  // Kills the process and starts it again; refuses when it is not running, since then it
  // exited on its own and restarting it would hide that.
  async restart() {
    if (!this.running) {
      throw new Error(`${this.name} is not running: it exited on its own ${JSON.stringify(this.unexpectedExits)}`);
    }
    await this.kill();
    return this.start();
  }
}

async function startProcessor(settings = {}) {
  const port = await freePort();
  const service = new Service('processor', 'processor/server.js', { PORT: String(port), ...settings },
    /processor listening/);
  await service.start();
  service.url = `http://127.0.0.1:${port}`;
  return service;
}

async function startApi({ databaseUrl, processorUrl, ...settings }) {
  const [port, metricsPort] = [await freePort(), await freePort()];
  const service = new Service('payment API', 'src/server.js', {
    PORT: String(port),
    METRICS_PORT: String(metricsPort),
    DATABASE_URL: databaseUrl,
    PROCESSOR_URL: processorUrl,
    ...settings,
  }, /"message":"listening"/);
  await service.start();
  Object.assign(service, { port, url: `http://127.0.0.1:${port}`, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics` });
  return service;
}

// Helpers to talk to the processor's control and ledger endpoints.
async function processorCall(processor, method, urlPath, body) {
  const response = await fetch(`${processor.url}${urlPath}`, {
    method,
    headers: { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return response.json();
}

module.exports = { Service, startProcessor, startApi, processorCall };

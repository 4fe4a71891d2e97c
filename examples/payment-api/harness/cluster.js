'use strict';
// A throwaway PostgreSQL cluster for the tests, `make example` and `make bench-api`:
// initdb in a temporary directory, the extension preloaded, loopback TCP only.
// PostgreSQL refuses to run as root, so as root every server command runs as the
// `postgres` user in a directory that user owns.  PG_CONFIG picks the installation
// (default: the pg_config on PATH, the system PostgreSQL that `make test` installs into).

const { execFile, execFileSync } = require('node:child_process');
const { promisify } = require('node:util');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { freePort } = require('./ports');

const asRoot = process.getuid && process.getuid() === 0;
const execFileAsync = promisify(execFile);

function pgConfig(flag) {
  return execFileSync(process.env.PG_CONFIG || 'pg_config', [flag], { encoding: 'utf8' }).trim();
}

class Cluster {
  constructor({ settings = {} } = {}) {
    this.bindir = pgConfig('--bindir');
    this.settings = settings;
    this.dir = null;
    this.port = null;
  }

  // Runs a server program as the cluster's owner.  Asynchronous, so that clients in the
  // same process keep running while the server is killed or starts.
  async run(program, args) {
    const command = path.join(this.bindir, program);
    const argv = asRoot ? ['-u', 'postgres', '--', command, ...args] : args;
    const { stdout } = await execFileAsync(asRoot ? 'runuser' : command, argv, { encoding: 'utf8' });
    return stdout;
  }

  get dataDir() { return path.join(this.dir, 'data'); }
  get logFile() { return path.join(this.dir, 'server.log'); }

  async init() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'payment-api-pg-'));
    if (asRoot) execFileSync('chown', ['postgres:', this.dir]);
    this.port = await freePort();
    await this.run('initdb', ['-D', this.dataDir, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8',
      '--locale=C', '--no-sync']);
    const conf = {
      listen_addresses: "'127.0.0.1'",
      port: this.port,
      unix_socket_directories: `'${this.dir}'`,
      shared_preload_libraries: "'idempotency'",
      'idempotency.reaper_databases': "'payments'",
      // the processor keys (downstream_key()) are derived under it: set once, never changed
      'idempotency.downstream_secret': "'payment-api-example-downstream-secret'",
      max_connections: 100,
      fsync: 'off',
      ...this.settings,
    };
    const lines = Object.entries(conf).map(([k, v]) => `${k} = ${v}`).join('\n');
    fs.appendFileSync(path.join(this.dataDir, 'postgresql.conf'), `\n# payment-api harness\n${lines}\n`);
    return this;
  }

  start() {
    return this.run('pg_ctl', ['-D', this.dataDir, '-l', this.logFile, '-w', '-t', '120', 'start']);
  }

  // `-m immediate`: the postmaster and every backend are killed without a checkpoint,
  // as in a crash; the next start runs crash recovery.
  crash() {
    return this.run('pg_ctl', ['-D', this.dataDir, '-m', 'immediate', '-w', 'stop']);
  }

  async stop() {
    if (!this.dir || !fs.existsSync(path.join(this.dataDir, 'postmaster.pid'))) return;
    await this.run('pg_ctl', ['-D', this.dataDir, '-m', 'fast', '-w', 'stop']);
  }

  // Stops the server if it runs and deletes the directory (the log is returned first).
  async destroy() {
    let log = '';
    if (!this.dir) return log;
    try { await this.stop(); } catch { await this.crash(); }
    try { log = fs.readFileSync(this.logFile, 'utf8'); } catch { /* never started */ }
    fs.rmSync(this.dir, { recursive: true, force: true });
    this.dir = null;
    return log;
  }

  url(database, user) {
    return `postgresql://${encodeURIComponent(user)}@127.0.0.1:${this.port}/${database}`;
  }

  // psql as the superuser, stopping at the first error, which it throws with psql's message.
  psql(database, sql) {
    try {
      return execFileSync(path.join(this.bindir, 'psql'),
        ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(this.port),
          '-U', 'postgres', '-d', database, '-f', '-'],
        { input: sql, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (err) {
      throw new Error(`psql in database ${database} failed: ${String(err.stderr || err.message).trim()}`);
    }
  }
}

module.exports = { Cluster };

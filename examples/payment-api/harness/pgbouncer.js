'use strict';
// PgBouncer (Debian's pgbouncer package) in transaction pooling mode in front of a
// throwaway cluster, as payment APIs are deployed: each transaction of the API may run
// on another server connection, so nothing may rely on session state across them.
// Its pool is smaller than the API's, so that server connections are shared.  It
// refuses to run as root, so as root it runs as `postgres`, as the cluster does.  The settings are
// the README's ("Behind PgBouncer").

const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { freePort } = require('./ports');

const asRoot = process.getuid && process.getuid() === 0;
const PROGRAM = process.env.PGBOUNCER || '/usr/sbin/pgbouncer';

class PgBouncer {
  constructor(cluster, { database, users, poolSize = 4 }) {
    Object.assign(this, { cluster, database, users, poolSize, child: null, output: '' });
  }

  async start() {
    if (!fs.existsSync(PROGRAM)) {
      throw new Error(`${PROGRAM} is missing: install Debian's pgbouncer (scripts/setup-debian.sh does)`);
    }
    this.dir = path.join(this.cluster.dir, 'pgbouncer');
    fs.mkdirSync(this.dir, { recursive: true });
    this.port = this.port || await freePort();
    fs.writeFileSync(path.join(this.dir, 'userlist.txt'), this.users.map((u) => `"${u}" ""\n`).join(''));
    fs.writeFileSync(path.join(this.dir, 'pgbouncer.ini'), `[databases]
${this.database} = host=127.0.0.1 port=${this.cluster.port} dbname=${this.database}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${this.port}
unix_socket_dir =
auth_type = trust
auth_file = ${path.join(this.dir, 'userlist.txt')}
pool_mode = transaction
default_pool_size = ${this.poolSize}
max_client_conn = 500
server_login_retry = 1
query_wait_timeout = 15
ignore_startup_parameters = extra_float_digits
logfile = ${path.join(this.dir, 'pgbouncer.log')}
`);
    if (asRoot) execFileSync('chown', ['-R', 'postgres:', this.dir]);
    // Spawned as postgres itself rather than through runuser, so that stop()'s signal
    // reaches it.
    const owner = asRoot ? {
      uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' })),
      gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' })),
    } : {};
    this.child = spawn(PROGRAM, [path.join(this.dir, 'pgbouncer.ini')], { stdio: ['ignore', 'pipe', 'pipe'], ...owner });
    const collect = (chunk) => { this.output = (this.output + chunk).slice(-20000); };
    this.child.stdout.on('data', collect);
    this.child.stderr.on('data', collect);
    await this.ready();
    return this;
  }

  // Ready once it accepts a connection and answers a query through to the server.
  async ready() {
    const { Client } = require('pg');
    const deadline = Date.now() + 15000;
    for (;;) {
      const client = new Client({ connectionString: this.url(this.users[0]) });
      client.on('error', () => {});
      try {
        await client.connect();
        await client.query('SELECT 1');
        await client.end();
        return;
      } catch (err) {
        client.end().catch(() => {});
        if (this.child.exitCode !== null || Date.now() > deadline) {
          throw new Error(`pgbouncer did not start: ${err.message}: ${this.output}`);
        }
        await new Promise((r) => { setTimeout(r, 100); });
      }
    }
  }

  url(user) {
    return `postgresql://${encodeURIComponent(user)}@127.0.0.1:${this.port}/${this.database}`;
  }

  stop() {
    const { child } = this;
    if (!child || child.exitCode !== null) return Promise.resolve();
    // SIGTERM: an immediate shutdown (SIGINT would wait for every client to leave).
    return new Promise((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
  }
}

module.exports = { PgBouncer };

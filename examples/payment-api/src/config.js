'use strict';
// The service's settings, from the environment, checked once at start-up so that a
// wrong value stops the service before its first request rather than during one.

function integer(env, name, fallback, min, max) {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name} must be an integer from ${min} to ${max}, not ${JSON.stringify(text)}`);
  }
  return value;
}

function flag(env, name, fallback) {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  if (text !== 'true' && text !== 'false') throw new Error(`${name} must be true or false, not ${JSON.stringify(text)}`);
  return text === 'true';
}

function required(env, name) {
  if (!env[name]) throw new Error(`${name} must be set`);
  return env[name];
}

function loadConfig(env = process.env) {
  const config = {
    port: integer(env, 'PORT', 4242, 0, 65535),
    metricsPort: integer(env, 'METRICS_PORT', 9464, 0, 65535),
    databaseUrl: required(env, 'DATABASE_URL'),
    processorUrl: required(env, 'PROCESSOR_URL'),
    poolSize: integer(env, 'PG_POOL_SIZE', 10, 1, 100),
    // A durable claim's lease: how long a crashed worker's request waits before a retry
    // may resume it.  It must outlast one processor call, since each step renews it
    // (the claim, then each checkpoint) just before its call.  README: "Lease".
    leaseSeconds: integer(env, 'LEASE_SECONDS', 10, 1, 3600),
    processorTimeoutMs: integer(env, 'PROCESSOR_TIMEOUT_MS', 5000, 1, 600000),
    // Whether a POST without an Idempotency-Key is refused (400, the IETF draft's rule)
    // for merchants whose require_idempotency_key is NULL.  Off, as with Stripe.
    requireIdempotencyKey: flag(env, 'REQUIRE_IDEMPOTENCY_KEY', false),
  };
  // How long a keyed request that finds its key held (IK409) waits in the service for
  // the holder to finish or its lease to lapse, before it answers 409: by default a
  // lease and two seconds, so that the official client's first retry after a crash
  // resumes the charge within one attempt (its default timeout is 80 s).
  config.inUseWaitSeconds = integer(env, 'IN_USE_WAIT_SECONDS', config.leaseSeconds + 2, 0, 60);
  if (config.processorTimeoutMs >= config.leaseSeconds * 1000) {
    throw new Error('LEASE_SECONDS must be longer than PROCESSOR_TIMEOUT_MS: a slow processor call '
      + 'would otherwise outlive the lease and the request be resumed while still running');
  }
  return config;
}

module.exports = { loadConfig };

'use strict';
// Errors in Stripe's shape, {"error": {"type", "code", "message", "param"}}, and the
// mapping of the extension's SQLSTATEs (and PostgreSQL's) to HTTP.  The official
// client picks its exception class from the status and the type, and decides whether
// to retry from Stripe-Should-Retry, so both are part of the contract.

class ApiError extends Error {
  // status: HTTP status; type: Stripe's error type; code: a stable machine-readable code.
  constructor(status, type, code, message, extra = {}) {
    super(message);
    this.status = status;
    this.type = type;
    this.code = code;
    this.extra = extra;
  }

  body() {
    return { error: { type: this.type, code: this.code, message: this.message, ...this.extra } };
  }

  // Headers of the reply besides the ones every reply has.
  headers() {
    return {};
  }

  // Whether a client should send the same request again: only a request in flight (409)
  // and a server-side failure can succeed on a retry; a 4xx is final for these
  // parameters.  (replies.send() decides for a 5xx, which it knows whether was stored.)
  shouldRetry() {
    return this.status === 409 || this.status >= 500;
  }
}

const invalidRequest = (code, message, param = null) =>
  new ApiError(400, 'invalid_request_error', code, message, param ? { param } : {});

const notFound = (kind, id, param) =>
  new ApiError(404, 'invalid_request_error', 'resource_missing', `No such ${kind}: '${id}'`,
    param ? { param } : {});

// Errors of the idempotency layer: type idempotency_error, as Stripe's.
const idempotencyError = (status, code, message) =>
  new ApiError(status, 'idempotency_error', code, message);

const apiError = (status, code, message) => new ApiError(status, 'api_error', code, message);

// The IETF draft's answer to a POST without the Idempotency-Key an endpoint requires
// (draft-ietf-httpapi-idempotency-key-header-07, "Error Scenarios"): 400, a problem
// body (RFC 9457) whose type links the published policy, and, in the same body,
// Stripe's error object, from which the official client builds its exception.
const POLICY_PATH = '/v1/idempotency';

class MissingKeyError extends ApiError {
  constructor() {
    super(400, 'invalid_request_error', 'idempotency_key_missing',
      'This endpoint requires an Idempotency-Key header: send a unique key with each new request, '
      + `and the same key when you retry it (the policy: GET ${POLICY_PATH}).`,
      { doc_url: POLICY_PATH });
  }

  body() {
    return {
      type: POLICY_PATH,
      title: 'Idempotency-Key is missing',
      status: this.status,
      detail: this.message,
      ...super.body(),
    };
  }

  headers() {
    return { 'Content-Type': 'application/problem+json', Link: `<${POLICY_PATH}>; rel="describedby"` };
  }
}

// Class 08 (connection exception), 57P01-57P03 (shutdown, crash recovery, starting
// up), 53300 (too many connections) and the socket errors of node-postgres: the
// database is unreachable for now.  The transaction did not commit, or its outcome is
// unknown and the retry's claim settles it (a committed claim replays or resumes).
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300']);
const SOCKET_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND']);

function databaseUnavailable(err) {
  const code = err && err.code;
  if (typeof code !== 'string') {
    return /Connection terminated|connection timeout|Client has encountered a connection error/i
      .test(String(err && err.message));
  }
  return code.startsWith('08') || UNAVAILABLE_SQLSTATES.has(code) || SOCKET_ERRORS.has(code);
}

// An error raised by PostgreSQL (or the driver) as the HTTP answer.  Messages of the
// extension name only the caller's own scope and key, so they can be passed on; any
// other database error is reported without its text, which could describe the schema.
function fromDatabase(err) {
  switch (err.code) {
    case 'IK400':
      return idempotencyError(400, 'idempotency_key_invalid', err.message);
    case 'IK409':
      return idempotencyError(409, 'idempotency_key_in_use',
        'There is currently another in-progress request using this Idempotency-Key; '
        + 'retry after it has completed.');
    case 'IK410':
      return idempotencyError(410, 'idempotency_key_expired',
        `This Idempotency-Key is past its replay window${err.detail ? ` (${err.detail})` : ''}; `
        + 'the request it was first used for is not run again. Use a new key for a new request.');
    case 'IK422':
      return idempotencyError(422, 'idempotency_key_reused',
        'Keys for idempotent requests can only be used with the same parameters they were '
        + 'first used with. Use a new key for a new request.');
    case 'IK503':
    case '25006': // a standby, or a read-only transaction: send it to the primary
      return apiError(503, 'service_unavailable', 'The payment database needs an operator; retry later.');
    case 'IK428': // the service broke the claim protocol: a bug here, not the caller's
    case '53400': // more keys in one transaction than the server allows
    default:
      if (databaseUnavailable(err)) {
        return apiError(503, 'database_unavailable', 'The payment database is unavailable; retry later.');
      }
      return apiError(500, 'internal_error', 'An internal error occurred.');
  }
}

module.exports = { ApiError, MissingKeyError, POLICY_PATH, invalidRequest, notFound, idempotencyError, apiError, fromDatabase, databaseUnavailable };

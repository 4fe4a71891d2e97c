-- downstream_key(): a stable, printable, fixed-length key for a payment
-- processor, derived from the scope, the key, the request's fingerprint
-- and a purpose.  The same inputs give the same value, always (the
-- expected values below are fixed: they must never change); a different
-- request or purpose gives an unrelated one.  Without its secret it
-- refuses, rather than derive keys that would change once one is set.
SET idempotency.downstream_secret = '';
SELECT idempotency.downstream_key('merchant_42', 'a1b2', '\x01', 'authorize');
SET idempotency.downstream_secret = 'never-rotated';
SELECT idempotency.downstream_key('merchant_42', 'a1b2', '\x01', 'authorize') AS authorize,
       idempotency.downstream_key('merchant_42', 'a1b2', '\x01', 'capture') AS capture;
SELECT k, length(k) AS length, k ~ '^ikd1_[a-z2-7]{32}$' AS printable
  FROM (SELECT idempotency.downstream_key('m', 'k', '\x02', 'refund') AS k) x;
-- each input changes it, and no two fields can be shifted into each other
SELECT count(DISTINCT k) AS distinct_keys
  FROM (VALUES
    (idempotency.downstream_key('ab', 'c', '\x01', 'p')),
    (idempotency.downstream_key('a', 'bc', '\x01', 'p')),
    (idempotency.downstream_key('a', 'b', '\x01', 'p')),
    (idempotency.downstream_key('a', 'b', '\x02', 'p')),
    (idempotency.downstream_key('a', 'b', '\x01', 'q')),
    (idempotency.downstream_key('b', 'a', '\x01', 'p'))) v(k);
-- the fingerprint secret, which may be rotated, plays no part
SET idempotency.fingerprint_secret = 'rotated';
SELECT idempotency.downstream_key('merchant_42', 'a1b2', '\x01', 'authorize') AS authorize_after_rotation;
RESET idempotency.fingerprint_secret;
-- bad input is IK400, as everywhere
SELECT idempotency.downstream_key(NULL, 'k', '\x01', 'authorize');
SELECT idempotency.downstream_key('m', 'k', '\x01', '');
SELECT idempotency.downstream_key('m', 'k', '', 'authorize');
SELECT idempotency.downstream_key('m', 'k', '\x01', repeat('p', 65));
-- nobody reads the secret back
SHOW idempotency.downstream_secret;
RESET idempotency.downstream_secret;

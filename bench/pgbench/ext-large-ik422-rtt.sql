-- extension, IK422 on a key whose stored reply is large: a claim with
-- another fingerprint of the completed key :size (1kB, 1MB or 20MB of
-- body), which the fingerprint settles without reading the reply.
-- bench.claim_outcome() returns the SQLSTATE's name instead of raising
-- it, so that pgbench does not end the client.  run.sh makes the keys.
SELECT bench.claim_outcome('large', :size, '\x02');

-- extension, a replay: the claim of a completed key returns its stored
-- response; one statement, autocommit.  run.sh completes keys '1' to
-- :replay_keys with this :fingerprint, through the extension, beforehand.
\set key random(1, :replay_keys)
SELECT outcome, response_status, response_headers, response_body
  FROM idempotency.claim('replay', :key, :fingerprint);

-- extension, a replay of the completed key :size (1kB, 1MB or 20MB of
-- body): the stored reply, read once and sent to the client.  run.sh
-- makes the keys.
SELECT outcome, response_status, response_headers, response_body
  FROM idempotency.claim('large', :size, :fingerprint);

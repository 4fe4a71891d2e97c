-- The idempotency contract written by hand, as a payments team would write
-- it without the extension: a keys table and two PL/pgSQL functions.  The
-- benchmark compares the extension with this ("plpgsql-new"), and
-- bench/doublecharge runs it as the "plpgsql" design.
--
-- The flow is the extension's, in one transaction per request:
--
--   BEGIN;
--   SELECT * FROM handmade.claim(scope, key, fingerprint);  -- 'new'?
--   INSERT INTO charges ...;
--   SELECT handmade.complete(scope, key, 201, '{"id": ...}');
--   COMMIT;
--
-- What it guarantees comes from the primary key: a second request with the
-- same key cannot insert its row while the first one's row is uncommitted.
-- PostgreSQL makes the second INSERT ... ON CONFLICT wait for the first
-- transaction; if that commits, the second sees the completed row and
-- replays; if it rolls back, the second inserts and gets 'new'.  So a
-- concurrent duplicate waits and then replays rather than being charged a
-- second time, as the extension does with claim(..., wait => ...).
--
-- Unlike the extension it has no expiry (a cron job would delete old rows),
-- no commit guard (a caller that commits without complete() leaves the key
-- 'in-progress' for good, and every retry gets 'conflict'), and stores no
-- response headers.

CREATE SCHEMA handmade;

CREATE TABLE handmade.keys (
	scope			text		NOT NULL,
	key				text		NOT NULL,
	fingerprint		bytea		NOT NULL,	-- hash of the request, computed by the API
	status			text		NOT NULL DEFAULT 'in-progress'
		CHECK (status IN ('in-progress', 'completed')),
	response_status	integer,
	response_body	jsonb,
	created_at		timestamptz	NOT NULL DEFAULT now(),
	PRIMARY KEY (scope, key)
);

-- outcome: 'new' (go ahead and charge), 'replay' (return the stored
-- response), 'mismatch' (the key was used for another request: 422) or
-- 'conflict' (a request with this key committed without completing: 409).
CREATE FUNCTION handmade.claim(scope text, key text, fingerprint bytea)
RETURNS TABLE (outcome text, response_status integer, response_body jsonb)
LANGUAGE plpgsql
AS $$
DECLARE
	existing	handmade.keys;
BEGIN
	-- Waits for an uncommitted row with this key (see above).
	INSERT INTO handmade.keys (scope, key, fingerprint)
	VALUES (claim.scope, claim.key, claim.fingerprint)
	ON CONFLICT DO NOTHING;
	IF FOUND THEN
		RETURN QUERY SELECT 'new'::text, NULL::integer, NULL::jsonb;
		RETURN;
	END IF;

	-- The key exists and its row is committed.  A statement of its own, so
	-- that under READ COMMITTED it sees the row that the INSERT waited for.
	SELECT * INTO existing
	  FROM handmade.keys AS k
	 WHERE k.scope = claim.scope AND k.key = claim.key;

	IF NOT FOUND THEN
		-- deleted since the INSERT saw it (by a clean-up job): try again later
		RETURN QUERY SELECT 'conflict'::text, NULL::integer, NULL::jsonb;
	ELSIF existing.fingerprint <> claim.fingerprint THEN
		RETURN QUERY SELECT 'mismatch'::text, NULL::integer, NULL::jsonb;
	ELSIF existing.status = 'completed' THEN
		RETURN QUERY SELECT 'replay'::text, existing.response_status, existing.response_body;
	ELSE
		RETURN QUERY SELECT 'conflict'::text, NULL::integer, NULL::jsonb;
	END IF;
END;
$$;

-- Stores the response of a key claimed 'new' in this transaction.  A 5xx is
-- a transient failure: the key is deleted instead, so that a retry runs
-- again rather than replaying the error.
CREATE FUNCTION handmade.complete(scope text, key text, status integer, body jsonb)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	IF complete.status BETWEEN 500 AND 599 THEN
		DELETE FROM handmade.keys AS k
		 WHERE k.scope = complete.scope AND k.key = complete.key
		   AND k.status = 'in-progress';
	ELSE
		UPDATE handmade.keys AS k
		   SET status = 'completed', response_status = complete.status,
			   response_body = complete.body
		 WHERE k.scope = complete.scope AND k.key = complete.key
		   AND k.status = 'in-progress';
	END IF;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no claim of key % in scope % in progress', complete.key, complete.scope;
	END IF;
END;
$$;

-- idempotency, trusted edition: the same SQL surface as the C extension,
-- in SQL and PL/pgSQL only, for managed PostgreSQL where C cannot be loaded.
--
-- This is the one source of dist/trusted/idempotency.sql (a script that a
-- role which is not a superuser runs after CREATE EXTENSION pgcrypto) and
-- of dist/trusted/idempotency-pgtle.sql (the same body in a
-- pgtle.install_extension() call); trusted/build.sh writes both.  Lines
-- between "--@extension-only" and "--@end" are kept only in the pg_tle
-- body: pg_extension_config_dump() works only inside CREATE EXTENSION.
--
-- Every function runs with search_path = pg_catalog, pg_temp and names
-- every object of this schema qualified, so no search_path of a caller
-- changes what runs with the owner's rights.  trusted/README.md lists what
-- differs from the C edition.

CREATE SCHEMA idempotency;
REVOKE ALL ON SCHEMA idempotency FROM PUBLIC;

-- The keys: exactly the C edition's table (idempotency--0.3.0.sql), so that
-- a dump of either edition's keys restores into the other.
CREATE TABLE idempotency.keys (
	scope				text		COLLATE "C" NOT NULL,
	key					text		COLLATE "C" NOT NULL,
	fingerprint			bytea		NOT NULL,
	state				text		NOT NULL,	-- 'completed' or 'in_progress'
	response_status		integer,
	response_headers	jsonb,
	response_body		jsonb,
	recovery_point		text,
	lease_token			uuid,
	lease_duration		interval,
	lease_expires_at	timestamptz,
	created_at			timestamptz	NOT NULL,
	expires_at			timestamptz	NOT NULL,
	retain_until		timestamptz	NOT NULL,
	PRIMARY KEY (key, scope),
	CONSTRAINT keys_names_size
		CHECK (octet_length(scope) BETWEEN 1 AND 255
			   AND octet_length(key) BETWEEN 1 AND 255),
	CONSTRAINT keys_fingerprint_size
		CHECK (octet_length(fingerprint) BETWEEN 1 AND 255),
	CONSTRAINT keys_state_domain
		CHECK (state IN ('completed', 'in_progress')),
	CONSTRAINT keys_completed_columns
		CHECK (state <> 'completed'
			   OR (response_status IS NOT NULL AND lease_token IS NULL
				   AND lease_duration IS NULL AND lease_expires_at IS NULL)),
	CONSTRAINT keys_in_progress_columns
		CHECK (state <> 'in_progress'
			   OR (response_status IS NULL AND response_headers IS NULL
				   AND response_body IS NULL AND lease_token IS NOT NULL
				   AND lease_duration IS NOT NULL
				   AND lease_duration > interval '0'
				   AND lease_expires_at IS NOT NULL)),
	CONSTRAINT keys_status_range
		CHECK (response_status BETWEEN 100 AND 599),
	CONSTRAINT keys_headers_object
		CHECK (jsonb_typeof(response_headers) = 'object'),
	CONSTRAINT keys_windows_in_order
		CHECK (created_at <= expires_at AND expires_at <= retain_until),
	CONSTRAINT keys_lease_within_retention
		CHECK (lease_expires_at <= retain_until)
);

CREATE INDEX keys_retain_until_idx ON idempotency.keys (retain_until);

COMMENT ON TABLE idempotency.keys IS
	'Idempotency keys and their stored responses; written only by the idempotency functions';

CREATE TABLE idempotency.policies (
	scope		text		COLLATE "C" PRIMARY KEY
		CHECK (octet_length(scope) BETWEEN 1 AND 255),
	mode		text
		CHECK (mode IN ('off', 'shadow', 'enforce')),
	ttl			interval
		CHECK (ttl > interval '0'),
	retain		interval
		CHECK (retain > interval '0'),
	cache_5xx	boolean,
	CHECK (retain >= ttl)
);

COMMENT ON TABLE idempotency.policies IS
	'Per-scope rollout mode, replay window, retention and 5xx rule; NULL columns keep the idempotency.settings defaults';

-- What the C edition keeps in superuser-only settings: one row, which only
-- the owner of this schema reads or writes (nothing is granted on it).  An
-- operator changes it with UPDATE idempotency.settings SET ... as the owner;
-- a committed change applies to the next claim.  The secrets are read only
-- by the functions, which run as the owner.
CREATE TABLE idempotency.settings (
	singleton			boolean		PRIMARY KEY DEFAULT true CHECK (singleton),
	mode				text		NOT NULL DEFAULT 'enforce'
		CHECK (mode IN ('off', 'shadow', 'enforce')),
	enforce_percent		integer		NOT NULL DEFAULT 100
		CHECK (enforce_percent BETWEEN 0 AND 100),
	ttl					interval	NOT NULL DEFAULT '24 hours'
		CHECK (ttl >= interval '1 second'),
	retain				interval	NOT NULL DEFAULT '7 days'
		CHECK (retain >= interval '1 second'),
	fingerprint_secret	text		NOT NULL DEFAULT '',
	downstream_secret	text		NOT NULL DEFAULT '',
	CONSTRAINT settings_retain_not_shorter CHECK (retain >= ttl)
);
INSERT INTO idempotency.settings DEFAULT VALUES;

-- An INSERT replaces the one row: so a restore of a dump of the pg_tle
-- edition (whose CREATE EXTENSION inserts the defaults again) brings back
-- the dumped settings, and an operator may write them either way.
CREATE FUNCTION idempotency._settings_replace()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF EXISTS (SELECT FROM idempotency.settings) THEN
		UPDATE idempotency.settings AS s
		   SET mode = NEW.mode, enforce_percent = NEW.enforce_percent, ttl = NEW.ttl,
			   retain = NEW.retain, fingerprint_secret = NEW.fingerprint_secret,
			   downstream_secret = NEW.downstream_secret;
		RETURN NULL;
	END IF;
	RETURN NEW;
END
$$;

CREATE TRIGGER settings_replace
	BEFORE INSERT ON idempotency.settings
	FOR EACH ROW EXECUTE FUNCTION idempotency._settings_replace();
ALTER TABLE idempotency.settings ENABLE ALWAYS TRIGGER settings_replace;

COMMENT ON TABLE idempotency.settings IS
	'Defaults of mode, enforce_percent, ttl and retain, and the secrets; only the owner reads or writes it';

--@extension-only
SELECT pg_catalog.pg_extension_config_dump('idempotency.keys', '');
SELECT pg_catalog.pg_extension_config_dump('idempotency.policies', '');
SELECT pg_catalog.pg_extension_config_dump('idempotency.settings', '');
--@end

-- The claims this transaction holds open, which C keeps in backend memory.
-- A row is inserted by a 'new' claim and deleted by complete() or release();
-- a savepoint that rolls back undoes either, as the C edition's
-- subtransaction callbacks do.  Unlogged: a row never outlives its
-- transaction, and a crash ends every transaction.
CREATE UNLOGGED TABLE idempotency.open_claims (
	xact		xid8		NOT NULL,
	scope		text		COLLATE "C" NOT NULL,
	key			text		COLLATE "C" NOT NULL,
	fingerprint	bytea		NOT NULL,
	created_at	timestamptz	NOT NULL,
	mode		text		NOT NULL,
	ttl_ms		bigint		NOT NULL,
	retain_ms	bigint		NOT NULL,
	cache_5xx	boolean		NOT NULL,
	replace		boolean		NOT NULL,	-- a row past retention is there
	holds_lock	boolean		NOT NULL,	-- of the key (shadow may not)
	PRIMARY KEY (xact, key, scope)
);

-- claim()'s result: the C edition's type.
CREATE TYPE idempotency.claim_result AS (
	outcome text,
	response_status integer,
	response_headers jsonb,
	response_body jsonb,
	recovery_point text,
	first_seen timestamptz,
	lease_token uuid
);

-- ---------------------------------------------------------------------------
-- Helpers.  Nothing is granted on them; the public functions call them as
-- the owner, under the search_path those pin (a SET clause on each helper
-- would cost every call a change of search_path: measured, a third of a
-- claim).

-- An argument of 1 to maxbytes bytes without control characters (in a
-- UTF-8 database the C1 controls count too), or IK400 naming it.
CREATE FUNCTION idempotency._check_text(val text, argname text, maxbytes integer)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
	len integer;
	controls CONSTANT text := CASE WHEN getdatabaseencoding() = 'UTF8'
								   THEN '[\x01-\x1f\x7f\u0080-\u009f]' ELSE '[\x01-\x1f\x7f]' END;
BEGIN
	IF val IS NULL THEN
		RAISE EXCEPTION 'argument "%" must not be null', argname USING ERRCODE = 'IK400';
	END IF;
	len := octet_length(val);
	IF len = 0 THEN
		RAISE EXCEPTION 'argument "%" must not be empty', argname USING ERRCODE = 'IK400';
	END IF;
	IF len > maxbytes THEN
		RAISE EXCEPTION 'argument "%" is too long', argname USING ERRCODE = 'IK400',
			DETAIL = format('It is %s bytes long; the limit is %s bytes.', len, maxbytes);
	END IF;
	IF val ~ controls THEN
		RAISE EXCEPTION 'argument "%" contains a control character', argname
			USING ERRCODE = 'IK400',
				  DETAIL = format('The character at byte offset %s is not allowed.',
								  octet_length(regexp_replace(val, controls || '.*$', '')));
	END IF;
	RETURN val;
END
$$;

CREATE FUNCTION idempotency._check_fingerprint(val bytea, argname text)
RETURNS bytea
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
	IF val IS NULL THEN
		RAISE EXCEPTION 'argument "%" must not be null', argname USING ERRCODE = 'IK400';
	END IF;
	IF octet_length(val) NOT BETWEEN 1 AND 255 THEN
		RAISE EXCEPTION 'argument "%" must be 1 to 255 bytes long', argname
			USING ERRCODE = 'IK400',
				  DETAIL = format('It is %s bytes long.', octet_length(val)),
				  HINT = 'Pass the result of idempotency.fingerprint().';
	END IF;
	RETURN val;
END
$$;

-- An interval as whole milliseconds, months counted as 30 days, as the C
-- edition counts them (extract(epoch) counts a year as 365.25 days).
CREATE FUNCTION idempotency._ms(iv interval)
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
	RETURN pg_catalog.trunc((pg_catalog.extract('epoch', iv)
						 OPERATOR(pg_catalog.-) (pg_catalog.extract('year', iv) OPERATOR(pg_catalog.*) 453600))
						OPERATOR(pg_catalog.*) 1000)::bigint;
END
$$;

-- t plus ms milliseconds, saturating at 'infinity' as the C edition does.
CREATE FUNCTION idempotency._plus_ms(t timestamptz, ms bigint)
RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
	RETURN CASE WHEN NOT pg_catalog.isfinite(t) THEN t
			WHEN ms OPERATOR(pg_catalog.>) 9000000000000
				 OR ms OPERATOR(pg_catalog./) 1000 OPERATOR(pg_catalog.>)
					(pg_catalog.extract('epoch', '294276-12-31 00:00:00+00'::timestamptz)
					 OPERATOR(pg_catalog.-) pg_catalog.extract('epoch', t))
			THEN 'infinity'::timestamptz
			ELSE t OPERATOR(pg_catalog.+) (ms OPERATOR(pg_catalog.*) '1 millisecond'::interval) END;
END
$$;

-- A wait or lease argument as milliseconds, 0 to INT_MAX.
CREATE FUNCTION idempotency._interval_arg(val interval, argname text)
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
	ms bigint;
BEGIN
	IF val IS NULL THEN
		RETURN NULL;
	END IF;
	ms := idempotency._ms(val);
	IF ms < 0 THEN
		RAISE EXCEPTION 'argument "%" must not be negative', argname USING ERRCODE = 'IK400';
	END IF;
	IF ms > 2147483647 THEN
		RAISE EXCEPTION 'argument "%" is too long', argname USING ERRCODE = 'IK400',
			DETAIL = 'The limit is 2147483647 milliseconds.';
	END IF;
	RETURN ms;
END
$$;

-- The functions that write refuse a standby and a read-only transaction.
CREATE FUNCTION idempotency._require_writable(funcname text)
RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
	IF pg_is_in_recovery() THEN
		RAISE EXCEPTION 'cannot run % on a standby', funcname USING ERRCODE = '25006',
			HINT = 'Idempotency keys are claimed on the primary, in the transaction of the charge they guard.';
	END IF;
	IF current_setting('transaction_read_only') = 'on' THEN
		RAISE EXCEPTION 'cannot execute % in a read-only transaction', funcname
			USING ERRCODE = '25006';
	END IF;
END
$$;

-- A retention shorter than the replay window is a configuration mistake (a
-- policy row that sets only ttl, longer than the settings row's retain).
-- As in the C edition it never stops payments: the retention is raised to
-- the window with a WARNING, once per session for each bad pair of
-- windows (the last pair warned of is kept in a session setting).
CREATE FUNCTION idempotency._retain_at_least_ttl(scope text, ttl_ms bigint, retain_ms bigint)
RETURNS bigint
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	pair text := pg_catalog.format('%s/%s/%s', pg_catalog.md5(scope), ttl_ms, retain_ms);
BEGIN
	IF pg_catalog.current_setting('idempotency_trusted.windows_warned', true)
	   IS DISTINCT FROM pair THEN
		PERFORM pg_catalog.set_config('idempotency_trusted.windows_warned', pair, false);
		RAISE WARNING 'retention of scope "%" is shorter than its replay window; it is raised to the replay window', scope
			USING ERRCODE = '22023',
				  DETAIL = pg_catalog.format('The retention is %s ms and the replay window %s ms, from the scope''s row in idempotency.policies and idempotency.settings.',
											 retain_ms, ttl_ms),
				  HINT = 'Set the row''s retain, or idempotency.settings.retain, to at least the replay window.';
	END IF;
	RETURN ttl_ms;
END
$$;

-- The policy of a scope: the settings row, overridden column by column by
-- the scope's policies row; without one, under enforce, enforce_percent
-- enforces the stable share of scopes the C edition enforces (the same
-- hash: hash_bytes_extended with its seed) and shadows the rest.
CREATE FUNCTION idempotency._policy(scope text,
	OUT mode text, OUT ttl_ms bigint, OUT retain_ms bigint, OUT cache_5xx boolean)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	s record;
	p record;
	h numeric;
BEGIN
	SELECT st.mode, st.enforce_percent, st.ttl, st.retain INTO s
	  FROM idempotency.settings AS st;
	mode := s.mode;
	ttl_ms := idempotency._ms(s.ttl);
	retain_ms := idempotency._ms(s.retain);
	cache_5xx := false;
	SELECT po.mode, po.ttl, po.retain, po.cache_5xx INTO p
	  FROM idempotency.policies AS po WHERE po.scope = _policy.scope;
	IF FOUND THEN
		mode := coalesce(p.mode, mode);
		ttl_ms := coalesce(idempotency._ms(p.ttl), ttl_ms);
		retain_ms := coalesce(idempotency._ms(p.retain), retain_ms);
		cache_5xx := coalesce(p.cache_5xx, cache_5xx);
	ELSIF mode = 'enforce' AND s.enforce_percent < 100 THEN
		h := hashtextextended(_policy.scope COLLATE "C", 1229214032);
		IF h < 0 THEN
			h := h + 18446744073709551616;
		END IF;
		IF h % 100 >= s.enforce_percent THEN
			mode := 'shadow';
		END IF;
	END IF;
	IF retain_ms < ttl_ms THEN
		retain_ms := idempotency._retain_at_least_ttl(_policy.scope, ttl_ms, retain_ms);
	END IF;
END
$$;

-- The per-key lock: a transaction-level advisory lock on a 64-bit hash of
-- (scope, key), taken at once or within wait_ms.
CREATE FUNCTION idempotency._key_hash(scope text, key text)
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
	RETURN pg_catalog.hashtextextended(key COLLATE "C",
		pg_catalog.hashtextextended(scope COLLATE "C", 1229212011));
END
$$;

CREATE FUNCTION idempotency._lock_key(keyhash bigint, wait_ms bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	saved text;
BEGIN
	IF pg_try_advisory_xact_lock(keyhash) THEN
		RETURN true;
	END IF;
	IF wait_ms <= 0 THEN
		RETURN false;
	END IF;
	saved := current_setting('lock_timeout');
	BEGIN
		PERFORM set_config('lock_timeout', wait_ms::text, true);
		PERFORM pg_advisory_xact_lock(keyhash);
		PERFORM set_config('lock_timeout', saved, true);
		RETURN true;
	EXCEPTION WHEN lock_not_available THEN
		RETURN false;
	END;
END
$$;

CREATE FUNCTION idempotency._raise_in_progress(scope text, key text, holder text, wait_ms bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
	RAISE EXCEPTION 'idempotency key "%" is in use by a request in progress', key
		USING ERRCODE = 'IK409',
			  DETAIL = format('%s holds key "%s" in scope "%s"; waited %s ms.', holder, key, scope, wait_ms),
			  HINT = 'Retry once the first request has finished, or claim with a wait interval.';
END
$$;

-- A row read from idempotency.keys that breaks the table's invariants
-- (which its CHECK constraints state; a DBA may have dropped them).
CREATE FUNCTION idempotency._check_row(r idempotency.keys)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
	problem text;
BEGIN
	problem := CASE
		WHEN r.state IS NULL THEN 'its state is NULL'
		WHEN r.state NOT IN ('completed', 'in_progress') THEN 'its state is neither ''completed'' nor ''in_progress'''
		WHEN r.fingerprint IS NULL THEN 'its fingerprint is NULL'
		WHEN r.state = 'completed' AND r.response_status IS NULL THEN 'it is completed without a response_status'
		WHEN r.state = 'completed' AND r.response_status NOT BETWEEN 100 AND 599 THEN 'its response_status is not an HTTP status from 100 to 599'
		WHEN r.state = 'completed' AND (r.lease_token IS NOT NULL OR r.lease_duration IS NOT NULL OR r.lease_expires_at IS NOT NULL) THEN 'it is completed but has a lease'
		WHEN r.state = 'completed' AND jsonb_typeof(r.response_headers) <> 'object' THEN 'its response_headers are not a JSON object'
		WHEN r.state = 'in_progress' AND (r.response_status IS NOT NULL OR r.response_headers IS NOT NULL OR r.response_body IS NOT NULL) THEN 'it is in progress but has a response'
		WHEN r.state = 'in_progress' AND r.lease_token IS NULL THEN 'it is in progress without a lease_token'
		WHEN r.state = 'in_progress' AND r.lease_duration IS NULL THEN 'it is in progress without a lease_duration'
		WHEN r.state = 'in_progress' AND r.lease_duration <= interval '0' THEN 'its lease_duration is not positive'
		WHEN r.state = 'in_progress' AND r.lease_expires_at IS NULL THEN 'it is in progress without a lease_expires_at'
		WHEN r.created_at IS NULL THEN 'its created_at is NULL'
		WHEN r.expires_at IS NULL THEN 'its expires_at is NULL'
		WHEN r.retain_until IS NULL THEN 'its retain_until is NULL'
		WHEN r.created_at > r.expires_at OR r.expires_at > r.retain_until THEN 'its windows are not in order (created_at <= expires_at <= retain_until)'
	END;
	IF problem IS NOT NULL THEN
		RAISE EXCEPTION 'row of idempotency key "%" in scope "%" breaks the invariants of idempotency.keys', r.key, r.scope
			USING ERRCODE = 'IK503',
				  DETAIL = format('The row is unusable: %s.', problem),
				  HINT = 'Correct or delete the row; the extension never writes such a row.';
	END IF;
END
$$;

-- What a claim makes of an existing row (claim.c's classify_row): 'gone',
-- 'mismatch', 'held', 'lapsed', 'expired' or 'replay'.  Leases run on the
-- wall clock, windows on the transaction's.
CREATE FUNCTION idempotency._classify(r idempotency.keys, fingerprint bytea)
RETURNS text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	lease_live boolean;
BEGIN
	PERFORM idempotency._check_row(r);
	lease_live := r.state = 'in_progress' AND clock_timestamp() < r.lease_expires_at;
	IF now() >= r.retain_until AND NOT lease_live THEN
		RETURN 'gone';
	ELSIF r.fingerprint <> _classify.fingerprint THEN
		RETURN 'mismatch';
	ELSIF r.state = 'in_progress' THEN
		RETURN CASE WHEN lease_live THEN 'held' ELSE 'lapsed' END;
	ELSIF now() >= r.expires_at THEN
		RETURN 'expired';
	END IF;
	RETURN 'replay';
END
$$;

-- _classify(), raising the errors an enforced claim raises.
CREATE FUNCTION idempotency._judge(r idempotency.keys, fingerprint bytea)
RETURNS text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	verdict text := idempotency._classify(r, fingerprint);
BEGIN
	IF verdict = 'mismatch' THEN
		RAISE EXCEPTION 'idempotency key "%" was used with a different request', r.key
			USING ERRCODE = 'IK422',
				  DETAIL = format('Key "%s" in scope "%s" was first used at %s for a request with another fingerprint.',
								  r.key, r.scope, r.created_at),
				  HINT = 'Use a new idempotency key for a different request.';
	ELSIF verdict = 'expired' THEN
		RAISE EXCEPTION 'idempotency key "%" has expired', r.key
			USING ERRCODE = 'IK410',
				  DETAIL = format('Key "%s" in scope "%s" was first used at %s; its replay window ended at %s and it is retained until %s.',
								  r.key, r.scope, r.created_at, r.expires_at, r.retain_until),
				  HINT = 'A retry this late is not replayed; send the request with a new idempotency key if it is meant as a new one.';
	END IF;
	RETURN verdict;
END
$$;

-- The retention a row needs for a lease that ends at lease_end: its replay
-- window past that end, and never less than it has (lease.c).
CREATE FUNCTION idempotency._retention_for_lease(created_at timestamptz, expires_at timestamptz,
	retain_until timestamptz, lease_end timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
	RETURN CASE WHEN NOT pg_catalog.isfinite(expires_at) THEN retain_until
			ELSE pg_catalog.timestamptz_larger(retain_until,
				   idempotency._plus_ms(lease_end,
					 pg_catalog.trunc(pg_catalog.extract('epoch', expires_at OPERATOR(pg_catalog.-) created_at)
									  OPERATOR(pg_catalog.*) 1000)::bigint))
	   END;
END
$$;

-- A lease token, as lease.c makes it: for a recorded claim a UUID of
-- version 7 (the time in its first 48 bits, random bits after) whose bit
-- 0x20 of byte 8 keeps the claim's 5xx rule, so that complete() applies the
-- rule the claim was made under; version 8 for one that recorded nothing
-- (off, shadow), so finishing it stays a no-op.  Tokens of version 4 are of
-- claims recorded before 0.3.0: they follow the scope's current rule.
CREATE FUNCTION idempotency._new_token(recorded boolean, cache_5xx boolean DEFAULT false)
RETURNS uuid
LANGUAGE plpgsql VOLATILE PARALLEL SAFE
AS $$
DECLARE
	b bytea;
	ms bigint;
BEGIN
	IF NOT recorded THEN
		RETURN pg_catalog.overlay(pg_catalog.gen_random_uuid()::text, '8', 15, 1)::uuid;
	END IF;
	b := pg_catalog.decode(pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', ''), 'hex');
	ms := pg_catalog.floor(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp())
						   OPERATOR(pg_catalog.*) 1000)::bigint;
	FOR i IN 0..5 LOOP
		b := pg_catalog.set_byte(b, i,
				((ms OPERATOR(pg_catalog.>>) (8 OPERATOR(pg_catalog.*) (5 OPERATOR(pg_catalog.-) i)))
				 OPERATOR(pg_catalog.&) 255::bigint)::int);
	END LOOP;
	-- version 7; the variant's bits 10, then the 5xx rule in bit 0x20
	b := pg_catalog.set_byte(b, 6,
			(pg_catalog.get_byte(b, 6) OPERATOR(pg_catalog.&) 15) OPERATOR(pg_catalog.|) 112);
	b := pg_catalog.set_byte(b, 8,
			(pg_catalog.get_byte(b, 8) OPERATOR(pg_catalog.&) 31) OPERATOR(pg_catalog.|) 128
			OPERATOR(pg_catalog.|) CASE WHEN cache_5xx THEN 32 ELSE 0 END);
	RETURN pg_catalog.encode(b, 'hex')::uuid;
END
$$;

-- The 5xx rule kept in a token of version 7, or NULL for an older token.
CREATE FUNCTION idempotency._token_cache_5xx(token uuid)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
	IF pg_catalog.substr(token::text, 15, 1) OPERATOR(pg_catalog.<>) '7' THEN
		RETURN NULL;
	END IF;
	RETURN (pg_catalog.get_byte(pg_catalog.decode(pg_catalog.substr(token::text, 20, 2), 'hex'), 0)
			OPERATOR(pg_catalog.&) 32) OPERATOR(pg_catalog.<>) 0;
END
$$;

-- Lock the row of (scope, key) for the rest of the transaction, within
-- wait_ms (-1: as long as lock_timeout allows): 'locked' with the latest
-- version in r, 'gone' if it was deleted, 'busy' if another transaction
-- holds it past the wait.
CREATE FUNCTION idempotency._lock_row_now(scope text, key text, wait_ms bigint, OUT status text, OUT r idempotency.keys)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	saved text;
BEGIN
	IF wait_ms < 0 THEN
		SELECT * INTO r FROM idempotency.keys AS k
		 WHERE k.key = _lock_row_now.key AND k.scope = _lock_row_now.scope FOR UPDATE;
		status := CASE WHEN FOUND THEN 'locked' ELSE 'gone' END;
		RETURN;
	END IF;
	SELECT * INTO r FROM idempotency.keys AS k
	 WHERE k.key = _lock_row_now.key AND k.scope = _lock_row_now.scope FOR UPDATE SKIP LOCKED;
	IF FOUND THEN
		status := 'locked';
		RETURN;
	END IF;
	IF NOT EXISTS (SELECT FROM idempotency.keys AS k
				   WHERE k.key = _lock_row_now.key AND k.scope = _lock_row_now.scope) THEN
		status := 'gone';
		RETURN;
	END IF;
	status := 'busy';
	IF wait_ms = 0 THEN
		RETURN;
	END IF;
	saved := current_setting('lock_timeout');
	BEGIN
		PERFORM set_config('lock_timeout', wait_ms::text, true);
		SELECT * INTO r FROM idempotency.keys AS k
		 WHERE k.key = _lock_row_now.key AND k.scope = _lock_row_now.scope FOR UPDATE;
		status := CASE WHEN FOUND THEN 'locked' ELSE 'gone' END;
		PERFORM set_config('lock_timeout', saved, true);
	EXCEPTION WHEN lock_not_available THEN
		status := 'busy';
	END;
END
$$;

-- _lock_row_now(); under REPEATABLE READ a row changed after the snapshot is
-- PostgreSQL's serialization failure, said as the C edition says it.
CREATE FUNCTION idempotency._lock_row(scope text, key text, wait_ms bigint, OUT status text, OUT r idempotency.keys)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	l record;
BEGIN
	IF current_setting('transaction_isolation') = 'read committed' THEN
		SELECT * INTO l FROM idempotency._lock_row_now(scope, key, wait_ms);
		status := l.status;
		r := l.r;
		RETURN;
	END IF;
	BEGIN
		SELECT * INTO l FROM idempotency._lock_row_now(scope, key, wait_ms);
		status := l.status;
		r := l.r;
	EXCEPTION WHEN serialization_failure THEN
		RAISE EXCEPTION 'could not serialize access due to a concurrent change of idempotency key "%"', key
			USING ERRCODE = '40001',
				  DETAIL = format('Another transaction changed key "%s" in scope "%s" after this transaction''s snapshot was taken.', key, scope),
				  HINT = 'Retry the transaction.';
	END;
END
$$;

CREATE FUNCTION idempotency._raise_serialization_failure(scope text, key text)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
	RAISE EXCEPTION 'could not serialize access due to a concurrent claim of idempotency key "%"', key
		USING ERRCODE = '40001',
			  DETAIL = format('Another transaction changed key "%s" in scope "%s" after this transaction''s snapshot was taken.', key, scope),
			  HINT = 'Retry the transaction; the retry replays the other request''s response.';
END
$$;

-- Under REPEATABLE READ and SERIALIZABLE the transaction's snapshot may not
-- show a row that another request committed after it was taken; the C
-- edition reads again with a fresh snapshot, which PL/pgSQL cannot.  An
-- insert does see such a row: ON CONFLICT refuses it with a serialization
-- failure.  So a claim that found no row tries the insert, in a
-- subtransaction that is always rolled back.
CREATE FUNCTION idempotency._snapshot_probe(scope text, key text)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
	BEGIN
		INSERT INTO idempotency.keys (scope, key, fingerprint, state, response_status,
									  created_at, expires_at, retain_until)
		VALUES (scope, key, '\x00', 'completed', 200, now(), now(), now())
		ON CONFLICT DO NOTHING;
		RAISE EXCEPTION USING ERRCODE = 'IKH02';
	EXCEPTION
		WHEN SQLSTATE 'IKH02' THEN
			NULL;
		WHEN serialization_failure THEN
			PERFORM idempotency._raise_serialization_failure(scope, key);
	END;
END
$$;

-- Write the row of a key this transaction holds the lock of (claim.c's
-- write_claimed_row): with replace, a row past retention is replaced once
-- locked and seen to be still past retention.
CREATE FUNCTION idempotency._write_row(w idempotency.keys, replace boolean)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	old record;
BEGIN
	IF replace THEN
		SELECT * INTO old FROM idempotency._lock_row(w.scope, w.key, -1);
		IF old.status = 'locked' THEN
			IF NOT (now() >= (old.r).retain_until
					AND ((old.r).state = 'completed' OR clock_timestamp() >= (old.r).lease_expires_at)) THEN
				RAISE EXCEPTION 'idempotency key "%" is in use by a request in progress', w.key
					USING ERRCODE = 'IK409',
						  DETAIL = format('The durable claim of key "%s" in scope "%s" was renewed by its holder after its retention had ended.', w.key, w.scope);
			END IF;
			UPDATE idempotency.keys AS k
			   SET fingerprint = w.fingerprint, state = w.state, response_status = w.response_status,
				   response_headers = w.response_headers, response_body = w.response_body,
				   recovery_point = w.recovery_point, lease_token = w.lease_token,
				   lease_duration = w.lease_duration, lease_expires_at = w.lease_expires_at,
				   created_at = w.created_at, expires_at = w.expires_at, retain_until = w.retain_until
			 WHERE k.key = w.key AND k.scope = w.scope;
			RETURN;
		END IF;
	END IF;
	-- Under REPEATABLE READ a row committed after the snapshot makes this
	-- a serialization failure (40001), which ON CONFLICT raises itself.
	INSERT INTO idempotency.keys (scope, key, fingerprint, state, response_status,
			response_headers, response_body, recovery_point, lease_token, lease_duration,
			lease_expires_at, created_at, expires_at, retain_until)
	VALUES (w.scope, w.key, w.fingerprint, w.state, w.response_status,
			w.response_headers, w.response_body, w.recovery_point, w.lease_token, w.lease_duration,
			w.lease_expires_at, w.created_at, w.expires_at, w.retain_until)
	ON CONFLICT DO NOTHING;
	IF NOT FOUND THEN
		PERFORM idempotency._raise_serialization_failure(w.scope, w.key);
	END IF;
END
$$;

-- A durable claim that nobody finished before its retention ended is a
-- payment to reconcile: say so in the server log (the C edition also
-- counts it, once the deleting transaction commits).
CREATE FUNCTION idempotency._report_abandoned(scope text, key text, recovery_point text)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
	RAISE LOG 'idempotency: abandoned durable claim of key "%" in scope "%"', key, scope
		USING DETAIL = format('Its last recovery point was %s; the payment must be reconciled.',
							  coalesce(quote_literal(recovery_point), 'never recorded'));
END
$$;

-- ---------------------------------------------------------------------------
-- Fingerprints: bit-identical to src/fingerprint.c.  The encoding "IKv1"
-- is a prefix code:
--	 "IKv1" 'm' len METHOD 'p' len path value
-- where a value is 'z' (null), 't', 'f', 's' len bytes (string), 'n' len
-- normalized-digits (number), '[' values ']', or '{' (string value)* '}'
-- in jsonb's key order; len is 4 bytes big-endian.  A top-level scalar has
-- no brackets.  jsonb already sorts keys and keeps the last duplicate; a
-- number is spelled as numeric_normalize() does (1000.0 and 1e3 as 1000).

-- The HMAC-SHA256 of pgcrypto, wherever pgcrypto is installed: the schema
-- is looked up once, here, and written into the function.
DO $install$
DECLARE
	nsp name;
BEGIN
	SELECT n.nspname INTO nsp
	  FROM pg_catalog.pg_extension AS e
	  JOIN pg_catalog.pg_namespace AS n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace
	 WHERE e.extname OPERATOR(pg_catalog.=) 'pgcrypto';
	IF nsp IS NULL THEN
		RAISE EXCEPTION 'the trusted edition of idempotency needs the pgcrypto extension'
			USING ERRCODE = '55000', HINT = 'Run CREATE EXTENSION pgcrypto first.';
	END IF;
	EXECUTE pg_catalog.format(
		'CREATE FUNCTION idempotency._hash(data bytea, secret text) RETURNS bytea '
		'LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $hash$ BEGIN '
		'IF secret OPERATOR(pg_catalog.=) '''' THEN RETURN %1$I.digest(data, ''sha256''); END IF; '
		'RETURN %1$I.hmac(data, pg_catalog.convert_to(secret, pg_catalog.getdatabaseencoding()), ''sha256''); '
		'END $hash$',
		nsp);
END
$install$;

-- tag, 4-byte big-endian length, bytes
CREATE FUNCTION idempotency._chunk(tag text, data bytea)
RETURNS bytea
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
	RETURN pg_catalog.convert_to(tag, 'SQL_ASCII') OPERATOR(pg_catalog.||)
	   pg_catalog.int4send(pg_catalog.octet_length(data)) OPERATOR(pg_catalog.||) data;
END
$$;

CREATE FUNCTION idempotency._canonical(v jsonb)
RETURNS bytea
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
	enc CONSTANT name := getdatabaseencoding();
	num text;
BEGIN
	CASE jsonb_typeof(v)
		WHEN 'object' THEN
			RETURN '\x7b'::bytea
				|| coalesce((SELECT string_agg(idempotency._chunk('s', convert_to(e.k, enc))
											   || idempotency._canonical(e.val), ''::bytea ORDER BY e.ord)
							   FROM jsonb_each(v) WITH ORDINALITY AS e(k, val, ord)), ''::bytea)
				|| '\x7d'::bytea;
		WHEN 'array' THEN
			RETURN '\x5b'::bytea
				|| coalesce((SELECT string_agg(idempotency._canonical(e.val), ''::bytea ORDER BY e.ord)
							   FROM jsonb_array_elements(v) WITH ORDINALITY AS e(val, ord)), ''::bytea)
				|| '\x5d'::bytea;
		WHEN 'string' THEN
			RETURN idempotency._chunk('s', convert_to(v #>> '{}', enc));
		WHEN 'number' THEN
			num := v #>> '{}';
			IF strpos(num, '.') > 0 THEN
				num := rtrim(rtrim(num, '0'), '.');
			END IF;
			RETURN idempotency._chunk('n', convert_to(num, 'SQL_ASCII'));
		WHEN 'boolean' THEN
			RETURN CASE WHEN v = 'true'::jsonb THEN '\x74'::bytea ELSE '\x66'::bytea END;
		ELSE
			RETURN '\x7a'::bytea;
	END CASE;
END
$$;

-- An RFC 9110 token of letters, digits and !#$%&'*+-.^_`|~, up to 32 bytes.
CREATE FUNCTION idempotency._check_method(method text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
	PERFORM idempotency._check_text(method, 'method', 32);
	IF method !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]+$' THEN
		RAISE EXCEPTION 'argument "method" is not an HTTP method token' USING ERRCODE = 'IK400',
			DETAIL = format('The character at byte offset %s is not allowed.',
							octet_length(substring(method FROM '^[A-Za-z0-9!#$%&''*+.^_`|~-]*')));
	END IF;
	RETURN method;
END
$$;

CREATE FUNCTION idempotency._fingerprint_request(method text, path text, body jsonb)
RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
BEGIN
	PERFORM idempotency._check_method(method);
	PERFORM idempotency._check_text(path, 'path', 8192);
	IF body IS NULL THEN
		RAISE EXCEPTION 'argument "body" must not be null' USING ERRCODE = 'IK400';
	END IF;
	RETURN idempotency._hash(
		'\x494b7631'::bytea
		|| idempotency._chunk('m', convert_to(upper(method COLLATE "C"), 'SQL_ASCII'))
		|| idempotency._chunk('p', convert_to(path, getdatabaseencoding()))
		|| idempotency._canonical(body),
		(SELECT s.fingerprint_secret FROM idempotency.settings AS s));
END
$$;

-- STABLE, not IMMUTABLE: the result depends on the fingerprint secret.
CREATE FUNCTION idempotency.fingerprint(method text, path text, body jsonb)
RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN idempotency._fingerprint_request(method, path, body);
END
$$;

-- A body as text is parsed here, so that malformed JSON is an IK400; the
-- parse error is caught in a subtransaction, which a parallel worker cannot
-- start: PARALLEL RESTRICTED, so it runs in the leader.
CREATE FUNCTION idempotency.fingerprint(method text, path text, body text)
RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	parsed jsonb;
	msg text;
BEGIN
	PERFORM idempotency._check_method(method);
	PERFORM idempotency._check_text(path, 'path', 8192);
	IF body IS NULL THEN
		RAISE EXCEPTION 'argument "body" must not be null' USING ERRCODE = 'IK400';
	END IF;
	BEGIN
		parsed := body::jsonb;
	EXCEPTION WHEN data_exception THEN
		GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
		RAISE EXCEPTION 'argument "body" is not valid JSON' USING ERRCODE = 'IK400', DETAIL = msg;
	END;
	RETURN idempotency._fingerprint_request(method, path, parsed);
END
$$;

CREATE FUNCTION idempotency.fingerprint(body bytea)
RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF body IS NULL THEN
		RAISE EXCEPTION 'argument "body" must not be null' USING ERRCODE = 'IK400';
	END IF;
	RETURN idempotency._hash(body, (SELECT s.fingerprint_secret FROM idempotency.settings AS s));
END
$$;

-- ---------------------------------------------------------------------------
-- Downstream keys (src/downstream.c): HMAC-SHA256 under the downstream
-- secret of "IKd1" 's' scope 'k' key 'f' fingerprint 'p' purpose, printed
-- as "ikd1_" and the first 160 bits in lower-case base32.  The derivation
-- is this one function and _downstream_digest().
CREATE FUNCTION idempotency._downstream_digest(scope text, key text, fingerprint bytea, purpose text, secret text)
RETURNS bytea
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
	RETURN idempotency._hash(
	'\x494b6431'::bytea
	OPERATOR(pg_catalog.||) idempotency._chunk('s', pg_catalog.convert_to(scope, pg_catalog.getdatabaseencoding()))
	OPERATOR(pg_catalog.||) idempotency._chunk('k', pg_catalog.convert_to(key, pg_catalog.getdatabaseencoding()))
	OPERATOR(pg_catalog.||) idempotency._chunk('f', fingerprint)
	OPERATOR(pg_catalog.||) idempotency._chunk('p', pg_catalog.convert_to(purpose, pg_catalog.getdatabaseencoding())),
	secret);
END
$$;

CREATE FUNCTION idempotency.downstream_key(scope text, key text, fingerprint bytea, purpose text)
RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	secret text;
	digest bytea;
	out text := 'ikd1_';
	v integer;
BEGIN
	PERFORM idempotency._check_text(scope, 'scope', 255);
	PERFORM idempotency._check_text(key, 'key', 255);
	PERFORM idempotency._check_fingerprint(fingerprint, 'fingerprint');
	PERFORM idempotency._check_text(purpose, 'purpose', 64);
	SELECT s.downstream_secret INTO secret FROM idempotency.settings AS s;
	IF secret = '' THEN
		RAISE EXCEPTION 'idempotency.downstream_secret is not set' USING ERRCODE = '55000',
			DETAIL = 'Downstream keys are derived under a secret of their own, which must never change.',
			HINT = 'Set it once, as the owner: UPDATE idempotency.settings SET downstream_secret = ...';
	END IF;
	digest := idempotency._downstream_digest(scope, key, fingerprint, purpose, secret);
	FOR bit IN 0 .. 155 BY 5 LOOP
		v := ((get_byte(digest, bit / 8) << 8 | get_byte(digest, bit / 8 + 1)) >> (11 - bit % 8)) & 31;
		out := out || substr('abcdefghijklmnopqrstuvwxyz234567', v + 1, 1);
	END LOOP;
	RETURN out;
END
$$;

-- ---------------------------------------------------------------------------
-- The commit guard: IK428 at COMMIT or PREPARE TRANSACTION for a claim
-- under enforce that is still open.  A deferred constraint trigger fires
-- before the transaction commits (or prepares), for every claim inserted;
-- a claim closed since has no row left.
CREATE FUNCTION idempotency._commit_guard()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NEW.mode = 'enforce' AND EXISTS (
		SELECT FROM idempotency.open_claims AS c
		 WHERE c.xact = NEW.xact AND c.key = NEW.key AND c.scope = NEW.scope) THEN
		RAISE EXCEPTION 'cannot commit with idempotency key "%" still claimed', NEW.key
			USING ERRCODE = 'IK428',
				  DETAIL = format('Key "%s" in scope "%s" was claimed in this transaction but neither completed nor released.', NEW.key, NEW.scope),
				  HINT = 'Call idempotency.complete() or idempotency.release() before the transaction ends.';
	END IF;
	RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER open_claims_commit_guard
	AFTER INSERT ON idempotency.open_claims
	DEFERRABLE INITIALLY DEFERRED
	FOR EACH ROW EXECUTE FUNCTION idempotency._commit_guard();
ALTER TABLE idempotency.open_claims ENABLE ALWAYS TRIGGER open_claims_commit_guard;

-- TRUNCATE would forget every key; refused unless the session has set
-- idempotency.allow_truncate = on and its user is a member of the owner.
CREATE FUNCTION idempotency._truncate_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF coalesce(current_setting('idempotency.allow_truncate', true), '') <> 'on'
	   OR NOT pg_has_role(session_user,
						  (SELECT c.relowner FROM pg_class AS c WHERE c.oid = TG_RELID), 'MEMBER') THEN
		RAISE EXCEPTION 'TRUNCATE of %.% is refused', TG_TABLE_SCHEMA, TG_TABLE_NAME
			USING ERRCODE = '42501',
				  DETAIL = 'It would delete every idempotency key, so every retry of a request already charged would be charged again.',
				  HINT = 'Delete rows past retention with idempotency.reap(). To truncate anyway, the owner of idempotency.keys runs SET idempotency.allow_truncate = on in the session first.';
	END IF;
	RETURN NULL;
END
$$;

CREATE TRIGGER keys_truncate_guard
	BEFORE TRUNCATE ON idempotency.keys
	FOR EACH STATEMENT EXECUTE FUNCTION idempotency._truncate_guard();
ALTER TABLE idempotency.keys ENABLE ALWAYS TRIGGER keys_truncate_guard;

-- ---------------------------------------------------------------------------
-- claim(), complete(), release(), checkpoint(), reap(): src/claim.c and
-- src/lease.c, step for step.

-- claim.c's decide(): returns 'replay', 'new' (holding the key's lock; r
-- is the row past retention to replace, if any) or 'resume' (holding the
-- key's lock and the row's).
CREATE FUNCTION idempotency._decide(scope text, key text, fingerprint bytea, keyhash bigint, wait_ms bigint,
	OUT outcome text, OUT r idempotency.keys)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	deadline CONSTANT timestamptz := clock_timestamp() + wait_ms * interval '1 millisecond';
	nap_ms integer := 1;
	locked boolean := false;
	verdict text;
	lk record;
	left_ms bigint;
BEGIN
	LOOP
		-- A completed row replays without the lock, so that replays of one
		-- key never queue behind each other.
		SELECT * INTO r FROM idempotency.keys AS k WHERE k.key = _decide.key AND k.scope = _decide.scope;
		verdict := CASE WHEN FOUND THEN idempotency._judge(r, fingerprint) ELSE 'gone' END;
		IF verdict NOT IN ('replay', 'held') AND NOT locked THEN
			left_ms := greatest(0, trunc(extract(epoch FROM deadline - clock_timestamp()) * 1000))::bigint;
			IF NOT idempotency._lock_key(keyhash, left_ms) THEN
				PERFORM idempotency._raise_in_progress(scope, key, 'Another transaction', wait_ms);
			END IF;
			locked := true;
			-- the holder we may have waited for can have committed a row
			SELECT * INTO r FROM idempotency.keys AS k WHERE k.key = _decide.key AND k.scope = _decide.scope;
			verdict := CASE WHEN FOUND THEN idempotency._judge(r, fingerprint) ELSE 'gone' END;
		END IF;

		IF verdict = 'lapsed' THEN
			-- Take over only a lease that is still lapsed once the row is
			-- locked, with the recovery point committed by then.  The lock
			-- is taken in a subtransaction, given up if the holder renewed.
			left_ms := greatest(0, trunc(extract(epoch FROM deadline - clock_timestamp()) * 1000))::bigint;
			BEGIN
				SELECT * INTO lk FROM idempotency._lock_row(scope, key, left_ms);
				IF lk.status = 'locked' THEN
					r := lk.r;
					verdict := idempotency._judge(r, fingerprint);
					IF verdict = 'held' THEN
						RAISE EXCEPTION USING ERRCODE = 'IKH01';
					END IF;
				END IF;
			EXCEPTION WHEN SQLSTATE 'IKH01' THEN
				NULL;
			END;
			IF lk.status = 'gone' THEN
				CONTINUE;
			ELSIF lk.status = 'busy' THEN
				PERFORM idempotency._raise_in_progress(scope, key, 'The durable claim''s holder', wait_ms);
			ELSIF verdict = 'lapsed' THEN
				outcome := 'resume';
				RETURN;
			END IF;
		END IF;
		IF verdict = 'gone' THEN
			outcome := 'new';
			RETURN;
		ELSIF verdict = 'replay' THEN
			outcome := 'replay';
			RETURN;
		END IF;

		-- a live lease: look again until it ends, or the wait does
		left_ms := trunc(extract(epoch FROM deadline - clock_timestamp()) * 1000)::bigint;
		IF left_ms <= 0 THEN
			PERFORM idempotency._raise_in_progress(scope, key, 'A durable claim with a live lease', wait_ms);
		END IF;
		PERFORM pg_sleep(least(left_ms, nap_ms) / 1000.0);
		nap_ms := least(nap_ms * 2, 100);
	END LOOP;
END
$$;

CREATE FUNCTION idempotency.claim(
	scope text,
	key text,
	fingerprint bytea,
	lease interval DEFAULT NULL,
	wait interval DEFAULT NULL)
RETURNS idempotency.claim_result
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	lease_ms bigint;
	wait_ms bigint;
	p_mode text;
	p_ttl interval;
	p_retain interval;
	p_cache_5xx boolean;
	p_row boolean;
	p_percent integer;
	h numeric;
	keyhash bigint;
	d record;
	pr record;
	outcome_ text;
	res idempotency.claim_result;
	w idempotency.keys;
	holds_lock boolean;
	replace boolean := false;
	setting text;
	row_ idempotency.keys;
BEGIN
	-- The arguments; the validators raise the precise IK400.
	IF scope IS NULL OR key IS NULL OR fingerprint IS NULL
	   OR octet_length(scope) NOT BETWEEN 1 AND 255 OR octet_length(key) NOT BETWEEN 1 AND 255
	   OR octet_length(fingerprint) NOT BETWEEN 1 AND 255
	   OR scope ~ '[\x01-\x1f\x7f\u0080-\u009f]' OR key ~ '[\x01-\x1f\x7f\u0080-\u009f]' THEN
		PERFORM idempotency._check_text(scope, 'scope', 255);
		PERFORM idempotency._check_text(key, 'key', 255);
		PERFORM idempotency._check_fingerprint(fingerprint, 'fingerprint');
	END IF;
	IF current_setting('transaction_read_only') = 'on' OR pg_is_in_recovery() THEN
		PERFORM idempotency._require_writable('idempotency.claim()');
	END IF;
	IF lease IS NOT NULL THEN
		lease_ms := idempotency._interval_arg(lease, 'lease');
		IF lease_ms <= 0 THEN
			RAISE EXCEPTION 'argument "lease" must be positive' USING ERRCODE = 'IK400';
		END IF;
	END IF;
	IF wait IS NOT NULL THEN
		wait_ms := idempotency._interval_arg(wait, 'wait');
	ELSE
		-- idempotency.lock_timeout, a setting any role may change as in C
		setting := nullif(current_setting('idempotency.lock_timeout', true), '');
		wait_ms := CASE WHEN setting IS NULL OR setting = '0' THEN 0
						WHEN setting ~ '^\d+$' THEN setting::bigint
						ELSE idempotency._interval_arg(setting::interval, 'idempotency.lock_timeout') END;
	END IF;

	-- The scope's policy (_policy(), inline: the hot path), and the key's
	-- row, in one statement.
	SELECT st.mode, st.ttl, st.retain, st.enforce_percent,
		   (SELECT po FROM idempotency.policies AS po WHERE po.scope = claim.scope) AS pol,
		   (SELECT k FROM idempotency.keys AS k WHERE k.key = claim.key AND k.scope = claim.scope) AS krow
	  INTO pr
	  FROM idempotency.settings AS st;
	p_row := (pr.pol).scope IS NOT NULL;
	p_mode := coalesce((pr.pol).mode, pr.mode);
	p_ttl := coalesce((pr.pol).ttl, pr.ttl);
	p_retain := coalesce((pr.pol).retain, pr.retain);
	p_cache_5xx := coalesce((pr.pol).cache_5xx, false);
	p_percent := pr.enforce_percent;
	row_ := pr.krow;
	IF NOT p_row AND p_mode = 'enforce' AND p_percent < 100 THEN
		h := hashtextextended(claim.scope COLLATE "C", 1229214032);
		IF h < 0 THEN
			h := h + 18446744073709551616;
		END IF;
		IF h % 100 >= p_percent THEN
			p_mode := 'shadow';
		END IF;
	END IF;
	IF p_retain < p_ttl THEN
		p_retain := idempotency._retain_at_least_ttl(scope, idempotency._ms(p_ttl),
													 idempotency._ms(p_retain))
					OPERATOR(pg_catalog.*) interval '1 millisecond';
	END IF;
	res.first_seen := now();

	IF p_mode = 'off' THEN
		IF lease_ms IS NULL THEN
			INSERT INTO idempotency.open_claims
			VALUES (pg_current_xact_id(), scope, key, fingerprint, now(), p_mode,
					idempotency._ms(p_ttl), idempotency._ms(p_retain), p_cache_5xx, false, false)
			ON CONFLICT ON CONSTRAINT open_claims_pkey DO NOTHING;
		ELSE
			res.lease_token := idempotency._new_token(false);
		END IF;
		res.outcome := 'new';
		RETURN res;
	END IF;

	IF p_mode = 'shadow' THEN
		-- 'new', never raising or waiting; only a claim that got the key's
		-- lock records a response, so shadowed duplicates never collide.
		holds_lock := false;
		keyhash := idempotency._key_hash(scope, key);
		SELECT * INTO row_ FROM idempotency.keys AS k WHERE k.key = claim.key AND k.scope = claim.scope;
		IF NOT FOUND OR idempotency._classify(row_, fingerprint) = 'gone' THEN
			replace := FOUND;
			holds_lock := NOT EXISTS (SELECT FROM idempotency.open_claims AS c
									  WHERE c.xact = pg_current_xact_id_if_assigned() AND c.key = claim.key AND c.scope = claim.scope)
						  AND pg_try_advisory_xact_lock(keyhash);
		END IF;
		IF lease_ms IS NULL THEN
			INSERT INTO idempotency.open_claims
			VALUES (pg_current_xact_id(), scope, key, fingerprint, now(), p_mode,
					idempotency._ms(p_ttl), idempotency._ms(p_retain), p_cache_5xx, replace, holds_lock)
			ON CONFLICT ON CONSTRAINT open_claims_pkey DO NOTHING;
		ELSE
			res.lease_token := idempotency._new_token(false);
		END IF;
		res.outcome := 'new';
		RETURN res;
	END IF;

	-- This transaction's own open claim: a duplicate of itself.
	IF pg_current_xact_id_if_assigned() IS NOT NULL AND EXISTS (
			SELECT FROM idempotency.open_claims AS c
			 WHERE c.xact = pg_current_xact_id_if_assigned() AND c.key = claim.key AND c.scope = claim.scope) THEN
		PERFORM idempotency._raise_in_progress(scope, key, 'This transaction', wait_ms);
	END IF;

	-- The two common cases first: a completed key inside its replay window
	-- replays without the lock; a key without a row whose lock is free is
	-- new.  Every other case, and every row that is not plainly good, goes
	-- through _decide(), which is claim.c's decide().
	IF row_.scope IS NOT NULL AND row_.state = 'completed' AND row_.fingerprint = fingerprint
	   AND now() < row_.expires_at
	   AND row_.response_status BETWEEN 100 AND 599 AND row_.lease_token IS NULL
	   AND row_.lease_duration IS NULL AND row_.lease_expires_at IS NULL
	   AND (row_.response_headers IS NULL OR jsonb_typeof(row_.response_headers) = 'object')
	   AND row_.created_at <= row_.expires_at AND row_.expires_at <= row_.retain_until THEN
		outcome_ := 'replay';
	ELSIF row_.scope IS NOT NULL THEN
		keyhash := idempotency._key_hash(scope, key);
		SELECT * INTO d FROM idempotency._decide(scope, key, fingerprint, keyhash, wait_ms);
		outcome_ := d.outcome;
		row_ := d.r;
	ELSE
		keyhash := idempotency._key_hash(scope, key);
		outcome_ := NULL;
		IF pg_try_advisory_xact_lock(keyhash) THEN
			-- the holder before us may have committed a row meanwhile
			SELECT * INTO row_ FROM idempotency.keys AS k WHERE k.key = claim.key AND k.scope = claim.scope;
			IF NOT FOUND THEN
				outcome_ := 'new';
			END IF;
		END IF;
		IF outcome_ IS NULL THEN
			SELECT * INTO d FROM idempotency._decide(scope, key, fingerprint, keyhash, wait_ms);
			outcome_ := d.outcome;
			row_ := d.r;
		END IF;
	END IF;
	IF outcome_ = 'replay' THEN
		res.outcome := 'replay';
		res.response_status := row_.response_status;
		res.response_headers := row_.response_headers;
		res.response_body := row_.response_body;
		res.recovery_point := row_.recovery_point;
		res.first_seen := row_.created_at;
		RETURN res;
	END IF;

	IF outcome_ = 'resume' THEN
		res.outcome := 'resume';
		res.lease_token := CASE WHEN idempotency._token_cache_5xx(row_.lease_token) IS NULL
								THEN pg_catalog.gen_random_uuid()
								ELSE idempotency._new_token(true, idempotency._token_cache_5xx(row_.lease_token)) END;
		res.recovery_point := row_.recovery_point;
		res.first_seen := row_.created_at;
		lease_ms := coalesce(lease_ms, idempotency._ms(row_.lease_duration));
		UPDATE idempotency.keys AS k
		   SET lease_token = res.lease_token,
			   lease_duration = lease_ms * interval '1 millisecond',
			   lease_expires_at = idempotency._plus_ms(clock_timestamp(), lease_ms),
			   retain_until = idempotency._retention_for_lease(k.created_at, k.expires_at, k.retain_until,
							   idempotency._plus_ms(clock_timestamp(), lease_ms))
		 WHERE k.key = claim.key AND k.scope = claim.scope;
		RETURN res;
	END IF;

	-- 'new'
	IF row_.scope IS NULL AND current_setting('transaction_isolation') <> 'read committed' THEN
		PERFORM idempotency._snapshot_probe(scope, key);
	END IF;
	IF row_.scope IS NOT NULL AND row_.state = 'in_progress' THEN
		PERFORM idempotency._report_abandoned(scope, key, row_.recovery_point);
	END IF;
	res.outcome := 'new';
	IF lease_ms IS NOT NULL THEN
		w.scope := scope;
		w.key := key;
		w.fingerprint := fingerprint;
		w.state := 'in_progress';
		w.lease_token := idempotency._new_token(true, p_cache_5xx);
		w.lease_duration := lease_ms * interval '1 millisecond';
		w.lease_expires_at := idempotency._plus_ms(clock_timestamp(), lease_ms);
		w.created_at := now();
		w.expires_at := idempotency._plus_ms(now(), idempotency._ms(p_ttl));
		w.retain_until := idempotency._retention_for_lease(w.created_at, w.expires_at,
							idempotency._plus_ms(now(), idempotency._ms(p_retain)), w.lease_expires_at);
		PERFORM idempotency._write_row(w, row_.scope IS NOT NULL);
		res.lease_token := w.lease_token;
		RETURN res;
	END IF;
	INSERT INTO idempotency.open_claims
	VALUES (pg_current_xact_id(), scope, key, fingerprint, now(), p_mode,
			idempotency._ms(p_ttl), idempotency._ms(p_retain), p_cache_5xx, row_.scope IS NOT NULL, true);
	RETURN res;
END
$$;

-- lease.c's lock_lease(): lock the durable claim the token holds.  Returns
-- false when there is nothing to do (the token's claim recorded nothing);
-- IK409 when another token holds it, IK428 when no claim is in progress.
CREATE FUNCTION idempotency._lock_lease(scope text, key text, token uuid, funcname text,
	OUT found_ boolean, OUT r idempotency.keys)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	lk record;
	holds boolean;
BEGIN
	LOOP
		SELECT * INTO r FROM idempotency.keys AS k WHERE k.key = _lock_lease.key AND k.scope = _lock_lease.scope;
		holds := FOUND AND r.state = 'in_progress' AND r.lease_token = token;
		IF NOT holds THEN
			IF r.scope IS NULL OR r.state = 'completed' THEN
				IF substr(token::text, 15, 1) = '8'
				   OR (SELECT p.mode FROM idempotency._policy(scope) AS p) <> 'enforce' THEN
					found_ := false;
					RETURN;
				END IF;
			END IF;
			EXIT;
		END IF;
		SELECT * INTO lk FROM idempotency._lock_row(scope, key, -1);
		IF lk.status = 'gone' THEN
			CONTINUE;
		END IF;
		r := lk.r;
		IF r.state = 'in_progress' AND r.lease_token = token THEN
			found_ := true;
			RETURN;
		END IF;
		EXIT;
	END LOOP;
	IF r.scope IS NOT NULL AND r.state = 'in_progress' THEN
		RAISE EXCEPTION 'lease token of idempotency key "%" is stale', key
			USING ERRCODE = 'IK409',
				  DETAIL = format('The durable claim of key "%s" in scope "%s" is held under another lease token: another request resumed it after this token''s lease lapsed, or this token never held it.', key, scope),
				  HINT = 'Stop working on this request: another worker holds it now.';
	END IF;
	RAISE EXCEPTION 'idempotency key "%" has no durable claim in progress', key
		USING ERRCODE = 'IK428',
			  DETAIL = format('%s() with a lease token needs a durable claim of key "%s" in scope "%s" in progress; it is %s.',
							  funcname, key, scope, CASE WHEN r.scope IS NOT NULL THEN 'completed' ELSE 'not claimed' END);
END
$$;

-- The open claim of (scope, key) in this transaction, or IK428.
CREATE FUNCTION idempotency._open_claim(scope text, key text, funcname text)
RETURNS idempotency.open_claims
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	c idempotency.open_claims;
BEGIN
	SELECT * INTO c FROM idempotency.open_claims AS o
	 WHERE o.xact = pg_current_xact_id_if_assigned() AND o.key = _open_claim.key AND o.scope = _open_claim.scope;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'idempotency key "%" is not claimed by this transaction', key
			USING ERRCODE = 'IK428',
				  DETAIL = format('%s() needs an open claim of key "%s" in scope "%s" from idempotency.claim() in the same transaction.', funcname, key, scope),
				  HINT = 'A durable claim, made with a lease, is closed with its lease_token.';
	END IF;
	RETURN c;
END
$$;

CREATE FUNCTION idempotency._close_claim(c idempotency.open_claims)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
	DELETE FROM idempotency.open_claims AS o
	 WHERE o.xact = c.xact AND o.key = c.key AND o.scope = c.scope;
END
$$;

CREATE FUNCTION idempotency.complete(
	scope text,
	key text,
	response_status integer,
	response_body jsonb DEFAULT NULL,
	response_headers jsonb DEFAULT NULL,
	lease_token uuid DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	c idempotency.open_claims;
	w idempotency.keys;
	l record;
	result text;
	cache_5xx boolean;
BEGIN
	IF scope IS NULL OR key IS NULL
	   OR octet_length(scope) NOT BETWEEN 1 AND 255 OR octet_length(key) NOT BETWEEN 1 AND 255
	   OR scope ~ '[\x01-\x1f\x7f\u0080-\u009f]' OR key ~ '[\x01-\x1f\x7f\u0080-\u009f]' THEN
		PERFORM idempotency._check_text(scope, 'scope', 255);
		PERFORM idempotency._check_text(key, 'key', 255);
	END IF;
	IF response_status IS NULL THEN
		RAISE EXCEPTION 'argument "response_status" must not be null' USING ERRCODE = 'IK400';
	END IF;
	IF response_status NOT BETWEEN 100 AND 599 THEN
		RAISE EXCEPTION 'argument "response_status" must be an HTTP status from 100 to 599'
			USING ERRCODE = 'IK400', DETAIL = format('It is %s.', response_status);
	END IF;
	IF response_headers IS NOT NULL AND jsonb_typeof(response_headers) <> 'object' THEN
		RAISE EXCEPTION 'argument "response_headers" must be a JSON object' USING ERRCODE = 'IK400';
	END IF;
	IF current_setting('transaction_read_only') = 'on' OR pg_is_in_recovery() THEN
		PERFORM idempotency._require_writable('idempotency.complete()');
	END IF;

	IF lease_token IS NOT NULL THEN
		-- a durable claim, in any transaction (lease.c's ik_lease_complete)
		cache_5xx := coalesce(idempotency._token_cache_5xx(lease_token),
							  (SELECT p.cache_5xx FROM idempotency._policy(scope) AS p));
		SELECT * INTO l FROM idempotency._lock_lease(scope, key, lease_token, 'complete');
		IF NOT l.found_ THEN
			RETURN 'skipped';
		END IF;
		IF response_status >= 500 AND NOT cache_5xx THEN
			IF (l.r).recovery_point IS NULL THEN
				DELETE FROM idempotency.keys AS k WHERE k.key = complete.key AND k.scope = complete.scope;
			ELSE
				-- an unknown outcome: the lease ends, the row stays for the retry to resume
				UPDATE idempotency.keys AS k
				   SET lease_expires_at = least(k.lease_expires_at, clock_timestamp()),
					   retain_until = idempotency._retention_for_lease(k.created_at, k.expires_at,
										k.retain_until, clock_timestamp())
				 WHERE k.key = complete.key AND k.scope = complete.scope;
			END IF;
			RETURN 'released';
		END IF;
		UPDATE idempotency.keys AS k
		   SET state = 'completed', response_status = complete.response_status,
			   response_body = complete.response_body, response_headers = complete.response_headers,
			   lease_token = NULL, lease_duration = NULL, lease_expires_at = NULL
		 WHERE k.key = complete.key AND k.scope = complete.scope;
		RETURN 'stored';
	END IF;

	-- the open claim, closed at once: an error below rolls the close back too
	DELETE FROM idempotency.open_claims AS o
	 WHERE o.xact = pg_current_xact_id_if_assigned() AND o.key = complete.key AND o.scope = complete.scope
	RETURNING * INTO c;
	IF NOT FOUND THEN
		PERFORM idempotency._open_claim(scope, key, 'complete');	-- raises IK428
	END IF;
	IF c.mode = 'off' THEN
		result := 'skipped';
	ELSIF response_status >= 500 AND NOT c.cache_5xx THEN
		result := 'released';
	ELSE
		result := 'stored';
		IF c.mode <> 'shadow' OR c.holds_lock THEN
			w.scope := c.scope;
			w.key := c.key;
			w.fingerprint := c.fingerprint;
			w.state := 'completed';
			w.response_status := response_status;
			w.response_headers := response_headers;
			w.response_body := response_body;
			w.created_at := c.created_at;
			w.expires_at := idempotency._plus_ms(c.created_at, c.ttl_ms);
			w.retain_until := idempotency._plus_ms(c.created_at, c.retain_ms);
			PERFORM idempotency._write_row(w, c.replace);
		END IF;
	END IF;
	RETURN result;
END
$$;

CREATE FUNCTION idempotency.release(
	scope text,
	key text,
	lease_token uuid DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	l record;
BEGIN
	PERFORM idempotency._check_text(scope, 'scope', 255);
	PERFORM idempotency._check_text(key, 'key', 255);
	PERFORM idempotency._require_writable('idempotency.release()');
	IF lease_token IS NULL THEN
		PERFORM idempotency._close_claim(idempotency._open_claim(scope, key, 'release'));
		RETURN;
	END IF;
	SELECT * INTO l FROM idempotency._lock_lease(scope, key, lease_token, 'release');
	IF l.found_ THEN
		DELETE FROM idempotency.keys AS k WHERE k.key = release.key AND k.scope = release.scope;
	END IF;
END
$$;

CREATE FUNCTION idempotency.checkpoint(
	scope text,
	key text,
	recovery_point text,
	lease_token uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	l record;
BEGIN
	PERFORM idempotency._check_text(scope, 'scope', 255);
	PERFORM idempotency._check_text(key, 'key', 255);
	PERFORM idempotency._check_text(recovery_point, 'recovery_point', 1024);
	IF lease_token IS NULL THEN
		RAISE EXCEPTION 'argument "lease_token" must not be null' USING ERRCODE = 'IK400';
	END IF;
	PERFORM idempotency._require_writable('idempotency.checkpoint()');
	SELECT * INTO l FROM idempotency._lock_lease(scope, key, lease_token, 'checkpoint');
	IF l.found_ THEN
		UPDATE idempotency.keys AS k
		   SET recovery_point = checkpoint.recovery_point,
			   lease_expires_at = idempotency._plus_ms(clock_timestamp(), idempotency._ms(k.lease_duration)),
			   retain_until = idempotency._retention_for_lease(k.created_at, k.expires_at, k.retain_until,
								idempotency._plus_ms(clock_timestamp(), idempotency._ms(k.lease_duration)))
		 WHERE k.key = checkpoint.key AND k.scope = checkpoint.scope;
	END IF;
END
$$;

-- Deletes up to max_rows rows past retention that no live lease holds,
-- oldest first, skipping rows another transaction holds, in the caller's
-- transaction; schedule it with pg_cron (README.md).
CREATE FUNCTION idempotency.reap(max_rows integer DEFAULT 10000)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
	a record;
BEGIN
	PERFORM idempotency._require_writable('idempotency.reap()');
	IF max_rows IS NULL THEN
		RAISE EXCEPTION 'argument "max_rows" must not be null' USING ERRCODE = 'IK400';
	END IF;
	IF max_rows < 1 THEN
		RAISE EXCEPTION 'argument "max_rows" must be positive' USING ERRCODE = 'IK400',
			DETAIL = format('It is %s.', max_rows);
	END IF;
	n := 0;
	FOR a IN
		DELETE FROM idempotency.keys AS k
		 WHERE (k.key, k.scope) IN (
				SELECT d.key, d.scope FROM idempotency.keys AS d
				 WHERE d.retain_until <= now()
				   AND (d.state = 'completed' OR d.lease_expires_at <= clock_timestamp())
				 ORDER BY d.retain_until
				 LIMIT max_rows
				   FOR UPDATE SKIP LOCKED)
		RETURNING k.scope, k.key, k.state, k.recovery_point
	LOOP
		n := n + 1;
		IF a.state = 'in_progress' THEN
			PERFORM idempotency._report_abandoned(a.scope, a.key, a.recovery_point);
		END IF;
	END LOOP;
	RETURN n;
END
$$;

-- Nothing is granted to PUBLIC; README.md shows the grants for an
-- application role (EXECUTE on the public functions, USAGE on the schema).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA idempotency FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA idempotency FROM PUBLIC;

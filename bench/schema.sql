-- The payment table every benchmark case writes: one row per charge.
-- There is deliberately no unique constraint on (scope, idem_key): the
-- double-charge runs count charges per key, so a design that charges twice
-- shows it here instead of failing on a constraint it would not have in
-- production either.
CREATE SCHEMA bench;

CREATE TABLE bench.charges (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	scope text NOT NULL,
	idem_key text NOT NULL,
	amount bigint NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);

-- The raw case (issue 12): the least storage work any per-request key
-- design must do, in plain SQL and with no safety at all (no lock, no
-- fingerprint check, no expiry, no commit guard): a keys table with the
-- same primary key as idempotency.keys -- (key, scope), both text COLLATE
-- "C" -- and the columns a stored response needs, no other index and no
-- constraint.  bench/pgbench/raw-*.sql probe it with a SELECT, insert the
-- charge and then the key row with its response, in one transaction.
CREATE SCHEMA raw;

CREATE TABLE raw.keys (
	scope			text		COLLATE "C" NOT NULL,
	key				text		COLLATE "C" NOT NULL,
	fingerprint		bytea		NOT NULL,
	response_status	integer,
	response_body	jsonb,
	PRIMARY KEY (key, scope)
);

-- raw-expiry: raw plus the one structure any design that expires its keys
-- needs to find them, a retention time and an index on it
-- (idempotency.keys has retain_until and keys_retain_until_idx for its
-- reaper); the same statements otherwise (bench/pgbench/raw-expiry-*.sql).
-- ext-new over raw-expiry is what the extension's safety costs beyond
-- expiring keys at all.
CREATE SCHEMA raw_expiry;

CREATE TABLE raw_expiry.keys (
	scope			text		COLLATE "C" NOT NULL,
	key				text		COLLATE "C" NOT NULL,
	fingerprint		bytea		NOT NULL,
	response_status	integer,
	response_body	jsonb,
	retain_until	timestamptz	NOT NULL DEFAULT now() + interval '7 days',
	PRIMARY KEY (key, scope)
);
CREATE INDEX ON raw_expiry.keys (retain_until);

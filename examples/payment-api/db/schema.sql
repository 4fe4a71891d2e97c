-- The payment API's own tables, next to the idempotency extension's, in one
-- database: a charge and its Idempotency-Key commit or vanish together.
-- Run as a superuser on an empty database (harness/database.js does it).
-- The service connects as payments_app, which may call the extension's
-- functions but has no privilege on its tables: it cannot forge a key.
-- Create that role first (README: Deploying from an empty server).

DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'payments_app') THEN
		RAISE EXCEPTION 'the role payments_app does not exist'
			USING DETAIL = 'db/schema.sql grants the service''s privileges to it.',
				  HINT = 'Create it first: CREATE ROLE payments_app LOGIN PASSWORD ''...''.';
	END IF;
END
$$;

CREATE EXTENSION IF NOT EXISTS idempotency CASCADE;

-- Merchants and their secret API keys.  Only the keys' SHA-256 is kept, so a
-- copy of this table does not let anyone call the API.
-- require_idempotency_key: whether a POST without an Idempotency-Key is
-- refused with 400 (the IETF draft's rule); NULL follows the service's
-- REQUIRE_IDEMPOTENCY_KEY, which is off by default, as with Stripe.
CREATE TABLE merchants (
	id		text PRIMARY KEY CHECK (id ~ '^acct_[A-Za-z0-9]{1,32}$'),
	name	text NOT NULL,
	require_idempotency_key	boolean
);

CREATE TABLE api_keys (
	key_sha256	bytea PRIMARY KEY CHECK (octet_length(key_sha256) = 32),
	merchant_id	text NOT NULL REFERENCES merchants,
	created_at	timestamptz NOT NULL DEFAULT now()
);

-- One row per charge.  A charge that calls the processor goes
-- pending -> authorized -> captured (or pending -> failed when declined);
-- a charge made with capture=false stays authorized until captured.
-- idempotency_key is the client's key (NULL without one).  There is
-- deliberately no UNIQUE (merchant_id, idempotency_key): the extension is
-- what keeps one charge per key, and the chaos test checks that it does.
-- A production schema would add the constraint as a second line of defence.
CREATE TABLE charges (
	id						text PRIMARY KEY,
	merchant_id				text NOT NULL REFERENCES merchants,
	idempotency_key			text,
	amount					integer NOT NULL CHECK (amount BETWEEN 50 AND 99999999),
	currency				text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
	source					text,
	customer				text,
	description				text,
	metadata				jsonb NOT NULL DEFAULT '{}',
	capture					boolean NOT NULL,
	state					text NOT NULL
		CHECK (state IN ('pending', 'authorized', 'captured', 'failed')),
	processor_authorization	text,
	failure_code			text,
	failure_message			text,
	amount_captured			integer NOT NULL DEFAULT 0,
	amount_refunded			integer NOT NULL DEFAULT 0,
	created_at				timestamptz NOT NULL DEFAULT now(),
	CHECK ((source IS NULL) <> (customer IS NULL)),
	CHECK (amount_captured = CASE state WHEN 'captured' THEN amount ELSE 0 END),
	-- Refunds never exceed what was captured (kept by refunds_sum below).
	CHECK (amount_refunded BETWEEN 0 AND amount_captured),
	CHECK ((state IN ('authorized', 'captured')) = (processor_authorization IS NOT NULL))
);
CREATE INDEX charges_idempotency_key_idx ON charges (merchant_id, idempotency_key);

-- A refund reserves its amount from the moment it is requested (pending)
-- until the processor confirms it (succeeded), so that two refunds of one
-- charge can never together exceed it, whatever the processor answers.
CREATE TABLE refunds (
	id					text PRIMARY KEY,
	merchant_id			text NOT NULL REFERENCES merchants,
	charge_id			text NOT NULL REFERENCES charges,
	idempotency_key		text,
	amount				integer NOT NULL CHECK (amount > 0),
	metadata			jsonb NOT NULL DEFAULT '{}',
	state				text NOT NULL CHECK (state IN ('pending', 'succeeded')),
	processor_refund	text,
	created_at			timestamptz NOT NULL DEFAULT now(),
	CHECK ((state = 'succeeded') = (processor_refund IS NOT NULL))
);
CREATE INDEX refunds_charge_idx ON refunds (charge_id);
CREATE INDEX refunds_idempotency_key_idx ON refunds (merchant_id, idempotency_key);

-- charges.amount_refunded is the sum of the charge's refunds, maintained
-- here rather than by the application, so that the CHECK above holds for
-- every writer.  The UPDATE locks the charge's row, which serialises
-- concurrent refunds of one charge.
CREATE FUNCTION refunds_sum() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP IN ('UPDATE', 'DELETE') THEN
		UPDATE charges SET amount_refunded = amount_refunded - OLD.amount
		 WHERE id = OLD.charge_id;
	END IF;
	IF TG_OP IN ('INSERT', 'UPDATE') THEN
		UPDATE charges SET amount_refunded = amount_refunded + NEW.amount
		 WHERE id = NEW.charge_id;
	END IF;
	RETURN NULL;
END
$$;
CREATE TRIGGER refunds_sum AFTER INSERT OR DELETE OR UPDATE OF amount, charge_id ON refunds
	FOR EACH ROW EXECUTE FUNCTION refunds_sum();

-- The service's role: its own tables, and the extension's functions as the
-- README's "Granting an application role" says.
GRANT SELECT ON merchants, api_keys TO payments_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON charges, refunds TO payments_app;
GRANT USAGE ON SCHEMA idempotency TO payments_app;
-- The windows of each merchant's policy row, which GET /v1/idempotency publishes.
GRANT SELECT (scope, ttl, retain) ON idempotency.policies TO payments_app;
GRANT EXECUTE ON FUNCTION
	idempotency.claim(text, text, bytea, interval, interval),
	idempotency.complete(text, text, integer, jsonb, jsonb, uuid),
	idempotency.release(text, text, uuid),
	idempotency.checkpoint(text, text, text, uuid),
	idempotency.fingerprint(text, text, jsonb),
	idempotency.downstream_key(text, text, bytea, text)
  TO payments_app;

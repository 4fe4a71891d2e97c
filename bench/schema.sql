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

/*-------------------------------------------------------------------------
 *
 * op_fingerprint_equal.c
 *	  Operation fingerprint_equal: bodies equal as jsonb fingerprint equal.
 *
 * A body and a copy of it (mutated about one time in three) are written
 * in random styles (json.c), the copy under a recased method.  Their
 * fingerprints must be equal exactly when the two texts are equal as
 * jsonb, fingerprint(m, p, text) must equal fingerprint(m, p, jsonb), and
 * each must equal the one json.c computes, under the secret session.c may
 * have set.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "ikfuzz.h"

void
op_fingerprint_equal(void)
{
	J		   *ta = gen_body();
	J		   *tb;
	Style		sb = {chance(60), chance(70), chance(40), chance(60), chance(50)};
	Style		sa = {chance(20), false, false, chance(20), chance(20)};
	bool		mutated = chance(35);
	Text		m = gen_method(0),
				p = gen_path(0);
	char	   *m2 = recase(&m);
	char	   *a,
			   *b;
	Res			r;
	Arg			args[5];
	uint8_t		fa[32],
				fb[32];
	const char *eq,
			   *f0,
			   *f1,
			   *f2;

	tb = jcopy(ta);
	if (mutated)
		jmutate(tb);
	a = json_text(ta, chance(70) ? &plain_style : &sa);
	b = json_text(tb, &sb);

	begin(&A, "READ COMMITTED");
	maybe_secret();
	args[0] = T(a);
	args[1] = T(b);
	r = run(&A, "SELECT $1::jsonb = $2::jsonb", 2, args);
	EXPECT(&r, "two generated JSON texts must parse as jsonb (else the fuzzer is wrong)", "ok");
	eq = val(&r, 0, 0);
	if (!mutated)
		check(eq && strcmp(eq, "t") == 0, &r,
			  "re-serializing a body changed its jsonb value: the fuzzer's generator is wrong");

	args[0] = T(m.s);
	args[1] = T(p.s);
	args[2] = T(a);
	args[3] = T(m2);
	args[4] = T(b);
	r = run(&A, "SELECT idempotency.fingerprint($1::text, $2::text, $3::jsonb),"
			" idempotency.fingerprint($4::text, $2::text, $5::jsonb),"
			" idempotency.fingerprint($1::text, $2::text, $3::text)", 5, args);
	EXPECT(&r, "fingerprints of valid JSON bodies", "ok");
	f0 = val(&r, 0, 0);
	f1 = val(&r, 0, 1);
	f2 = val(&r, 0, 2);
	check(f0 && f1 && f2, &r, "a fingerprint is NULL");
	check(strcmp(f0, f2) == 0, &r,
		  "fingerprint(m, p, body::text) differs from fingerprint(m, p, body::jsonb)");
	check((strcmp(f0, f1) == 0) == (strcmp(eq, "t") == 0), &r,
		  "bodies that are %s as jsonb have %s fingerprints (method %s vs %s)",
		  strcmp(eq, "t") == 0 ? "equal" : "different",
		  strcmp(f0, f1) == 0 ? "equal" : "different", m.s, m2);
	expected_fingerprint(secret, &m, &p, ta, fa);
	check(bytea_equals(f0, fa, 32), &r,
		  "fingerprint of body a is not the documented encoding (expected %s%s)",
		  hex_of(fa, 32), secret ? " under the secret" : "");
	expected_fingerprint(secret, &m, &p, tb, fb);
	check(bytea_equals(f1, fb, 32), &r,
		  "fingerprint of body b is not the documented encoding (expected %s)", hex_of(fb, 32));
	r = finish(&A, chance(50));
	EXPECT(&r, "end of a read-only transaction", "ok");
}

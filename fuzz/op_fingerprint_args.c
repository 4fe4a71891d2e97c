/*-------------------------------------------------------------------------
 *
 * op_fingerprint_args.c
 *	  Operation fingerprint_args: fingerprint's arguments, and its text
 *	  parser against jsonb's.
 *
 * fingerprint() gets random methods and paths, some of them bad, and body
 * texts corrupted in one of sixteen ways (corrupt_json()): a bad method
 * or path must raise IK400, and fingerprint(m, p, text) must raise IK400
 * exactly when PostgreSQL's jsonb parser refuses the text.
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>

#include "ikfuzz.h"

static char *
corrupt_json(const char *good, int *kind)
{
	Buf			b = {0};
	size_t		n = strlen(good);
	char	   *r;

	*kind = (int) rnd(16);
	switch (*kind)
	{
		case 0:
			buf_add(&b, good, n > 1 ? rnd((uint32_t) n) : 0);	/* truncated */
			break;
		case 1:
			{
				size_t		at = rnd((uint32_t) n + 1);

				buf_add(&b, good, at);
				buf_putc(&b, ",:{}[]\"x\\'"[rnd(10)]);
				buf_add(&b, good + at, n - at);
				break;
			}
		case 2:
			buf_puts(&b, "[\"\\ud800\"]");	/* lone high surrogate */
			break;
		case 3:
			buf_puts(&b, "{\"a\": \"\\udc00x\"}");	/* lone low surrogate */
			break;
		case 4:
			buf_puts(&b, "{\"a\": \"\\u0000\"}");
			break;
		case 5:
			{
				static const char *const bad[] = {"NaN", "Infinity", "-Infinity", "+1", "01", ".5",
				"1.", "1e", "1e+", "--1", "0x10", "1_000", "tru", "nul", "'a'", "[1,]", "{\"a\":1,}",
				"{a:1}", "[1 2]", "\"\\x41\"", "\"\\u12\"", "\"\\q\"", "", "  ", "\xef\xbb\xbf{}",
				"{\"a\"}", "[", "]", "1 2", "\"abc", "{\"a\":1}}"};

				buf_puts(&b, bad[rnd(sizeof(bad) / sizeof(*bad))]);
				break;
			}
		case 6:
			buf_puts(&b, chance(50) ? "[1e131072]" : "[1e-16384]");	/* out of numeric's range */
			break;
		case 7:
			buf_puts(&b, "[\"a\x01b\"]");	/* raw control character */
			break;
		case 8:
			{
				/* nested far deeper than the stack allows */
				int			d = (int) rnd_range(100000, 300000);

				for (int i = 0; i < d; i++)
					buf_putc(&b, '[');
				for (int i = 0; i < d; i++)
					buf_putc(&b, ']');
				break;
			}
		case 9:
			buf_add(&b, good, n);
			buf_puts(&b, chance(50) ? " x" : ",1");	/* trailing garbage */
			break;
		default:
			buf_add(&b, good, n);	/* not corrupted at all */
			break;
	}
	r = abuf(&b);
	free(b.data);
	return r;
}

void
op_fingerprint_args(void)
{
	Text		m = gen_method(15),
				p = gen_path(15);
	J		   *body = gen_body();
	int			kind;
	char	   *bodytext = corrupt_json(json_text(body, &plain_style), &kind);
	Validity	mv = m.v,
				pv = p.v;
	Arg			args[3];
	Res			r;
	bool		body_null = chance(5);
	const char *json_state = NULL;	/* NULL: the text is JSON */
	Res			cast;

	begin(&A, "READ COMMITTED");
	maybe_secret();

	/* What PostgreSQL's jsonb parser says of the text (in a savepoint). */
	if (!body_null)
	{
		run0(&A, "SAVEPOINT p");
		args[0] = T(bodytext);
		cast = run(&A, "SELECT $1::jsonb IS NOT NULL", 1, args);
		if (!cast.ok)
		{
			json_state = astrdup(cast.st, 5);
			check(strncmp(cast.st, "22", 2) == 0 || strcmp(cast.st, "54001") == 0, &cast,
				  "jsonb's parser failed with an unexpected SQLSTATE");
			A.failed = false;
		}
		r = run0(&A, "ROLLBACK TO SAVEPOINT p");
		EXPECT(&r, "ROLLBACK TO SAVEPOINT", "ok");
	}

	/* fingerprint(method, path, body text) */
	args[0] = T(m.s);
	args[1] = T(p.s);
	args[2] = T(body_null ? NULL : bodytext);
	run0(&A, "SAVEPOINT f");
	r = run(&A, "SELECT idempotency.fingerprint($1::text, $2::text, $3::text)", 3, args);
	if (mv == V_ENCODING || pv == V_ENCODING ||
		(!body_null && !utf8_valid((const unsigned char *) bodytext, strlen(bodytext))))
		EXPECT(&r, "text that is not UTF-8 is refused before the call", "22021");
	else if (mv == V_BAD || pv == V_BAD || body_null)
		EXPECT(&r, "fingerprint() with a bad method, path or body", "IK400");
	else if (json_state && strcmp(json_state, "54001") == 0)
		EXPECT(&r, "a body nested deeper than the stack allows", "54001", "IK400");
	else if (json_state)
		EXPECT(&r, "fingerprint(m, p, text) of text that is not JSON (jsonb says so)", "IK400");
	else
	{
		EXPECT(&r, "fingerprint(m, p, text) of text that is JSON", "ok");
		check(val(&r, 0, 0) && strlen(val(&r, 0, 0)) == 2 + 64, &r,
			  "a fingerprint is not 32 bytes");
	}
	if (!r.ok)
		A.failed = false;
	run0(&A, "ROLLBACK TO SAVEPOINT f");

	/* fingerprint(bytea) is SHA-256 or HMAC-SHA256 of the bytes */
	{
		Bytes		raw = gen_fp_arg(0);
		uint8_t		want[32];
		bool		null_arg = chance(10);

		if (chance(30))
		{
			raw.p = bodytext;
			raw.len = (int) strlen(bodytext);
		}
		args[0] = null_arg ? NUL : barg(&raw);
		r = run(&A, "SELECT idempotency.fingerprint($1::bytea)", 1, args);
		if (null_arg)
			EXPECT(&r, "fingerprint(NULL::bytea)", "IK400");
		else
		{
			EXPECT(&r, "fingerprint(bytea)", "ok");
			digest(secret, raw.p, raw.len, want);
			check(bytea_equals(val(&r, 0, 0), want, 32), &r,
				  "fingerprint(bytea) is not %s of the bytes (expected %s)",
				  secret ? "HMAC-SHA256" : "SHA-256", hex_of(want, 32));
		}
	}
	if (A.failed)
		rollback(&A);
	else
	{
		r = finish(&A, true);
		EXPECT(&r, "COMMIT", "ok");
	}
}

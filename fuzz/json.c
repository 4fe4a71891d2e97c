/*-------------------------------------------------------------------------
 *
 * json.c
 *	  JSON values as trees, rendered many ways; the fingerprint oracle.
 *
 * Bodies are generated as trees (deep nesting, wide objects, long strings,
 * 1e-300 / 1e300 / -0 / 0.000, unicode escapes and surrogate pairs,
 * duplicate keys), then written out in a Style: shuffled keys, white
 * space, earlier duplicates of keys, respelled numbers (1 -> 1.0 ->
 * 10e-1) and re-escaped strings, all of which jsonb reads as the same
 * value; jmutate() makes a value that is not.  expected_fingerprint()
 * computes, independently of the server, the SHA-256 (or HMAC-SHA256 under
 * a secret) of the canonical encoding README.md documents.
 *
 *-------------------------------------------------------------------------
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ikfuzz.h"

int			jbudget;			/* nodes left in the value being made */

static uint32_t
gen_cp(void)
{
	static const uint32_t special[] = {
		0xFEFF, 0xFFFD, 0xFFFE, 0xFFFF, 0x10FFFF, 0x2028, 0x2029, 0x0301, 0xE000, 0x1F511, 0x10000
	};

	switch (rnd(14))
	{
		case 0:
		case 1:
		case 2:
		case 3:
		case 4:
			return (uint32_t) rnd_range(0x20, 0x7E);
		case 5:
			return (uint32_t) rnd_range(0x01, 0x1F);
		case 6:
			return "\"\\/\x7f"[rnd(4)];
		case 7:
			return (uint32_t) rnd_range(0x80, 0xFF);
		case 8:
			return (uint32_t) rnd_range(0x100, 0xD7FF);
		case 9:
			return (uint32_t) rnd_range(0xE000, 0xFFFF);
		case 10:
			return (uint32_t) rnd_range(0x10000, 0x10FFFF);
		case 11:
			return special[rnd(sizeof(special) / sizeof(*special))];
		default:
			return "abcxyz"[rnd(6)];
	}
}

J *
jnew(int k)
{
	J		   *j = amalloc(sizeof(J));

	j->k = k;
	jbudget--;
	return j;
}

J *
gen_str_node(int maxlen)
{
	J		   *j = jnew(J_STR);

	j->ncp = (int) rnd_range(0, maxlen);
	j->cp = amalloc(sizeof(uint32_t) * (j->ncp + 1));
	for (int i = 0; i < j->ncp; i++)
		j->cp[i] = gen_cp();
	return j;
}

/* digits: first and last non-zero */
static char *
gen_digits(int n)
{
	char	   *d = amalloc(n + 1);

	for (int i = 0; i < n; i++)
		d[i] = (char) ('0' + ((i == 0 || i == n - 1) ? rnd_range(1, 9) : rnd(10)));
	return d;
}

static J *
gen_num(void)
{
	J		   *j = jnew(J_NUM);

	j->neg = chance(30);
	switch (rnd(10))
	{
		case 0:
			j->dig = astrdup("", 0);	/* zero, -0 included */
			break;
		case 1:
			{
				/* a small integer */
				int64_t		v = rnd_range(1, 100000);
				char		buf[32];
				int			n = snprintf(buf, sizeof(buf), "%" PRId64, v);

				j->e = n;
				while (n > 0 && buf[n - 1] == '0')
					n--;
				j->dig = astrdup(buf, n);
				break;
			}
		case 2:
			{
				/* 1e-300, 1e300 and friends */
				static const int exps[] = {-299, 301, -307, 309, -323, 310, -999, 1001, -16382, 1};

				j->dig = astrdup("1", 1);
				j->e = exps[rnd(sizeof(exps) / sizeof(*exps))];
				break;
			}
		case 3:
			j->dig = gen_digits((int) rnd_range(20, 60));
			j->e = (int) rnd_range(-5, 25);
			break;
		case 4:
			j->dig = gen_digits((int) rnd_range(1, 20));
			j->e = (int) rnd_range(-400, 400);
			break;
		default:
			j->dig = gen_digits((int) rnd_range(1, 6));
			j->e = (int) rnd_range(-3, 6);
			break;
	}
	return j;
}

static bool
same_cps(const J *a, const J *b)
{
	return a->ncp == b->ncp && memcmp(a->cp, b->cp, sizeof(uint32_t) * a->ncp) == 0;
}

static J *
gen_scalar(void)
{
	switch (rnd(8))
	{
		case 0:
			return jnew(J_NULL);
		case 1:
			return jnew(J_TRUE);
		case 2:
			return jnew(J_FALSE);
		case 3:
		case 4:
		case 5:
			return gen_num();
		default:
			return gen_str_node(12);
	}
}

void
obj_add(J *o, J *key, J *v)
{
	for (int i = 0; i < o->n; i++)
		if (same_cps(o->key[i], key))
			return;				/* keep keys unique */
	o->key[o->n] = key;
	o->v[o->n] = v;
	o->n++;
}

static J *
gen_container(int depth, int width)
{
	J		   *j = jnew(chance(50) ? J_ARR : J_OBJ);

	j->v = amalloc(sizeof(J *) * (width + 1));
	j->key = amalloc(sizeof(J *) * (width + 1));
	for (int i = 0; i < width; i++)
	{
		J		   *v = (jbudget > 0 && depth > 0) ? gen_json(depth - 1) : gen_scalar();

		if (j->k == J_ARR)
			j->v[j->n++] = v;
		else
			obj_add(j, gen_str_node(chance(80) ? 6 : 20), v);
	}
	return j;
}

J *
gen_json(int depth)
{
	if (depth <= 0 || jbudget <= 0 || chance(45))
		return gen_scalar();
	return gen_container(depth, (int) rnd_range(0, 5));
}

/* A body to fingerprint or store: usually small, sometimes extreme. */
J *
gen_body(void)
{
	int			r = rnd(100);

	jbudget = 200;
	if (r < 5)
		return gen_scalar();
	if (r < 8)
	{
		/* deep nesting, under PostgreSQL's stack limit */
		int			depth = (int) rnd_range(50, 3000);
		J		   *root = NULL,
				   *cur = NULL;

		for (int i = 0; i < depth; i++)
		{
			J		   *c = jnew(chance(50) ? J_ARR : J_OBJ);

			c->v = amalloc(sizeof(J *) * 2);
			c->key = amalloc(sizeof(J *) * 2);
			if (cur == NULL)
				root = c;
			else if (cur->k == J_ARR)
				cur->v[cur->n++] = c;
			else
				obj_add(cur, gen_str_node(3), c);
			cur = c;
		}
		if (cur->k == J_ARR)
			cur->v[cur->n++] = gen_scalar();
		else
			obj_add(cur, gen_str_node(3), gen_scalar());
		return root;
	}
	if (r < 10)
	{
		/* wide */
		jbudget = 5000;
		return gen_container(1, (int) rnd_range(100, 1500));
	}
	if (r < 12)
	{
		/* a long string */
		J		   *o = jnew(J_OBJ);
		J		   *s = gen_str_node(0);

		s->ncp = (int) rnd_range(1000, 60000);
		s->cp = amalloc(sizeof(uint32_t) * s->ncp);
		for (int i = 0; i < s->ncp; i++)
			s->cp[i] = gen_cp();
		o->v = amalloc(sizeof(J *) * 2);
		o->key = amalloc(sizeof(J *) * 2);
		obj_add(o, gen_str_node(4), s);
		return o;
	}
	return gen_container(6, (int) rnd_range(0, 6));
}

J *
jcopy(const J *j)
{
	J		   *c = amalloc(sizeof(J));

	*c = *j;
	if (j->k == J_STR)
	{
		c->cp = amalloc(sizeof(uint32_t) * (j->ncp + 1));
		memcpy(c->cp, j->cp, sizeof(uint32_t) * j->ncp);
	}
	if (j->k == J_NUM)
		c->dig = astrdup(j->dig, strlen(j->dig));
	if (j->k == J_ARR || j->k == J_OBJ)
	{
		c->v = amalloc(sizeof(J *) * (j->n + 2));
		c->key = amalloc(sizeof(J *) * (j->n + 2));
		for (int i = 0; i < j->n; i++)
		{
			c->v[i] = jcopy(j->v[i]);
			if (j->k == J_OBJ)
				c->key[i] = jcopy(j->key[i]);
		}
	}
	return c;
}

/* Change one value somewhere in the tree (possibly to an equal one). */
void
jmutate(J *j)
{
	while ((j->k == J_ARR || j->k == J_OBJ) && j->n > 0 && chance(70))
		j = j->v[rnd(j->n)];
	switch (j->k)
	{
		case J_NUM:
			/* near 1e-16383 a longer or smaller number leaves numeric's range */
			switch (j->e < -15000 ? 2 : rnd(3))
			{
				case 0:
					{
						size_t		n = strlen(j->dig);
						char	   *d = amalloc(n + 2);

						memcpy(d, j->dig, n);
						d[n] = (char) ('1' + rnd(9));
						j->dig = d;
						if (n == 0)
							j->e = 0;
						break;
					}
				case 1:
					j->e += chance(50) ? 1 : -1;
					break;
				default:
					j->neg = !j->neg;
					break;
			}
			break;
		case J_STR:
			if (j->ncp > 0 && chance(50))
				j->cp[rnd(j->ncp)] = gen_cp();
			else
			{
				uint32_t   *cp = amalloc(sizeof(uint32_t) * (j->ncp + 1));

				memcpy(cp, j->cp, sizeof(uint32_t) * j->ncp);
				cp[j->ncp++] = gen_cp();
				j->cp = cp;
			}
			break;
		case J_NULL:
		case J_TRUE:
		case J_FALSE:
			j->k = (j->k == J_NULL) ? J_FALSE : (j->k == J_TRUE ? J_FALSE : J_TRUE);
			if (chance(30))
			{
				j->k = J_NUM;
				j->dig = astrdup("", 0);
				j->e = 0;
			}
			break;
		case J_ARR:
			if (j->n > 0 && chance(50))
				j->n--;
			else
				j->v[j->n++] = gen_scalar();
			break;
		case J_OBJ:
			if (j->n > 0 && chance(50))
				j->n--;
			else
				obj_add(j, gen_str_node(4), gen_scalar());
			break;
	}
}

const Style	plain_style = {false, false, false, false, false};

static void
put_ws(Buf *b, const Style *s)
{
	if (s->ws && chance(25))
	{
		int			n = (int) rnd_range(1, 3);

		for (int i = 0; i < n; i++)
			buf_putc(b, " \t\n\r"[rnd(4)]);
	}
}

static void
put_u(Buf *b, uint32_t u)
{
	buf_printf(b, chance(50) ? "\\u%04x" : "\\u%04X", u);
}

static void
render_str(Buf *b, const uint32_t *cp, int n, const Style *s)
{
	char		enc[4];

	buf_putc(b, '"');
	for (int i = 0; i < n; i++)
	{
		uint32_t	c = cp[i];
		bool		esc = s->escapes && chance(25);

		if (c < 0x20)
		{
			const char *shortesc = NULL;

			switch (c)
			{
				case '\b':
					shortesc = "\\b";
					break;
				case '\f':
					shortesc = "\\f";
					break;
				case '\n':
					shortesc = "\\n";
					break;
				case '\r':
					shortesc = "\\r";
					break;
				case '\t':
					shortesc = "\\t";
					break;
			}
			if (shortesc && !esc)
				buf_puts(b, shortesc);
			else
				put_u(b, c);
		}
		else if (c == '"' || c == '\\')
		{
			if (esc)
				put_u(b, c);
			else
			{
				buf_putc(b, '\\');
				buf_putc(b, (char) c);
			}
		}
		else if (c == '/' && esc)
			buf_puts(b, chance(50) ? "\\/" : "\\u002f");
		else if (!esc)
			buf_add(b, enc, utf8_encode(c, enc));
		else if (c < 0x10000)
			put_u(b, c);
		else
		{
			uint32_t	v = c - 0x10000;

			put_u(b, 0xD800 + (v >> 10));
			put_u(b, 0xDC00 + (v & 0x3FF));
		}
	}
	buf_putc(b, '"');
}

static void
put_zeros(Buf *b, int n)
{
	for (int i = 0; i < n; i++)
		buf_putc(b, '0');
}

/* A number, exactly or in one of its many equal spellings. */
static void
render_num(Buf *b, const J *j, const Style *s)
{
	int			n = (int) strlen(j->dig);

	if (j->neg)
		buf_putc(b, '-');
	if (n == 0)
	{
		static const char *const zeros[] = {"0", "0.0", "0.000", "0e0", "0E+5", "0e-7", "0.00e10"};

		buf_puts(b, s->numbers ? zeros[rnd(sizeof(zeros) / sizeof(*zeros))] : "0");
		return;
	}
	if (!s->numbers || chance(20))
	{
		/* plain when short enough, else d.ddde+X */
		if (j->e >= -40 && j->e <= 60)
		{
			if (j->e <= 0)
			{
				buf_puts(b, "0.");
				put_zeros(b, -j->e);
				buf_puts(b, j->dig);
			}
			else if (j->e < n)
			{
				buf_add(b, j->dig, j->e);
				buf_putc(b, '.');
				buf_puts(b, j->dig + j->e);
			}
			else
			{
				buf_puts(b, j->dig);
				put_zeros(b, j->e - n);
			}
		}
		else
		{
			buf_putc(b, j->dig[0]);
			if (n > 1)
			{
				buf_putc(b, '.');
				buf_puts(b, j->dig + 1);
			}
			buf_printf(b, "e%d", j->e - 1);
		}
		return;
	}
	else
	{
		/*
		 * S = digits + T zeros; p digits before the point; exponent X.  The
		 * display scale numeric_in derives is len(S) - p - X; near numeric's
		 * smallest scale (1e-16383) it must not grow, so such numbers get no
		 * extra zeros (T = 0, p <= len(S)).
		 */
		bool		tight = j->e < -15000;
		int			t = tight ? 0 : (int) rnd(4);
		int			len = n + t;
		int			p = (int) rnd_range(0, tight ? len : len + 3);
		int			x;
		Buf			m = {0};

		if (p == 0)
		{
			int			z = (int) rnd(4);

			buf_puts(&m, "0.");
			put_zeros(&m, z);
			buf_puts(&m, j->dig);
			put_zeros(&m, t);
			x = j->e + z;
		}
		else if (p < len)
		{
			if (p <= n)
			{
				buf_add(&m, j->dig, p);
				buf_putc(&m, '.');
				buf_puts(&m, j->dig + p);
				put_zeros(&m, t);
			}
			else
			{
				buf_puts(&m, j->dig);
				put_zeros(&m, p - n);
				buf_putc(&m, '.');
				put_zeros(&m, len - p);
			}
			x = j->e - p;
		}
		else
		{
			buf_puts(&m, j->dig);
			put_zeros(&m, p - n);
			if (!tight && chance(30))
				buf_puts(&m, chance(50) ? ".0" : ".000");
			x = j->e - p;
		}
		buf_add(b, m.data, m.len);
		free(m.data);
		if (x != 0 || chance(40))
		{
			buf_putc(b, chance(50) ? 'e' : 'E');
			if (x == 0 && chance(30))
				buf_putc(b, '-');	/* e-0 */
			else if (x >= 0 && chance(50))
				buf_putc(b, '+');
			buf_printf(b, "%d", x);
		}
	}
}

static void render_json(Buf *b, const J *j, const Style *s);

static void
render_member(Buf *b, const J *key, const J *v, const Style *s, bool *first)
{
	if (!*first)
		buf_putc(b, ',');
	*first = false;
	put_ws(b, s);
	render_str(b, key->cp, key->ncp, s);
	put_ws(b, s);
	buf_putc(b, ':');
	put_ws(b, s);
	render_json(b, v, s);
	put_ws(b, s);
}

static void
render_json(Buf *b, const J *j, const Style *s)
{
	switch (j->k)
	{
		case J_NULL:
			buf_puts(b, "null");
			break;
		case J_TRUE:
			buf_puts(b, "true");
			break;
		case J_FALSE:
			buf_puts(b, "false");
			break;
		case J_NUM:
			render_num(b, j, s);
			break;
		case J_STR:
			render_str(b, j->cp, j->ncp, s);
			break;
		case J_ARR:
			buf_putc(b, '[');
			put_ws(b, s);
			for (int i = 0; i < j->n; i++)
			{
				if (i)
					buf_putc(b, ',');
				put_ws(b, s);
				render_json(b, j->v[i], s);
				put_ws(b, s);
			}
			buf_putc(b, ']');
			break;
		case J_OBJ:
			{
				int		   *order = amalloc(sizeof(int) * (j->n + 1));
				bool		first = true;

				for (int i = 0; i < j->n; i++)
					order[i] = i;
				if (s->shuffle)
					for (int i = j->n - 1; i > 0; i--)
					{
						int			k = (int) rnd(i + 1),
									t = order[i];

						order[i] = order[k];
						order[k] = t;
					}
				buf_putc(b, '{');
				put_ws(b, s);
				for (int i = 0; i < j->n; i++)
				{
					const J    *key = j->key[order[i]];

					if (s->dups && chance(15))
					{
						int			saved = jbudget;

						jbudget = 3;
						render_member(b, key, gen_json(1), s, &first);
						jbudget = saved;
					}
					render_member(b, key, j->v[order[i]], s, &first);
				}
				buf_putc(b, '}');
				break;
			}
	}
	put_ws(b, s);
}

char *
json_text(const J *j, const Style *s)
{
	Buf			b = {0};
	char	   *r;

	render_json(&b, j, s);
	r = abuf(&b);
	free(b.data);
	return r;
}

/* ---- the fingerprint encoding of README.md, computed here ---- */

static void
enc_chunk(Buf *b, char tag, const char *p, size_t n)
{
	unsigned char hdr[5] = {(unsigned char) tag, (unsigned char) (n >> 24),
	(unsigned char) (n >> 16), (unsigned char) (n >> 8), (unsigned char) n};

	buf_add(b, hdr, 5);
	buf_add(b, p, n);
}

static char *
utf8_of(const J *s, int *len)
{
	Buf			b = {0};
	char		enc[4];
	char	   *r;

	for (int i = 0; i < s->ncp; i++)
		buf_add(&b, enc, utf8_encode(s->cp[i], enc));
	*len = (int) b.len;
	r = abuf(&b);
	free(b.data);
	return r;
}

/* numeric_normalize(): plain digits, trailing fractional zeros removed */
static void
normalized_number(Buf *out, const J *j)
{
	int			n = (int) strlen(j->dig);

	if (n == 0)
	{
		buf_putc(out, '0');
		return;
	}
	if (j->neg)
		buf_putc(out, '-');
	if (j->e <= 0)
	{
		buf_puts(out, "0.");
		put_zeros(out, -j->e);
		buf_puts(out, j->dig);
	}
	else if (j->e < n)
	{
		buf_add(out, j->dig, j->e);
		buf_putc(out, '.');
		buf_puts(out, j->dig + j->e);
	}
	else
	{
		buf_puts(out, j->dig);
		put_zeros(out, j->e - n);
	}
}

typedef struct KeyRef
{
	char	   *p;
	int			len;
	int			idx;
} KeyRef;

static int
keyref_cmp(const void *a, const void *b)
{
	const KeyRef *x = a,
			   *y = b;

	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return memcmp(x->p, y->p, x->len);
}

static void
encode_json(Buf *b, const J *j)
{
	switch (j->k)
	{
		case J_NULL:
			buf_putc(b, 'z');
			break;
		case J_TRUE:
			buf_putc(b, 't');
			break;
		case J_FALSE:
			buf_putc(b, 'f');
			break;
		case J_NUM:
			{
				Buf			d = {0};

				normalized_number(&d, j);
				enc_chunk(b, 'n', d.data, d.len);
				free(d.data);
				break;
			}
		case J_STR:
			{
				int			len;
				char	   *s = utf8_of(j, &len);

				enc_chunk(b, 's', s, len);
				break;
			}
		case J_ARR:
			buf_putc(b, '[');
			for (int i = 0; i < j->n; i++)
				encode_json(b, j->v[i]);
			buf_putc(b, ']');
			break;
		case J_OBJ:
			{
				KeyRef	   *keys = amalloc(sizeof(KeyRef) * (j->n + 1));

				for (int i = 0; i < j->n; i++)
				{
					keys[i].p = utf8_of(j->key[i], &keys[i].len);
					keys[i].idx = i;
				}
				qsort(keys, j->n, sizeof(KeyRef), keyref_cmp);
				buf_putc(b, '{');
				for (int i = 0; i < j->n; i++)
				{
					enc_chunk(b, 's', keys[i].p, keys[i].len);
					encode_json(b, j->v[keys[i].idx]);
				}
				buf_putc(b, '}');
				break;
			}
	}
}

/* fingerprint(method, path, body) as README.md defines it */
void
expected_fingerprint(const char *secret, const Text *method, const Text *path,
					 const J *body, uint8_t out[32])
{
	Buf			b = {0};
	char	   *m = amalloc(method->len + 1);

	upper_ascii(m, method->s, method->len);
	buf_add(&b, "IKv1", 4);
	enc_chunk(&b, 'm', m, method->len);
	enc_chunk(&b, 'p', path->s, path->len);
	encode_json(&b, body);
	digest(secret, b.data, b.len, out);
	free(b.data);
}

bool
bytea_equals(const char *hex, const uint8_t *bytes, int n)
{
	char		buf[3];

	if (hex == NULL || strncmp(hex, "\\x", 2) != 0 || (int) strlen(hex) != 2 + 2 * n)
		return false;
	for (int i = 0; i < n; i++)
	{
		snprintf(buf, sizeof(buf), "%02x", bytes[i]);
		if (strncmp(hex + 2 + 2 * i, buf, 2) != 0)
			return false;
	}
	return true;
}

char *
hex_of(const uint8_t *p, int n)
{
	char	   *s = amalloc(2 * n + 3);

	strcpy(s, "\\x");
	for (int i = 0; i < n; i++)
		sprintf(s + 2 + 2 * i, "%02x", p[i]);
	return s;
}

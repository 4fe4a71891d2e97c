/*-------------------------------------------------------------------------
 *
 * gen.c
 *	  Generators of arguments, each knowing whether what it made is valid.
 *
 * Scopes, keys, paths and recovery points of random bytes (control
 * characters, C1 controls, multibyte UTF-8, invalid UTF-8, the
 * 255/256-byte edges, empty, NULL), fingerprints, methods, intervals
 * (negative, zero, tiny, the INT_MAX-millisecond edge, the extremes of
 * every field, NULL), statuses and lease tokens.  Each comes with its
 * Validity: V_OK (the call must not raise IK400), V_BAD (it must) or
 * V_ENCODING (not UTF-8: PostgreSQL itself refuses it with 22021).  The
 * operations check the extension's answer against that verdict.
 *
 *-------------------------------------------------------------------------
 */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ikfuzz.h"

static const char *const multibyte_samples[] = {
	"\xc3\xa9",					/* é */
	"\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87",	/* ключ */
	"\xf0\x9f\x94\x91",			/* 🔑 */
	"\xe4\xb8\xad",				/* 中 */
	"\xe2\x80\xa8",				/* U+2028 */
	"\xef\xbb\xbf",				/* BOM */
	"\xef\xbf\xbf",				/* U+FFFF */
	"\xf4\x8f\xbf\xbf",			/* U+10FFFF */
	"\xcc\x81",					/* combining acute */
	"\xc2\xa0",					/* no-break space (not a control) */
};

/* Is this UTF-8 text a valid scope/key/path/recovery point? */
static Validity
judge_name(const char *s, int len, int maxbytes)
{
	if (s == NULL)
		return V_BAD;
	if (!utf8_valid((const unsigned char *) s, len))
		return V_ENCODING;
	if (len == 0 || len > maxbytes)
		return V_BAD;
	for (int i = 0; i < len; i++)
	{
		unsigned char c = s[i];

		if (c < 0x20 || c == 0x7F)
			return V_BAD;
		if (c == 0xC2 && i + 1 < len && (unsigned char) s[i + 1] >= 0x80 &&
			(unsigned char) s[i + 1] <= 0x9F)
			return V_BAD;
	}
	return V_OK;
}

static void
add_random_char(Buf *b)
{
	switch (rnd(6))
	{
		case 0:
		case 1:
		case 2:
			buf_putc(b, (char) rnd_range(0x21, 0x7E));
			break;
		case 3:
			buf_putc(b, "abcdefghijklmnopqrstuvwxyz0123456789-_"[rnd(38)]);
			break;
		default:
			buf_puts(b, multibyte_samples[rnd(sizeof(multibyte_samples) / sizeof(*multibyte_samples))]);
			break;
	}
}

/* Fill with characters up to exactly n bytes (the last may be ASCII). */
static void
fill_to(Buf *b, int n, bool multibyte_end)
{
	while ((int) b->len < n)
	{
		int			left = n - (int) b->len;

		if (multibyte_end && left == 2)
			buf_puts(b, "\xc3\xa9");
		else if (multibyte_end && left == 4)
			buf_puts(b, "\xf0\x9f\x94\x91");
		else if (left >= 4 && chance(10))
			buf_puts(b, "\xe4\xb8\xad");
		else
			buf_putc(b, "abcdefghijklmnopqrstuvwxyz0123456789"[rnd(36)]);
	}
}

/*
 * A scope, key, path or recovery point: valid most of the time (when
 * bad_percent allows), else one of the ways to be wrong.
 */
Text
gen_name(int maxbytes, int bad_percent)
{
	Buf			b = {0};
	Text		t = {0};

	if (!chance(bad_percent))
	{
		int			kind = rnd(10);

		if (kind < 5)
		{
			int			n = (int) rnd_range(1, 16);

			for (int i = 0; i < n; i++)
				add_random_char(&b);
			t.what = "random text";
		}
		else if (kind < 7)
		{
			/* the byte limit exactly, sometimes ending in a multibyte char */
			fill_to(&b, maxbytes, chance(50));
			t.what = "at the byte limit";
		}
		else if (kind < 9)
		{
			int			n = (int) rnd_range(1, 40);

			for (int i = 0; i < n; i++)
				buf_puts(&b, multibyte_samples[rnd(sizeof(multibyte_samples) / sizeof(*multibyte_samples))]);
			t.what = "multibyte";
		}
		else
		{
			buf_putc(&b, "abcdefghijklmnopqrstuvwxyz"[rnd(26)]);
			t.what = "one byte";
		}
	}
	else
	{
		switch (rnd(9))
		{
			case 0:
				t.s = NULL;
				t.v = V_BAD;
				t.what = "NULL";
				return t;
			case 1:
				t.what = "empty";
				break;
			case 2:
				fill_to(&b, maxbytes + 1, chance(50));
				t.what = "one byte over the limit";
				break;
			case 3:
				/* the limit minus one, then a 2- or 4-byte character */
				fill_to(&b, maxbytes - 1 - (chance(50) ? 2 : 0), false);
				buf_puts(&b, chance(50) ? "\xc3\xa9" : "\xf0\x9f\x94\x91");
				t.what = "a multibyte character across the limit";
				break;
			case 4:
				{
					int			n = (int) rnd_range(0, 6);

					for (int i = 0; i < n; i++)
						add_random_char(&b);
					buf_putc(&b, (char) (chance(80) ? rnd_range(1, 0x1F) : 0x7F));
					n = (int) rnd_range(0, 6);
					for (int i = 0; i < n; i++)
						add_random_char(&b);
					t.what = "a C0 control or DEL";
					break;
				}
			case 5:
				buf_puts(&b, "k");
				buf_putc(&b, (char) 0xC2);
				buf_putc(&b, (char) rnd_range(0x80, 0x9F));
				t.what = "a C1 control";
				break;
			case 6:
				{
					/* random bytes: usually not UTF-8 */
					int			n = (int) rnd_range(1, 12);

					for (int i = 0; i < n; i++)
						buf_putc(&b, (char) rnd_range(1, 255));
					t.what = "random bytes";
					break;
				}
			case 7:
				{
					/* classic invalid sequences */
					static const char *const bad[] = {
						"\xc0\xaf", "\xed\xa0\x80", "\xf5\x80\x80\x80", "\xe0\x80\xaf",
						"\xc3", "\xff", "\xf0\x9f\x94", "\x80"
					};

					buf_puts(&b, "k");
					buf_puts(&b, bad[rnd(sizeof(bad) / sizeof(*bad))]);
					t.what = "invalid UTF-8";
					break;
				}
			default:
				fill_to(&b, (int) rnd_range(maxbytes + 1, maxbytes * 4 + 10), false);
				t.what = "far over the limit";
				break;
		}
	}
	t.s = abuf(&b);
	t.len = (int) b.len;
	free(b.data);
	t.v = judge_name(t.s, t.len, maxbytes);
	return t;
}

Arg
targ(const Text *t)
{
	Arg			a = {t->s, t->len, 0};

	return a;
}

Bytes
gen_fp_arg(int bad_percent)
{
	Bytes		b = {0};
	int			n;

	if (chance(bad_percent))
	{
		switch (rnd(4))
		{
			case 0:
				b.v = V_BAD;
				return b;		/* NULL */
			case 1:
				n = 0;
				break;
			case 2:
				n = 256;
				break;
			default:
				n = (int) rnd_range(257, 2000);
				break;
		}
	}
	else
	{
		switch (rnd(4))
		{
			case 0:
				n = 1;
				break;
			case 1:
				n = 255;
				break;
			default:
				n = 32;
				break;
		}
	}
	b.p = amalloc(n + 1);
	for (int i = 0; i < n; i++)
		b.p[i] = (char) rnd(256);
	b.len = n;
	b.v = (n >= 1 && n <= 255) ? V_OK : V_BAD;
	return b;
}

Arg
barg(const Bytes *b)
{
	return BIN(b->p, b->len);
}

void
iv_text(Iv *iv)
{
	char		buf[128];

	if (iv->isnull)
	{
		iv->text = NULL;
		return;
	}
	snprintf(buf, sizeof(buf), "%d mons %d days %" PRId64 " microseconds",
			 iv->month, iv->day, iv->usec);
	iv->text = astrdup(buf, strlen(buf));
}

/* Milliseconds as the extension counts them: months of 30 days, clamped. */
int64_t
iv_ms(const Iv *iv)
{
	__int128	u = (__int128) iv->usec +
		(__int128) iv->day * 86400000000LL +
		(__int128) iv->month * 30 * 86400000000LL;
	__int128	ms = u / 1000;

	if (ms > INT64_MAX)
		return INT64_MAX;
	if (ms < INT64_MIN)
		return INT64_MIN;
	return (int64_t) ms;
}

Iv
iv_ms_make(int64_t ms)
{
	Iv			iv = {0};

	iv.usec = ms * 1000;
	iv_text(&iv);
	return iv;
}

/* A small wait: NULL (the GUC, 0), zero, or up to 30 ms. */
Iv
gen_small_wait(void)
{
	Iv			iv = {0};

	switch (rnd(4))
	{
		case 0:
			iv.isnull = true;
			break;
		case 1:
			break;
		default:
			iv.usec = rnd_range(1, 30) * 1000;
			break;
	}
	iv_text(&iv);
	return iv;
}

/* Any interval at all. */
Iv
gen_interval(void)
{
	Iv			iv = {0};

	switch (rnd(16))
	{
		case 0:
			iv.isnull = true;
			break;
		case 1:
			break;				/* zero */
		case 2:
			iv.usec = rnd_range(1, 999);	/* under a millisecond */
			break;
		case 3:
			iv.usec = -rnd_range(1, 1000000);
			break;
		case 4:
			iv.usec = rnd_range(1, 3600) * 1000000LL;
			break;
		case 5:
			/* the INT_MAX-millisecond edge */
			iv.usec = (int64_t) INT_MAX * 1000 + rnd_range(-1, 1000);
			break;
		case 6:
			iv.day = -1;
			iv.usec = rnd_range(1, 86400) * 1000000LL;	/* '-1 day +1 second' */
			break;
		case 7:
			iv.month = (int32_t) rnd_range(-3, 3);
			iv.day = (int32_t) rnd_range(-100, 100);
			break;
		case 8:
			iv.month = chance(50) ? INT32_MAX : INT32_MIN;
			break;
		case 9:
			iv.day = chance(50) ? INT32_MAX : INT32_MIN;
			break;
		case 10:
			iv.usec = chance(50) ? INT64_MAX : INT64_MIN;
			break;
		case 11:
			iv.month = chance(50) ? INT32_MAX : INT32_MIN;
			iv.day = chance(50) ? INT32_MAX : INT32_MIN;
			iv.usec = chance(50) ? INT64_MAX : INT64_MIN;
			break;
		case 12:
			/* mixed signs summing close to zero */
			iv.day = 1;
			iv.usec = -86400000000LL + rnd_range(-2000, 2000);
			break;
		case 13:
			iv.month = 1;
			iv.day = -30;
			iv.usec = rnd_range(-5000, 5000);
			break;
		default:
			iv.usec = rnd_range(1, 50) * 1000;
			break;
	}
	iv_text(&iv);
	return iv;
}

/* What claim() makes of a lease or a wait interval. */
Validity
judge_wait(const Iv *iv)
{
	int64_t		ms;

	if (iv->isnull)
		return V_OK;
	ms = iv_ms(iv);
	return (ms < 0 || ms > INT_MAX) ? V_BAD : V_OK;
}

Validity
judge_lease(const Iv *iv)
{
	int64_t		ms;

	if (iv->isnull)
		return V_OK;
	ms = iv_ms(iv);
	return (ms <= 0 || ms > INT_MAX) ? V_BAD : V_OK;
}

Arg
ivarg(const Iv *iv)
{
	return T(iv->isnull ? NULL : iv->text);
}

/* HTTP statuses: mostly valid, sometimes around and far off the range. */
int64_t
gen_status(bool *isnull, int bad_percent)
{
	static const int edges[] = {100, 199, 200, 201, 299, 409, 499, 500, 503, 599};

	*isnull = false;
	if (chance(bad_percent))
	{
		switch (rnd(4))
		{
			case 0:
				*isnull = true;
				return 0;
			case 1:
				return chance(50) ? 99 : 600;
			case 2:
				return chance(50) ? INT32_MIN : INT32_MAX;
			default:
				return rnd_range(-1000, 99);
		}
	}
	if (chance(30))
		return edges[rnd(sizeof(edges) / sizeof(*edges))];
	return chance(75) ? rnd_range(100, 499) : rnd_range(500, 599);
}

char *
itoa_a(int64_t v)
{
	char		buf[32];

	snprintf(buf, sizeof(buf), "%" PRId64, v);
	return astrdup(buf, strlen(buf));
}

char *
gen_uuid(void)
{
	char		buf[37];
	uint64_t	a = rnd64(),
				b = rnd64();

	snprintf(buf, sizeof(buf), "%08x-%04x-4%03x-%04x-%012" PRIx64,
			 (unsigned) (a >> 32), (unsigned) (a >> 16) & 0xffff,
			 (unsigned) a & 0xfff, (unsigned) ((b >> 48) & 0x3fff) | 0x8000,
			 (uint64_t) (b & 0xffffffffffffULL));
	return astrdup(buf, strlen(buf));
}

/* HTTP methods: RFC 9110 tokens of at most 32 bytes. */
static const char tchars[] = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

Text
gen_method(int bad_percent)
{
	Buf			b = {0};
	Text		t = {0};
	static const char *const common[] = {"POST", "post", "Put", "PATCH", "DELETE", "M-SEARCH", "get"};

	if (!chance(bad_percent))
	{
		if (chance(60))
			buf_puts(&b, common[rnd(sizeof(common) / sizeof(*common))]);
		else
		{
			int			n = chance(20) ? 32 : (int) rnd_range(1, 12);

			for (int i = 0; i < n; i++)
				buf_putc(&b, tchars[rnd(sizeof(tchars) - 1)]);
		}
		t.v = V_OK;
	}
	else
	{
		switch (rnd(6))
		{
			case 0:
				t.v = V_BAD;
				t.what = "NULL";
				free(b.data);
				return t;
			case 1:
				break;			/* empty */
			case 2:
				for (int i = 0; i < 33; i++)
					buf_putc(&b, tchars[rnd(sizeof(tchars) - 1)]);
				break;
			case 3:
				buf_puts(&b, "PO");
				buf_putc(&b, " \t\"(),/:;<=>?@[\\]{}"[rnd(19)]);
				buf_puts(&b, "ST");
				break;
			case 4:
				buf_puts(&b, "P\xc3\x89ST");	/* non-ASCII */
				break;
			default:
				buf_puts(&b, "GET\x01");
				break;
		}
		t.v = V_BAD;
	}
	t.s = abuf(&b);
	t.len = (int) b.len;
	free(b.data);
	if (t.v == V_BAD && utf8_valid((unsigned char *) t.s, t.len) == false)
		t.v = V_ENCODING;
	if (t.len == 0 || t.len > 32)
		t.v = V_BAD;
	t.what = "method";
	return t;
}

void
upper_ascii(char *dst, const char *src, int n)
{
	for (int i = 0; i < n; i++)
		dst[i] = (src[i] >= 'a' && src[i] <= 'z') ? (char) (src[i] - 32) : src[i];
}

/* The same method in another ASCII case. */
char *
recase(const Text *m)
{
	char	   *s = astrdup(m->s, m->len);

	for (int i = 0; i < m->len; i++)
		if (chance(50))
		{
			if (s[i] >= 'a' && s[i] <= 'z')
				s[i] -= 32;
			else if (s[i] >= 'A' && s[i] <= 'Z')
				s[i] += 32;
		}
	return s;
}

/* A request path: most look like "/v1/...", judged as a name of 8192 bytes. */
Text
gen_path(int bad_percent)
{
	Text		t = gen_name(8192, bad_percent);

	if (t.v == V_OK && chance(70) && t.len < 8000)
	{
		/* most paths look like paths */
		Buf			b = {0};

		buf_puts(&b, "/v1/");
		buf_add(&b, t.s, t.len);
		t.s = abuf(&b);
		t.len = (int) b.len;
		free(b.data);
		t.v = judge_name(t.s, t.len, 8192);
	}
	return t;
}

/* A recovery point: a name of up to 1024 bytes. */
Text
gen_recovery_point(int bad_percent)
{
	return gen_name(1024, bad_percent);
}

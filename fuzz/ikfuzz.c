/*-------------------------------------------------------------------------
 *
 * ikfuzz.c
 *	  A seeded random fuzzer of the idempotency extension's SQL API.
 *
 * It drives two libpq connections (A and B) to one database that has the
 * extension, and feeds claim(), complete(), release(), checkpoint(),
 * fingerprint() (all three overloads), reap() and the stats view random
 * arguments: scopes and keys of random bytes (control characters, C1
 * controls, multibyte UTF-8, invalid UTF-8, the 255/256-byte edges, empty,
 * NULL), intervals (negative, zero, tiny, the INT_MAX-millisecond edge,
 * the extremes of every field, NULL), statuses, lease tokens, and JSON
 * bodies (deep nesting, wide objects, long strings, 1e-300 / 1e300 / -0 /
 * 0.000, unicode escapes and surrogate pairs, duplicate keys).
 *
 * What it checks (docs/fuzzing.md has the full list):
 *  - the server never crashes: both connections stay up;
 *  - a bad argument is rejected with IK400, a good one never is (the
 *    fuzzer knows which it generated); text that is not valid UTF-8 is
 *    refused by PostgreSQL itself (22021) before any function runs;
 *  - every other error is one the contract allows for that call, in that
 *    state (IK409/IK410/IK422/IK428, 40001 only under REPEATABLE READ or
 *    SERIALIZABLE, 22023 only on the scopes whose policies and settings
 *    it randomizes, where retain can end up shorter than ttl); anything
 *    else (XX000, 22008, 57014, a lost connection, ...) is a failure;
 *  - claim's outcome is 'new', 'replay' or 'resume', never NULL, and for
 *    the keys it models exactly the one the contract says, with the
 *    stored response on a replay;
 *  - bodies equal as jsonb fingerprint equal, and unequal ones do not:
 *    a body is re-serialized with shuffled keys, white space, duplicate
 *    key prefixes, respelled numbers (1 -> 1.0 -> 10e-1) and re-escaped
 *    strings; fingerprint(m, p, b) = fingerprint(m, p, a) must hold
 *    exactly when a::jsonb = b::jsonb, and each fingerprint must equal
 *    SHA-256 (or HMAC-SHA256 under a secret) of the encoding README.md
 *    documents, computed here independently;
 *  - fingerprint(m, p, text) agrees with PostgreSQL's jsonb parser: IK400
 *    exactly when the text is not JSON;
 *  - rows of idempotency.keys stay sane (created_at <= expires_at <=
 *    retain_until, all printable), and a key stored under a policy whose
 *    replay window is at least a minute replays.
 *
 * Each iteration draws its inputs from its own random stream, seeded by
 * (seed, iteration number); what it expects also depends on the modelled
 * keys' state, which earlier iterations made.  So --seed S --iterations N
 * replays a run up to iteration N - 1, and --seed S --only I runs
 * iteration I alone (exact for operations that do not use modelled keys).
 * On a failure it prints the failing operation as SQL, for both
 * connections, to stderr and to the --repro file.  Runs are bounded by
 * --seconds and --iterations, whichever comes first.
 *
 * Usage: ikfuzz [--seed N] [--seconds S] [--iterations N] [--only I]
 *               [--repro FILE] [--include-known] [--verbose] [conninfo]
 * FUZZ_SEED in the environment is the default seed.  Exit status: 0 if
 * every check held, 1 on a failure, 2 on a usage or set-up error.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

/* ------------------------------------------------------------------ */
/* options and counters */

static uint64_t opt_seed;
static double opt_seconds = 10;
static long opt_iterations = 1000000000L;
static const char *opt_repro;
static const char *opt_conninfo = "";
static bool opt_verbose;
static bool opt_include_known;
static long opt_only = -1;

static long iteration;
static long n_statements;
static long n_checks;
static const char *current_op = "";

/* how often each SQLSTATE (or "ok") was seen, for the summary */
#define MAX_SEEN 64
static struct
{
	char		state[8];
	long		count;
}			seen[MAX_SEEN];
static int	n_seen;

static long op_counts[16];
static const char *op_names[16];

static void
count_state(const char *st)
{
	for (int i = 0; i < n_seen; i++)
		if (strcmp(seen[i].state, st) == 0)
		{
			seen[i].count++;
			return;
		}
	if (n_seen < MAX_SEEN)
	{
		snprintf(seen[n_seen].state, sizeof(seen[n_seen].state), "%s", st);
		seen[n_seen++].count = 1;
	}
}

static double
now_seconds(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return tv.tv_sec + tv.tv_usec / 1e6;
}

/* ------------------------------------------------------------------ */
/* random numbers: splitmix64, seeded */

static uint64_t rng_state;

static uint64_t
rnd64(void)
{
	uint64_t	z = (rng_state += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

/* 0 .. n-1 */
static uint32_t
rnd(uint32_t n)
{
	return n == 0 ? 0 : (uint32_t) (rnd64() % n);
}

/* lo .. hi inclusive */
static int64_t
rnd_range(int64_t lo, int64_t hi)
{
	return lo + (int64_t) (rnd64() % (uint64_t) (hi - lo + 1));
}

static bool
chance(int percent)
{
	return (int) rnd(100) < percent;
}

/* ------------------------------------------------------------------ */
/* growable buffers and a per-iteration arena */

typedef struct Buf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} Buf;

static void
buf_reserve(Buf *b, size_t more)
{
	if (b->len + more + 1 > b->cap)
	{
		size_t		cap = b->cap ? b->cap : 64;

		while (b->len + more + 1 > cap)
			cap *= 2;
		b->data = realloc(b->data, cap);
		if (b->data == NULL)
		{
			fprintf(stderr, "ikfuzz: out of memory\n");
			exit(2);
		}
		b->cap = cap;
	}
}

static void
buf_add(Buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void
buf_putc(Buf *b, char c)
{
	buf_add(b, &c, 1);
}

static void
buf_puts(Buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

static void
buf_printf(Buf *b, const char *fmt,...)
{
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	buf_reserve(b, n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, n + 1, fmt, ap);
	va_end(ap);
	b->len += n;
}

static void
buf_reset(Buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

static void **arena;
static size_t arena_n,
			arena_cap;

static void *
amalloc(size_t n)
{
	void	   *p = calloc(1, n ? n : 1);

	if (p == NULL)
	{
		fprintf(stderr, "ikfuzz: out of memory\n");
		exit(2);
	}
	if (arena_n == arena_cap)
	{
		arena_cap = arena_cap ? arena_cap * 2 : 1024;
		arena = realloc(arena, arena_cap * sizeof(void *));
	}
	arena[arena_n++] = p;
	return p;
}

static char *
astrdup(const char *s, size_t n)
{
	char	   *p = amalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

/* Take a Buf's contents into the arena. */
static char *
abuf(Buf *b)
{
	return astrdup(b->data ? b->data : "", b->len);
}

static void
arena_reset(void)
{
	for (size_t i = 0; i < arena_n; i++)
		free(arena[i]);
	arena_n = 0;
}

static char *
xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* ------------------------------------------------------------------ */
/* SHA-256 and HMAC-SHA256 (FIPS 180-4, RFC 2104), for the oracle */

typedef struct Sha256
{
	uint32_t	h[8];
	uint64_t	bytes;
	uint8_t		block[64];
	size_t		used;
} Sha256;

static const uint32_t sha_k[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void
sha_block(Sha256 *s, const uint8_t *p)
{
	uint32_t	w[64],
				a, b, c, d, e, f, g, h;

	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t) p[4 * i] << 24 | (uint32_t) p[4 * i + 1] << 16 |
			(uint32_t) p[4 * i + 2] << 8 | p[4 * i + 3];
	for (int i = 16; i < 64; i++)
	{
		uint32_t	s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t	s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);

		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3];
	e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
	for (int i = 0; i < 64; i++)
	{
		uint32_t	t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) +
			((e & f) ^ (~e & g)) + sha_k[i] + w[i];
		uint32_t	t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) +
			((a & b) ^ (a & c) ^ (b & c));

		h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
	}
	s->h[0] += a, s->h[1] += b, s->h[2] += c, s->h[3] += d;
	s->h[4] += e, s->h[5] += f, s->h[6] += g, s->h[7] += h;
}

static void
sha_init(Sha256 *s)
{
	static const uint32_t iv[8] = {
		0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
		0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
	};

	memcpy(s->h, iv, sizeof(iv));
	s->bytes = 0;
	s->used = 0;
}

static void
sha_update(Sha256 *s, const void *data, size_t n)
{
	const uint8_t *p = data;

	s->bytes += n;
	while (n > 0)
	{
		size_t		take = 64 - s->used;

		if (take > n)
			take = n;
		memcpy(s->block + s->used, p, take);
		s->used += take;
		p += take;
		n -= take;
		if (s->used == 64)
		{
			sha_block(s, s->block);
			s->used = 0;
		}
	}
}

static void
sha_final(Sha256 *s, uint8_t out[32])
{
	uint64_t	bits = s->bytes * 8;
	uint8_t		pad = 0x80,
				zero = 0,
				len[8];

	sha_update(s, &pad, 1);
	while (s->used != 56)
		sha_update(s, &zero, 1);
	for (int i = 0; i < 8; i++)
		len[i] = (uint8_t) (bits >> (56 - 8 * i));
	sha_update(s, len, 8);
	for (int i = 0; i < 8; i++)
	{
		out[4 * i] = (uint8_t) (s->h[i] >> 24);
		out[4 * i + 1] = (uint8_t) (s->h[i] >> 16);
		out[4 * i + 2] = (uint8_t) (s->h[i] >> 8);
		out[4 * i + 3] = (uint8_t) s->h[i];
	}
}

/* SHA-256 of data, or HMAC-SHA256 under secret when it is non-empty */
static void
digest(const char *secret, const void *data, size_t n, uint8_t out[32])
{
	Sha256		s;

	if (secret == NULL || secret[0] == '\0')
	{
		sha_init(&s);
		sha_update(&s, data, n);
		sha_final(&s, out);
		return;
	}
	else
	{
		uint8_t		key[64] = {0},
					ipad[64],
					opad[64],
					inner[32];
		size_t		klen = strlen(secret);

		if (klen > 64)
		{
			sha_init(&s);
			sha_update(&s, secret, klen);
			sha_final(&s, key);
		}
		else
			memcpy(key, secret, klen);
		for (int i = 0; i < 64; i++)
		{
			ipad[i] = key[i] ^ 0x36;
			opad[i] = key[i] ^ 0x5c;
		}
		sha_init(&s);
		sha_update(&s, ipad, 64);
		sha_update(&s, data, n);
		sha_final(&s, inner);
		sha_init(&s);
		sha_update(&s, opad, 64);
		sha_update(&s, inner, 32);
		sha_final(&s, out);
	}
}

/* ------------------------------------------------------------------ */
/* UTF-8 */

static int
utf8_encode(uint32_t cp, char *out)
{
	if (cp < 0x80)
	{
		out[0] = (char) cp;
		return 1;
	}
	if (cp < 0x800)
	{
		out[0] = (char) (0xC0 | (cp >> 6));
		out[1] = (char) (0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000)
	{
		out[0] = (char) (0xE0 | (cp >> 12));
		out[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char) (0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char) (0xF0 | (cp >> 18));
	out[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char) (0x80 | (cp & 0x3F));
	return 4;
}

/* Strict UTF-8 (RFC 3629), as PostgreSQL checks it; NUL is invalid too. */
static bool
utf8_valid(const unsigned char *p, size_t n)
{
	size_t		i = 0;

	while (i < n)
	{
		unsigned char c = p[i];
		int			len;
		unsigned char lo = 0x80,
					hi = 0xBF;

		if (c == 0)
			return false;
		if (c < 0x80)
		{
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			len = 2;
		else if (c >= 0xE0 && c <= 0xEF)
		{
			len = 3;
			if (c == 0xE0)
				lo = 0xA0;
			if (c == 0xED)
				hi = 0x9F;
		}
		else if (c >= 0xF0 && c <= 0xF4)
		{
			len = 4;
			if (c == 0xF0)
				lo = 0x90;
			if (c == 0xF4)
				hi = 0x8F;
		}
		else
			return false;
		if (i + len > n)
			return false;
		if (p[i + 1] < lo || p[i + 1] > hi)
			return false;
		for (int j = 2; j < len; j++)
			if (p[i + j] < 0x80 || p[i + j] > 0xBF)
				return false;
		i += len;
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* connections, statements, the reproducer log, failures */

typedef struct Conn
{
	PGconn	   *pg;
	char		name;
	bool		in_tx;			/* a transaction block is open */
	bool		failed;			/* ... and an error aborted it */
} Conn;

static Conn A = {NULL, 'A', false, false};
static Conn B = {NULL, 'B', false, false};

/* SQL of the current operation, for a reproducer */
static Buf oplog;

/* An argument: text (format 0) or bytea (format 1); v == NULL is NULL. */
typedef struct Arg
{
	const char *v;
	int			len;
	int			fmt;
} Arg;

static Arg
T(const char *s)
{
	Arg			a = {s, s ? (int) strlen(s) : 0, 0};

	return a;
}

static Arg
BIN(const void *p, int len)
{
	Arg			a = {(const char *) p, len, 1};

	return a;
}

static const Arg NUL = {NULL, 0, 0};

typedef struct Res
{
	PGresult   *r;
	bool		ok;
	char		st[6];			/* SQLSTATE, or "" */
	const char *msg;
	const char *sql;			/* the statement as SQL, for messages */
} Res;

static void
literal(Buf *b, const Arg *a)
{
	if (a->v == NULL)
	{
		buf_puts(b, "NULL");
		return;
	}
	if (a->fmt == 1)
	{
		buf_puts(b, "'\\x");
		for (int i = 0; i < a->len; i++)
			buf_printf(b, "%02x", (unsigned char) a->v[i]);
		buf_puts(b, "'");
		return;
	}
	else
	{
		bool		plain = true;

		for (int i = 0; i < a->len; i++)
		{
			unsigned char c = a->v[i];

			if (c < 0x20 || c >= 0x7F || c == '\\')
				plain = false;
		}
		if (plain && a->len < 400)
		{
			buf_putc(b, '\'');
			for (int i = 0; i < a->len; i++)
			{
				if (a->v[i] == '\'')
					buf_putc(b, '\'');
				buf_putc(b, a->v[i]);
			}
			buf_putc(b, '\'');
			return;
		}
		/* E'' with \xHH for every byte that is not plain ASCII */
		buf_puts(b, "E'");
		for (int i = 0; i < a->len; i++)
		{
			unsigned char c = a->v[i];

			if (c == '\'' || c == '\\')
				buf_printf(b, "\\%c", c);
			else if (c < 0x20 || c >= 0x7F)
				buf_printf(b, "\\x%02x", c);
			else
				buf_putc(b, c);
		}
		buf_putc(b, '\'');
	}
}

/* The statement with its parameters inlined as literals. */
static char *
render_sql(const char *sql, int n, const Arg *args)
{
	Buf			b = {0};

	for (const char *p = sql; *p; p++)
	{
		if (*p == '$' && p[1] >= '1' && p[1] <= '9')
		{
			int			k = 0;

			while (p[1] >= '0' && p[1] <= '9')
				k = k * 10 + (*++p - '0');
			if (k >= 1 && k <= n)
				literal(&b, &args[k - 1]);
			else
				buf_printf(&b, "$%d", k);
		}
		else
			buf_putc(&b, *p);
	}
	{
		char	   *s = abuf(&b);

		free(b.data);
		return s;
	}
}

static void
write_repro(const char *why)
{
	FILE	   *f;

	fprintf(stderr, "---- reproducer (statements of the failing operation, in order) ----\n%s"
			"---- end of reproducer ----\n", oplog.data ? oplog.data : "");
	if (opt_repro == NULL)
		return;
	f = fopen(opt_repro, "w");
	if (f == NULL)
	{
		fprintf(stderr, "ikfuzz: could not write %s: %s\n", opt_repro, strerror(errno));
		return;
	}
	fputs("-- ikfuzz failure:\n--   ", f);
	for (const char *w = why; *w; w++)
	{
		fputc(*w, f);
		if (*w == '\n')
			fputs("--   ", f);
	}
	fprintf(f, "\n-- seed %" PRIu64 ", iteration %ld, operation %s\n"
			"-- replay: ikfuzz --seed %" PRIu64 " --iterations %ld (or --only %ld)\n"
			"-- Statements of the failing operation; lines marked -- B run on a\n"
			"-- second connection, interleaved as shown.\n%s",
			opt_seed, iteration, current_op, opt_seed, iteration + 1, iteration,
			oplog.data ? oplog.data : "");
	fclose(f);
	fprintf(stderr, "ikfuzz: reproducer written to %s\n", opt_repro);
}

static void fail(const char *fmt,...) __attribute__((format(printf, 1, 2), noreturn));

static void
fail(const char *fmt,...)
{
	va_list		ap;
	char		msg[4096];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nikfuzz: FAILURE in operation %s at iteration %ld (seed %" PRIu64 "):\n  %s\n",
			current_op, iteration, opt_seed, msg);
	fprintf(stderr, "ikfuzz: replay: ikfuzz --seed %" PRIu64 " --iterations %ld (the run up to here),\n"
			"        or ikfuzz --seed %" PRIu64 " --only %ld (this iteration alone)\n",
			opt_seed, iteration + 1, opt_seed, iteration);
	write_repro(msg);
	printf("ikfuzz: 0 passed, 1 failed\n");
	exit(1);
}

static void
check_conn(Conn *c, const char *sql)
{
	if (PQstatus(c->pg) != CONNECTION_OK)
		fail("connection %c lost (server crash?) running: %s\n  libpq: %s",
			 c->name, sql, PQerrorMessage(c->pg));
}

static Res
collect(Conn *c, PGresult *r, const char *shown)
{
	Res			res;

	memset(&res, 0, sizeof(res));
	res.r = r;
	res.sql = shown;
	n_statements++;
	check_conn(c, shown);
	if (r == NULL)
		fail("connection %c: no result for: %s\n  libpq: %s", c->name, shown,
			 PQerrorMessage(c->pg));
	switch (PQresultStatus(r))
	{
		case PGRES_COMMAND_OK:
		case PGRES_TUPLES_OK:
			res.ok = true;
			count_state("ok");
			break;
		case PGRES_FATAL_ERROR:
			{
				const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
				const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);

				if (st == NULL)
					fail("connection %c: error without SQLSTATE (connection lost?) running: %s\n  libpq: %s",
						 c->name, shown, PQerrorMessage(c->pg));
				const char *d = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
				const char *ctx = PQresultErrorField(r, PG_DIAG_CONTEXT);
				Buf			mb = {0};

				snprintf(res.st, sizeof(res.st), "%s", st);
				buf_puts(&mb, m ? m : "");
				if (d)
					buf_printf(&mb, " (DETAIL: %s)", d);
				if (ctx)
					buf_printf(&mb, " (CONTEXT: %.300s)", ctx);
				res.msg = abuf(&mb);
				free(mb.data);
				count_state(st);
				if (c->in_tx)
					c->failed = true;
				break;
			}
		default:
			fail("connection %c: unexpected result status %s for: %s",
				 c->name, PQresStatus(PQresultStatus(r)), shown);
	}
	return res;
}

/* Results are freed once per iteration. */
static PGresult **results;
static size_t n_results,
			cap_results;

static void
keep_result(PGresult *r)
{
	if (n_results == cap_results)
	{
		cap_results = cap_results ? cap_results * 2 : 256;
		results = realloc(results, cap_results * sizeof(PGresult *));
	}
	results[n_results++] = r;
}

static void
free_results(void)
{
	for (size_t i = 0; i < n_results; i++)
		PQclear(results[i]);
	n_results = 0;
}

static void
log_statement(Conn *c, const char *shown)
{
	if (c == &B)
		buf_printf(&oplog, "/* B */ %s;\n", shown);
	else
		buf_printf(&oplog, "%s;\n", shown);
	if (opt_verbose)
		fprintf(stderr, "[%ld %c] %.300s\n", iteration, c->name, shown);
}

static Res
run(Conn *c, const char *sql, int n, const Arg *args)
{
	const char *values[16];
	int			lengths[16],
				formats[16];
	char	   *shown = render_sql(sql, n, args);
	PGresult   *r;
	Res			res;

	for (int i = 0; i < n; i++)
	{
		values[i] = args[i].v;
		lengths[i] = args[i].len;
		formats[i] = args[i].fmt;
	}
	log_statement(c, shown);
	r = PQexecParams(c->pg, sql, n, NULL, values, lengths, formats, 0);
	keep_result(r);
	res = collect(c, r, shown);
	return res;
}

static Res
run0(Conn *c, const char *sql)
{
	return run(c, sql, 0, NULL);
}

/* Send a statement without waiting for its result (a claim that waits). */
static char *
run_send(Conn *c, const char *sql, int n, const Arg *args)
{
	const char *values[16];
	int			lengths[16],
				formats[16];
	char	   *shown = render_sql(sql, n, args);

	for (int i = 0; i < n; i++)
	{
		values[i] = args[i].v;
		lengths[i] = args[i].len;
		formats[i] = args[i].fmt;
	}
	buf_printf(&oplog, "-- (sent without waiting for the result)\n");
	log_statement(c, shown);
	if (!PQsendQueryParams(c->pg, sql, n, NULL, values, lengths, formats, 0))
		fail("connection %c: could not send: %s\n  libpq: %s", c->name, shown,
			 PQerrorMessage(c->pg));
	return shown;
}

static Res
run_wait(Conn *c, const char *shown)
{
	PGresult   *r,
			   *last = NULL;

	while ((r = PQgetResult(c->pg)) != NULL)
	{
		if (last)
			PQclear(last);
		last = r;
	}
	buf_printf(&oplog, "-- (result of the statement sent by %c arrives here)\n", c->name);
	keep_result(last);
	return collect(c, last, shown);
}

/* true when the statement is still running after ms milliseconds */
static bool
still_busy(Conn *c, int ms)
{
	usleep(ms * 1000);
	if (!PQconsumeInput(c->pg))
		check_conn(c, "PQconsumeInput");
	return PQisBusy(c->pg);
}

static const char *
val(Res *r, int row, int col)
{
	if (PQgetisnull(r->r, row, col))
		return NULL;
	return PQgetvalue(r->r, row, col);
}

static void
describe(Buf *b, Res *r)
{
	if (r->ok)
	{
		buf_puts(b, "success");
		if (PQresultStatus(r->r) == PGRES_TUPLES_OK && PQntuples(r->r) > 0)
		{
			buf_puts(b, " (");
			for (int i = 0; i < PQnfields(r->r) && i < 8; i++)
			{
				const char *v = val(r, 0, i);

				buf_printf(b, "%s%s=%.80s", i ? ", " : "", PQfname(r->r, i),
						   v ? v : "NULL");
			}
			buf_puts(b, ")");
		}
	}
	else
		buf_printf(b, "ERROR %s: %s", r->st, r->msg);
}

/* Expectations: a list of SQLSTATEs; "ok" means success is allowed. */
static bool
allowed(Res *r, const char *const *list)
{
	for (; *list; list++)
	{
		if (strcmp(*list, "ok") == 0 ? r->ok : (!r->ok && strcmp(*list, r->st) == 0))
			return true;
	}
	return false;
}

static void
expect_list(Res *r, const char *const *list, const char *why)
{
	Buf			b = {0};

	n_checks++;
	if (allowed(r, list))
		return;
	buf_printf(&b, "%s\n  statement: %.2000s\n  expected: ", why, r->sql);
	for (const char *const *p = list; *p; p++)
		buf_printf(&b, "%s%s", p == list ? "" : " or ", *p);
	buf_puts(&b, "\n  got: ");
	describe(&b, r);
	fail("%s", b.data);
}

#define EXPECT(r, why, ...) \
	do { const char *const l_[] = {__VA_ARGS__, NULL}; expect_list((r), l_, (why)); } while (0)

static void
check(bool cond, Res *r, const char *fmt,...) __attribute__((format(printf, 3, 4)));

static void
check(bool cond, Res *r, const char *fmt,...)
{
	va_list		ap;
	char		msg[2048];
	Buf			b = {0};

	n_checks++;
	if (cond)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	buf_printf(&b, "%s", msg);
	if (r)
	{
		buf_printf(&b, "\n  statement: %.2000s\n  got: ", r->sql);
		describe(&b, r);
	}
	fail("%s", b.data);
}

static void
begin(Conn *c, const char *iso)
{
	char		sql[128];
	Res			r;

	snprintf(sql, sizeof(sql), "BEGIN ISOLATION LEVEL %s", iso);
	r = run0(c, sql);
	EXPECT(&r, "BEGIN", "ok");
	c->in_tx = true;
	c->failed = false;
}

/* End a transaction; returns the result of COMMIT (or of ROLLBACK). */
static Res
finish(Conn *c, bool commit)
{
	Res			r = run0(c, commit && !c->failed ? "COMMIT" : "ROLLBACK");

	c->in_tx = false;
	c->failed = false;
	return r;
}

static Res
rollback(Conn *c)
{
	Res			r = finish(c, false);

	EXPECT(&r, "ROLLBACK", "ok");
	return r;
}

/* ------------------------------------------------------------------ */
/* generators of arguments, each knowing whether what it made is valid */

typedef enum Validity
{
	V_OK,						/* a good argument */
	V_BAD,						/* the function must raise IK400 */
	V_ENCODING					/* not UTF-8: PostgreSQL refuses it (22021) */
} Validity;

typedef struct Text
{
	char	   *s;				/* NULL for SQL NULL */
	int			len;
	Validity	v;
	const char *what;			/* what kind, for messages */
} Text;

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
static Text
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

static Arg
targ(const Text *t)
{
	Arg			a = {t->s, t->len, 0};

	return a;
}

/* Fingerprints passed to claim: bytea, 1 to 255 bytes. */
typedef struct Bytes
{
	char	   *p;				/* NULL for SQL NULL */
	int			len;
	Validity	v;
} Bytes;

static Bytes
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

static Arg
barg(const Bytes *b)
{
	return BIN(b->p, b->len);
}

/* Intervals: the three fields PostgreSQL keeps; text that round-trips. */
typedef struct Iv
{
	bool		isnull;
	int32_t		month;
	int32_t		day;
	int64_t		usec;
	char	   *text;
} Iv;

static void
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
static int64_t
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

static Iv
iv_ms_make(int64_t ms)
{
	Iv			iv = {0};

	iv.usec = ms * 1000;
	iv_text(&iv);
	return iv;
}

/* A small wait: NULL (the GUC, 0), zero, or up to 30 ms. */
static Iv
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
static Iv
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
static Validity
judge_wait(const Iv *iv)
{
	int64_t		ms;

	if (iv->isnull)
		return V_OK;
	ms = iv_ms(iv);
	return (ms < 0 || ms > INT_MAX) ? V_BAD : V_OK;
}

static Validity
judge_lease(const Iv *iv)
{
	int64_t		ms;

	if (iv->isnull)
		return V_OK;
	ms = iv_ms(iv);
	return (ms <= 0 || ms > INT_MAX) ? V_BAD : V_OK;
}

static Arg
ivarg(const Iv *iv)
{
	return T(iv->isnull ? NULL : iv->text);
}

/* HTTP statuses: mostly valid, sometimes around and far off the range. */
static int64_t
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

static char *
itoa_a(int64_t v)
{
	char		buf[32];

	snprintf(buf, sizeof(buf), "%" PRId64, v);
	return astrdup(buf, strlen(buf));
}

static char *
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

static Text
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

static void
upper_ascii(char *dst, const char *src, int n)
{
	for (int i = 0; i < n; i++)
		dst[i] = (src[i] >= 'a' && src[i] <= 'z') ? (char) (src[i] - 32) : src[i];
}

/* The same method in another ASCII case. */
static char *
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

/* ------------------------------------------------------------------ */
/* JSON values as trees, rendered many ways */

enum
{
	J_NULL, J_TRUE, J_FALSE, J_NUM, J_STR, J_ARR, J_OBJ
};

typedef struct J
{
	int			k;
	/* J_NUM: (neg ? -1 : 1) * 0.dig * 10^e; dig "" is zero */
	bool		neg;
	char	   *dig;
	int			e;
	/* J_STR */
	uint32_t   *cp;
	int			ncp;
	/* J_ARR, J_OBJ */
	int			n;
	struct J  **v;
	struct J  **key;			/* J_OBJ: J_STR keys, unique */
} J;

static int jbudget;				/* nodes left in the value being made */

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

static J *
jnew(int k)
{
	J		   *j = amalloc(sizeof(J));

	j->k = k;
	jbudget--;
	return j;
}

static J *
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

static J	*gen_json(int depth);

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

static void
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

static J *
gen_json(int depth)
{
	if (depth <= 0 || jbudget <= 0 || chance(45))
		return gen_scalar();
	return gen_container(depth, (int) rnd_range(0, 5));
}

/* A body to fingerprint or store: usually small, sometimes extreme. */
static J *
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

static J *
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
static void
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

/* How to write a value. */
typedef struct Style
{
	bool		ws;				/* random white space between tokens */
	bool		shuffle;		/* object members in random order */
	bool		dups;			/* earlier duplicates of keys (the last wins) */
	bool		numbers;		/* numbers respelled */
	bool		escapes;		/* characters written as \u escapes */
} Style;

static const Style plain_style = {false, false, false, false, false};

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

static char *
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
static void
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

static bool
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

static char *
hex_of(const uint8_t *p, int n)
{
	char	   *s = amalloc(2 * n + 3);

	strcpy(s, "\\x");
	for (int i = 0; i < n; i++)
		sprintf(s + 2 + 2 * i, "%02x", p[i]);
	return s;
}

/* ------------------------------------------------------------------ */
/* shared state */

static bool is_superuser;
static bool preloaded;
static char *secret;			/* fingerprint secret in force in A's transaction */

/* A random secret; the GUC is a C string, so no NUL. */
static char *
gen_secret(void)
{
	Buf			b = {0};
	int			n = (int) rnd_range(1, 80);
	char	   *r;

	for (int i = 0; i < n; i++)
	{
		if (chance(10))
			buf_puts(&b, "\xc3\xa9");
		else
			buf_putc(&b, (char) rnd_range(0x20, 0x7E));
	}
	r = abuf(&b);
	free(b.data);
	return r;
}

/* Inside A's transaction: maybe switch to a random fingerprint secret. */
static void
maybe_secret(void)
{
	secret = NULL;
	if (is_superuser && chance(30))
	{
		Arg			a[1];
		Res			r;

		secret = gen_secret();
		a[0] = T(secret);
		r = run(&A, "SELECT set_config('idempotency.fingerprint_secret', $1, true)", 1, a);
		EXPECT(&r, "setting the fingerprint secret", "ok");
	}
}

/* ------------------------------------------------------------------ */
/* operation: bodies equal as jsonb fingerprint equal */

static Text
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

static void
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

/* ------------------------------------------------------------------ */
/* operation: fingerprint's arguments, and its text parser vs jsonb's */

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

static void
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

/* ------------------------------------------------------------------ */
/* the model of a few keys, whose outcomes the fuzzer predicts exactly */

#define N_MSCOPES 3
#define N_MKEYS 8
#define N_FPS 3

typedef enum MState
{
	M_ABSENT,
	M_DONE,
	M_DURABLE
} MState;

typedef struct MKey
{
	MState		st;
	int			fp;				/* which of the fingerprints below */
	/* M_DONE: the stored response */
	int			status;
	char	   *body;			/* JSON text or NULL */
	char	   *headers;
	/* M_DURABLE */
	char		token[40];
	char		stale[40];		/* a token fenced off by a resume, or "" */
	bool		long_lease;		/* >= 1 hour: cannot lapse during a run */
	bool		ended;			/* a 5xx ended the lease: the next claim resumes */
	char	   *rp;				/* last recovery point, or NULL */
} MKey;

static MKey model[N_MSCOPES][N_MKEYS];
static uint8_t model_fp[N_FPS][64];
static int	model_fp_len[N_FPS] = {32, 32, 1};

static char *
mscope(int s)
{
	char		buf[32];

	snprintf(buf, sizeof(buf), "fz.m%d", s);
	return astrdup(buf, strlen(buf));
}

static char *
mkey(int k)
{
	char		buf[32];

	snprintf(buf, sizeof(buf), "k\xc3\xa9%02d", k);
	return astrdup(buf, strlen(buf));
}

static void
mkey_set_done(MKey *mk, int fp, int status, const char *body, const char *headers)
{
	mk->st = M_DONE;
	mk->fp = fp;
	mk->status = status;
	free(mk->body);
	free(mk->headers);
	mk->body = xstrdup(body);
	mk->headers = xstrdup(headers);
	mk->token[0] = mk->stale[0] = '\0';
	mk->ended = false;
}

static void
mkey_set_absent(MKey *mk)
{
	mk->st = M_ABSENT;
	free(mk->body);
	free(mk->headers);
	free(mk->rp);
	mk->body = mk->headers = mk->rp = NULL;
	mk->token[0] = mk->stale[0] = '\0';
	mk->ended = false;
}

/* A response body, or headers (a JSON object), to store: text or NULL. */
static char *
gen_response_json(bool object)
{
	J		   *j;

	if (chance(20))
		return NULL;
	jbudget = 40;
	if (object)
	{
		int			n = (int) rnd_range(0, 4);

		j = jnew(J_OBJ);
		j->v = amalloc(sizeof(J *) * (n + 1));
		j->key = amalloc(sizeof(J *) * (n + 1));
		for (int i = 0; i < n; i++)
			obj_add(j, gen_str_node(8), gen_json(2));
	}
	else
		j = gen_body();
	return json_text(j, chance(50) ? &plain_style : &(Style) {true, true, true, true, true});
}

#define CLAIM_SQL \
	"SELECT outcome, response_status," \
	" response_body IS NOT DISTINCT FROM $6::jsonb," \
	" response_headers IS NOT DISTINCT FROM $7::jsonb," \
	" recovery_point, first_seen IS NOT NULL AS first_seen_ok, lease_token" \
	" FROM idempotency.claim($1::text, $2::text, $3::bytea, $4::interval, $5::interval)"

/* Claim a modelled key on connection c; returns the result. */
static Res
model_claim_as(Conn *c, int s, int k, int fp, const Iv *lease, const Iv *wait,
			   const MKey *mk)
{
	Arg			a[7];

	a[0] = T(mscope(s));
	a[1] = T(mkey(k));
	a[2] = BIN(model_fp[fp], model_fp_len[fp]);
	a[3] = ivarg(lease);
	a[4] = ivarg(wait);
	a[5] = T(mk->st == M_DONE ? mk->body : NULL);
	a[6] = T(mk->st == M_DONE ? mk->headers : NULL);
	return run(c, CLAIM_SQL, 7, a);
}

/* ... expecting what the model says of the key */
static Res
model_claim(Conn *c, int s, int k, int fp, const Iv *lease, const Iv *wait)
{
	return model_claim_as(c, s, k, fp, lease, wait, &model[s][k]);
}

/* Every successful claim: one row, a known outcome, never NULL. */
static const char *
claim_outcome(Res *r)
{
	const char *o;

	check(PQntuples(r->r) == 1, r, "claim() returned %d rows", PQntuples(r->r));
	o = val(r, 0, 0);
	check(o != NULL, r, "claim() returned a NULL outcome");
	check(strcmp(o, "new") == 0 || strcmp(o, "replay") == 0 || strcmp(o, "resume") == 0,
		  r, "claim() returned outcome '%s'", o);
	{
		int			fs = PQfnumber(r->r, "first_seen_ok");

		if (fs >= 0)
			check(strcmp(val(r, 0, fs), "t") == 0, r, "claim() returned a NULL first_seen");
	}
	return o;
}

/* Check a claim of a modelled key against the model; true if it is 'new'. */
static void
check_model_claim(Res *r, MKey *mk, int fp, bool durable, bool may_resume,
				  bool serializable_race)
{
	const char *o;

	if (serializable_race && !r->ok && strcmp(r->st, "40001") == 0)
		return;
	switch (mk->st)
	{
		case M_ABSENT:
			EXPECT(r, "claim of a key that has no row", "ok");
			o = claim_outcome(r);
			check(strcmp(o, "new") == 0, r, "claim of an absent key is not 'new'");
			check(durable == (val(r, 0, 6) != NULL), r,
				  "a new claim %s a lease token", durable ? "without" : "with");
			check(val(r, 0, 1) == NULL && val(r, 0, 4) == NULL, r,
				  "a new claim returned a response status or recovery point");
			break;
		case M_DONE:
			if (fp != mk->fp)
			{
				EXPECT(r, "claim of a completed key with another fingerprint", "IK422");
				break;
			}
			EXPECT(r, "claim of a completed key with its fingerprint", "ok");
			o = claim_outcome(r);
			check(strcmp(o, "replay") == 0, r, "claim of a completed key is not 'replay'");
			check(val(r, 0, 1) && atoi(val(r, 0, 1)) == mk->status, r,
				  "replay returned another status than %d", mk->status);
			check(strcmp(val(r, 0, 2), "t") == 0, r, "replay returned another body than %.200s",
				  mk->body ? mk->body : "NULL");
			check(strcmp(val(r, 0, 3), "t") == 0, r, "replay returned other headers than %.200s",
				  mk->headers ? mk->headers : "NULL");
			check(val(r, 0, 6) == NULL, r, "replay returned a lease token");
			check((mk->rp == NULL) == (val(r, 0, 4) == NULL) &&
				  (mk->rp == NULL || strcmp(mk->rp, val(r, 0, 4)) == 0), r,
				  "replay returned recovery point %s, the last checkpoint was %s",
				  val(r, 0, 4) ? val(r, 0, 4) : "NULL", mk->rp ? mk->rp : "NULL");
			break;
		case M_DURABLE:
			if (fp != mk->fp)
			{
				EXPECT(r, "claim of a durable claim with another fingerprint", "IK422");
				break;
			}
			if (mk->ended)
			{
				EXPECT(r, "claim of a durable claim whose lease a 5xx ended", "ok");
				o = claim_outcome(r);
				check(strcmp(o, "resume") == 0, r,
					  "a durable claim whose lease a 5xx ended is not 'resume'd");
				check(val(r, 0, 6) && strcmp(val(r, 0, 6), mk->token) != 0, r,
					  "a resume did not hand out a new lease token");
				check(mk->rp && val(r, 0, 4) && strcmp(mk->rp, val(r, 0, 4)) == 0, r,
					  "resume returned recovery point %s, the last checkpoint was %s",
					  val(r, 0, 4) ? val(r, 0, 4) : "NULL", mk->rp ? mk->rp : "NULL");
				break;
			}
			if (mk->long_lease || !may_resume)
			{
				EXPECT(r, "claim of a durable claim whose lease is live", "IK409");
				break;
			}
			EXPECT(r, "claim of a durable claim whose short lease may have lapsed", "IK409", "ok");
			if (r->ok)
			{
				o = claim_outcome(r);
				check(strcmp(o, "resume") == 0, r, "a lapsed durable claim is not 'resume'd");
				check(val(r, 0, 6) && strcmp(val(r, 0, 6), mk->token) != 0, r,
					  "a resume did not hand out a new lease token");
				check((mk->rp == NULL) == (val(r, 0, 4) == NULL) &&
					  (mk->rp == NULL || strcmp(mk->rp, val(r, 0, 4)) == 0), r,
					  "resume returned recovery point %s, the last checkpoint was %s",
					  val(r, 0, 4) ? val(r, 0, 4) : "NULL", mk->rp ? mk->rp : "NULL");
			}
			break;
	}
}

static int
pick_fp(const MKey *mk)
{
	if (mk->st != M_ABSENT && chance(70))
		return mk->fp;
	return (int) rnd(N_FPS);
}

static const char *
pick_iso(int rr_percent)
{
	if (!chance(rr_percent))
		return "READ COMMITTED";
	return chance(50) ? "REPEATABLE READ" : "SERIALIZABLE";
}

static const char *
complete_result_for(int status)
{
	return status >= 500 ? "released" : "stored";
}

/* complete() of a modelled key, in this transaction's claim or by token */
static Res
model_complete(Conn *c, int s, int k, int status, const char *body, const char *headers,
			   const char *token)
{
	Arg			a[6];

	a[0] = T(mscope(s));
	a[1] = T(mkey(k));
	a[2] = T(itoa_a(status));
	a[3] = T(body);
	a[4] = T(headers);
	a[5] = T(token);
	return run(c, "SELECT idempotency.complete($1::text, $2::text, $3::int, $4::jsonb, $5::jsonb, $6::uuid)",
			   6, a);
}

static Res
model_release(Conn *c, int s, int k, const char *token)
{
	Arg			a[3];

	a[0] = T(mscope(s));
	a[1] = T(mkey(k));
	a[2] = T(token);
	return run(c, "SELECT idempotency.release($1::text, $2::text, $3::uuid)", 3, a);
}

static void
check_complete_result(Res *r, int status)
{
	EXPECT(r, "complete() of an open claim", "ok");
	check(val(r, 0, 0) && strcmp(val(r, 0, 0), complete_result_for(status)) == 0, r,
		  "complete(%d) did not return '%s'", status, complete_result_for(status));
}

/*
 * A request in one transaction: claim, then complete, release, forget to
 * close, or claim twice; savepoints; COMMIT or ROLLBACK.
 */
static void
op_model_request(void)
{
	int			s = (int) rnd(N_MSCOPES),
				k = (int) rnd(N_MKEYS);
	MKey	   *mk = &model[s][k];
	int			fp = pick_fp(mk);
	Iv			nolease = {.isnull = true},
				wait = gen_small_wait();
	bool		sp = chance(25);
	bool		open = false;	/* an open claim of ours in this transaction */
	bool		stored = false;
	int			status = 0;
	char	   *body = NULL,
			   *headers = NULL;
	Res			r;

	begin(&A, pick_iso(15));
	if (sp)
		run0(&A, "SAVEPOINT s1");
	r = model_claim(&A, s, k, fp, &nolease, &wait);
	check_model_claim(&r, mk, fp, false, true, false);
	if (r.ok && strcmp(val(&r, 0, 0), "resume") == 0)
	{
		/* a resumed durable claim: the new token holds it now */
		memcpy(mk->stale, mk->token, sizeof(mk->stale));
		snprintf(mk->token, sizeof(mk->token), "%s", val(&r, 0, 6));
		mk->ended = false;
		r = finish(&A, true);
		EXPECT(&r, "COMMIT of a resume", "ok");
		return;
	}
	if (r.ok && strcmp(val(&r, 0, 0), "new") == 0)
	{
		open = true;
		switch (rnd(6))
		{
			case 0:
			case 1:
			case 2:
				status = (int) (chance(80) ? rnd_range(100, 499) : rnd_range(500, 599));
				body = gen_response_json(false);
				headers = gen_response_json(true);
				r = model_complete(&A, s, k, status, body, headers, NULL);
				check_complete_result(&r, status);
				open = false;
				stored = status < 500;
				if (stored && chance(40))
				{
					/* a replay of our own completed key, before commit */
					MKey		pending = {0};

					pending.st = M_DONE;
					pending.fp = fp;
					pending.status = status;
					pending.body = body;
					pending.headers = headers;
					r = model_claim_as(&A, s, k, fp, &nolease, &wait, &pending);
					check_model_claim(&r, &pending, fp, false, false, false);
				}
				if (chance(15))
				{
					r = model_complete(&A, s, k, 200, NULL, NULL, NULL);
					EXPECT(&r, "complete() twice", "IK428");
				}
				break;
			case 3:
				r = model_release(&A, s, k, NULL);
				EXPECT(&r, "release() of an open claim", "ok");
				open = false;
				if (chance(15))
				{
					r = model_release(&A, s, k, NULL);
					EXPECT(&r, "release() twice", "IK428");
				}
				break;
			case 4:
				{
					/* the same key claimed twice in one transaction */
					Iv			w = gen_small_wait();

					r = model_claim(&A, s, k, (int) rnd(N_FPS), &nolease, &w);
					EXPECT(&r, "a second claim of a key this transaction holds", "IK409");
					break;
				}
			default:
				break;			/* left open */
		}
	}
	if (sp && chance(50))
	{
		/* roll the savepoint back: the claim and its completion are forgotten */
		r = run0(&A, "ROLLBACK TO SAVEPOINT s1");
		EXPECT(&r, "ROLLBACK TO SAVEPOINT", "ok");
		A.failed = false;
		open = false;
		stored = false;
	}
	if (A.failed)
	{
		rollback(&A);
		return;
	}
	if (chance(75))
	{
		r = finish(&A, true);
		if (open)
		{
			EXPECT(&r, "COMMIT with a claim neither completed nor released", "IK428");
			return;
		}
		EXPECT(&r, "COMMIT", "ok");
		if (stored)
		{
			free(mk->rp);
			mk->rp = NULL;
			mkey_set_done(mk, fp, status, body, headers);
		}
	}
	else
		rollback(&A);
}

static const char *
pick_token(MKey *mk, int *which)
{
	/* 0: the live token, 1: a stale one, 2: a random one */
	*which = 0;
	if (mk->st == M_DURABLE && chance(75))
		return mk->token;
	if (mk->stale[0] && chance(50))
	{
		*which = 1;
		return mk->stale;
	}
	*which = 2;
	return gen_uuid();
}

static Text
gen_recovery_point(int bad_percent)
{
	return gen_name(1024, bad_percent);
}

/* Durable claims of modelled keys: lease, checkpoint, complete, release. */
static void
op_model_durable(void)
{
	int			s = (int) rnd(N_MSCOPES),
				k = (int) rnd(N_MKEYS);
	MKey	   *mk = &model[s][k];
	bool		commit = chance(80);
	Res			r;
	Arg			a[4];
	int			which;
	const char *tok;

	if (mk->st != M_DURABLE || chance(25))
	{
		/* claim with a lease */
		bool		long_lease = chance(50);
		Iv			lease = iv_ms_make(long_lease ? 3600 * 1000 : rnd_range(1, 3));
		Iv			wait = gen_small_wait();
		int			fp = pick_fp(mk);

		if (chance(20))
			lease.usec += rnd_range(0, 999);
		iv_text(&lease);
		begin(&A, "READ COMMITTED");
		r = model_claim(&A, s, k, fp, &lease, &wait);
		check_model_claim(&r, mk, fp, true, true, false);
		if (!r.ok)
		{
			rollback(&A);
			return;
		}
		{
			const char *o = val(&r, 0, 0);
			const char *newtok = val(&r, 0, 6);
			Res			end = finish(&A, commit);

			EXPECT(&end, "end of a durable claim's transaction", "ok");
			if (!commit)
				return;
			if (strcmp(o, "new") == 0)
			{
				mkey_set_absent(mk);
				mk->st = M_DURABLE;
				mk->fp = fp;
				mk->long_lease = long_lease;
				snprintf(mk->token, sizeof(mk->token), "%s", newtok);
			}
			else if (strcmp(o, "resume") == 0)
			{
				memcpy(mk->stale, mk->token, sizeof(mk->stale));
				snprintf(mk->token, sizeof(mk->token), "%s", newtok);
				mk->long_lease = long_lease;
				mk->ended = false;
			}
		}
		return;
	}

	tok = pick_token(mk, &which);
	begin(&A, "READ COMMITTED");
	switch (rnd(5))
	{
		case 0:
		case 1:
			{
				Text		rp = gen_recovery_point(0);

				a[0] = T(mscope(s));
				a[1] = T(mkey(k));
				a[2] = targ(&rp);
				a[3] = T(tok);
				r = run(&A, "SELECT idempotency.checkpoint($1::text, $2::text, $3::text, $4::uuid)", 4, a);
				if (which == 0)
				{
					EXPECT(&r, "checkpoint() with the live token", "ok");
					if (commit)
					{
						/* the checkpoint renews the lease */
						free(mk->rp);
						mk->rp = xstrdup(rp.s);
						mk->ended = false;
					}
				}
				else
					EXPECT(&r, "checkpoint() with a stale or unknown token", "IK409");
				break;
			}
		case 2:
			{
				int			status = (int) (chance(80) ? rnd_range(100, 499) : rnd_range(500, 599));
				char	   *body = gen_response_json(false),
						   *headers = gen_response_json(true);

				r = model_complete(&A, s, k, status, body, headers, tok);
				if (which == 0)
				{
					check_complete_result(&r, status);
					if (commit)
					{
						if (status < 500)
							mkey_set_done(mk, mk->fp, status, body, headers);	/* keeps rp */
						else if (mk->rp)
							mk->ended = true;	/* kept, to resume from mk->rp */
						else
							mkey_set_absent(mk);
					}
				}
				else
					EXPECT(&r, "complete() with a stale or unknown token", "IK409");
				break;
			}
		case 3:
			r = model_release(&A, s, k, tok);
			if (which == 0)
			{
				EXPECT(&r, "release() with the live token", "ok");
				if (commit)
					mkey_set_absent(mk);
			}
			else
				EXPECT(&r, "release() with a stale or unknown token", "IK409");
			break;
		default:
			/* complete() without the token, in a transaction that did not claim */
			r = model_complete(&A, s, k, 200, NULL, NULL, NULL);
			EXPECT(&r, "complete() of a durable claim without its token", "IK428");
			break;
	}
	if (A.failed)
	{
		rollback(&A);
		return;
	}
	r = finish(&A, commit);
	EXPECT(&r, "end of a lease transaction", "ok");
}

/* Lease calls with a token on keys that have no durable claim: IK428. */
static void
op_model_no_lease(void)
{
	int			s = (int) rnd(N_MSCOPES),
				k = (int) rnd(N_MKEYS);
	MKey	   *mk = &model[s][k];
	char	   *tok = gen_uuid();
	Arg			a[4];
	Res			r;

	if (mk->st == M_DURABLE)
		return;
	begin(&A, "READ COMMITTED");
	switch (rnd(3))
	{
		case 0:
			a[0] = T(mscope(s));
			a[1] = T(mkey(k));
			a[2] = T("step-1");
			a[3] = T(tok);
			r = run(&A, "SELECT idempotency.checkpoint($1::text, $2::text, $3::text, $4::uuid)", 4, a);
			break;
		case 1:
			r = model_complete(&A, s, k, 200, "{}", NULL, tok);
			break;
		default:
			r = model_release(&A, s, k, tok);
			break;
	}
	EXPECT(&r, "a lease call on a key with no durable claim in progress", "IK428");
	rollback(&A);
}

/*
 * Two connections: B holds a key, A's claim conflicts at once, or waits
 * and then replays, gets IK422, or 'new' after B releases or aborts.
 */
static void
op_concurrent(void)
{
	int			s = (int) rnd(N_MSCOPES),
				k = (int) rnd(N_MKEYS);
	MKey	   *mk = &model[s][k];
	int			fpb = pick_fp(mk),
				fpa = chance(70) ? fpb : (int) rnd(N_FPS);
	Iv			nolease = {.isnull = true},
				wait = gen_small_wait();
	Res			r;
	int			ending = (int) rnd(4);
	int			status = (int) (chance(85) ? rnd_range(100, 499) : rnd_range(500, 599));
	char	   *body = gen_response_json(false),
			   *headers = gen_response_json(true);
	bool		async = chance(60);
	const char *iso = pick_iso(25);
	bool		snapshot = strcmp(iso, "READ COMMITTED") != 0;
	char	   *sent = NULL;

	if (mk->st != M_ABSENT)
		return;

	begin(&B, "READ COMMITTED");
	r = model_claim(&B, s, k, fpb, &nolease, &wait);
	check_model_claim(&r, mk, fpb, false, false, false);

	/* A conflicts at once, or within its small wait */
	begin(&A, iso);
	r = model_claim(&A, s, k, fpa, &nolease, &wait);
	EXPECT(&r, "claim of a key another transaction holds (no or a short wait)", "IK409");
	rollback(&A);

	if (async)
	{
		Iv			longwait = iv_ms_make(20000);
		Arg			a[7];

		begin(&A, iso);
		a[0] = T(mscope(s));
		a[1] = T(mkey(k));
		a[2] = BIN(model_fp[fpa], model_fp_len[fpa]);
		a[3] = NUL;
		a[4] = ivarg(&longwait);
		a[5] = T(ending == 0 && status < 500 ? body : NULL);
		a[6] = T(ending == 0 && status < 500 ? headers : NULL);
		sent = run_send(&A, CLAIM_SQL, 7, a);
		/* give it time to queue behind B's lock */
		check(still_busy(&A, 20), NULL,
			  "a claim with wait => 20 s did not wait for the key B holds");
	}

	/* B ends: stores, stores a 5xx (released), releases, or aborts */
	switch (ending)
	{
		case 0:
			r = model_complete(&B, s, k, status, body, headers, NULL);
			check_complete_result(&r, status);
			r = finish(&B, true);
			EXPECT(&r, "COMMIT", "ok");
			if (status < 500)
				mkey_set_done(mk, fpb, status, body, headers);
			break;
		case 1:
			r = model_release(&B, s, k, NULL);
			EXPECT(&r, "release()", "ok");
			r = finish(&B, true);
			EXPECT(&r, "COMMIT", "ok");
			break;
		case 2:
			rollback(&B);
			break;
		default:
			r = finish(&B, true);
			EXPECT(&r, "COMMIT with a claim neither completed nor released", "IK428");
			break;
	}

	if (async)
	{
		r = run_wait(&A, sent);
		/* a waiter replays, gets IK422, or gets 'new' once B is gone */
		check_model_claim(&r, mk, fpa, false, false, snapshot);
	}
	else
	{
		begin(&A, iso);
		r = model_claim(&A, s, k, fpa, &nolease, &wait);
		check_model_claim(&r, mk, fpa, false, false, false);
	}
	if (r.ok && strcmp(val(&r, 0, 0), "new") == 0)
	{
		r = model_release(&A, s, k, NULL);
		EXPECT(&r, "release()", "ok");
	}
	rollback(&A);
}

/* ------------------------------------------------------------------ */
/* operation: random arguments, with a model of this transaction only */

typedef enum TState
{
	T_NONE,						/* nothing in this transaction */
	T_OPEN,						/* claimed 'new', not yet closed */
	T_STORED,					/* completed and stored */
	T_RELEASED,					/* released (the lock is still ours) */
	T_DURABLE					/* a durable claim written in this transaction */
} TState;

typedef struct TKey
{
	Text		scope,
				key;
	TState		st;
	Bytes		fp;
	char		token[40];
	int64_t		lease_ms;
	/* T_DURABLE: a checkpoint() with the token recorded a recovery point */
	bool		rp;
	/*
	 * T_DURABLE: a 5xx complete() ended the lease of a claim with a recovery
	 * point; the row stays in progress, so the next claim resumes it and
	 * the token still holds it until then
	 */
	bool		ended;
} TKey;

static bool
same_text(const Text *a, const Text *b)
{
	if (a->s == NULL || b->s == NULL)
		return a->s == b->s;
	return a->len == b->len && memcmp(a->s, b->s, a->len) == 0;
}

static bool
tkey_valid(const TKey *t)
{
	return t->scope.v == V_OK && t->key.v == V_OK;
}

/* the worst of several validities: encoding errors come first (at bind) */
static Validity
worst(int n, const Validity *v)
{
	Validity	w = V_OK;

	for (int i = 0; i < n; i++)
		if (v[i] == V_ENCODING)
			return V_ENCODING;
		else if (v[i] == V_BAD)
			w = V_BAD;
	return w;
}

static bool
expect_validity(Res *r, Validity v, const char *what)
{
	char		why[256];

	if (v == V_ENCODING)
	{
		snprintf(why, sizeof(why), "%s with text that is not UTF-8", what);
		EXPECT(r, why, "22021");
		return false;
	}
	if (v == V_BAD)
	{
		snprintf(why, sizeof(why), "%s with an invalid argument", what);
		EXPECT(r, why, "IK400");
		return false;
	}
	if (!r->ok && strcmp(r->st, "IK400") == 0)
	{
		snprintf(why, sizeof(why), "%s with valid arguments", what);
		check(false, r, "%s raised IK400", why);
	}
	return true;
}

static void
op_args(void)
{
	TKey		keys[2];
	int			nkeys = 2;
	int			calls = (int) rnd_range(1, 7);
	Res			r;
	bool		any_open;

	for (int i = 0; i < 2; i++)
	{
		memset(&keys[i], 0, sizeof(TKey));
		keys[i].scope = gen_name(255, 25);
		keys[i].key = gen_name(255, 25);
		keys[i].st = T_NONE;
	}
	/* often the same scope twice */
	if (chance(50))
		keys[1].scope = keys[0].scope;
	/* the same scope and key twice is one key: model it once */
	if (same_text(&keys[0].scope, &keys[1].scope) && same_text(&keys[0].key, &keys[1].key))
		nkeys = 1;

	begin(&A, "READ COMMITTED");
	for (int c = 0; c < calls; c++)
	{
		TKey	   *t = &keys[rnd(2) % nkeys];
		TKey		saved = *t;
		int			fn = (int) rnd(6);
		Validity	v[6];
		Arg			a[6];
		bool		rollback_to = false;

		run0(&A, "SAVEPOINT c");
		v[0] = t->scope.v;
		v[1] = t->key.v;
		a[0] = targ(&t->scope);
		a[1] = targ(&t->key);
		switch (fn)
		{
			case 0:
			case 1:
				{
					/* claim */
					Bytes		fp = (t->st != T_NONE && t->fp.v == V_OK && chance(70)) ? t->fp : gen_fp_arg(15);
					Iv			lease = chance(60) ? (Iv) {.isnull = true} : (chance(50) ? gen_interval() : iv_ms_make(rnd_range(1, 3600000)));
					Iv			wait = gen_interval();
					bool		same_fp = fp.v == V_OK && t->fp.p && fp.len == t->fp.len &&
						memcmp(fp.p, t->fp.p, fp.len) == 0;

					if (lease.text == NULL && !lease.isnull)
						iv_text(&lease);
					/* never wait long for a durable claim's lease, ours or not */
					if (t->st == T_DURABLE && judge_wait(&wait) == V_OK)
						wait = gen_small_wait();
					v[2] = fp.v;
					v[3] = judge_lease(&lease);
					v[4] = judge_wait(&wait);
					a[2] = fp.p ? barg(&fp) : NUL;
					a[3] = ivarg(&lease);
					a[4] = ivarg(&wait);
					r = run(&A, "SELECT outcome, lease_token, response_status, first_seen IS NOT NULL AS first_seen_ok FROM idempotency.claim($1::text, $2::text, $3::bytea, $4::interval, $5::interval)", 5, a);
					if (!expect_validity(&r, worst(5, v), "claim()"))
						break;
					switch (t->st)
					{
						case T_NONE:
						case T_RELEASED:
							EXPECT(&r, "claim of a key no one holds", "ok");
							check(strcmp(claim_outcome(&r), "new") == 0, &r, "claim of a free key is not 'new'");
							t->fp = fp;
							if (lease.isnull)
								t->st = T_OPEN;
							else
							{
								check(val(&r, 0, 1) != NULL, &r, "a durable claim has no lease token");
								t->st = T_DURABLE;
								snprintf(t->token, sizeof(t->token), "%s", val(&r, 0, 1));
								t->lease_ms = iv_ms(&lease);
								t->rp = false;
								t->ended = false;
							}
							break;
						case T_OPEN:
							EXPECT(&r, "a second claim of a key this transaction holds", "IK409");
							break;
						case T_STORED:
							if (same_fp)
							{
								EXPECT(&r, "claim of a key completed in this transaction", "ok");
								check(strcmp(claim_outcome(&r), "replay") == 0, &r, "not a replay");
							}
							else
								EXPECT(&r, "claim of a completed key with another fingerprint", "IK422");
							break;
						case T_DURABLE:
							if (!same_fp)
								EXPECT(&r, "claim of a durable claim with another fingerprint", "IK422");
							else if (t->ended)
							{
								/* the lease is over, however long it was */
								EXPECT(&r, "claim of a durable claim whose lease a 5xx ended", "ok");
								check(strcmp(claim_outcome(&r), "resume") == 0, &r,
									  "a durable claim whose lease a 5xx ended is not 'resume'd");
								check(val(&r, 0, 1) && strcmp(val(&r, 0, 1), t->token) != 0, &r,
									  "a resume did not hand out a new lease token");
								snprintf(t->token, sizeof(t->token), "%s", val(&r, 0, 1));
								if (!lease.isnull)
									t->lease_ms = iv_ms(&lease);
								t->ended = false;
							}
							else if (t->lease_ms > 60000)
								EXPECT(&r, "claim of a durable claim with a live lease", "IK409");
							else
							{
								EXPECT(&r, "claim of a durable claim with a short lease", "IK409", "ok");
								if (r.ok)
								{
									check(strcmp(claim_outcome(&r), "resume") == 0, &r, "not a resume");
									snprintf(t->token, sizeof(t->token), "%s", val(&r, 0, 1));
									if (!lease.isnull)
										t->lease_ms = iv_ms(&lease);
								}
							}
							break;
					}
					break;
				}
			case 2:
				{
					/* complete */
					bool		status_null;
					int64_t		status = gen_status(&status_null, 15);
					char	   *body = gen_response_json(false);
					char	   *headers = chance(85) ? gen_response_json(true) : gen_response_json(false);
					bool		headers_bad = headers && headers[strspn(headers, " \t\r\n")] != '{';
					int			which = 2;
					const char *tok = (t->st == T_DURABLE && chance(70)) ? (which = 0, t->token) :
						(chance(50) ? NULL : gen_uuid());

					v[2] = (status_null || status < 100 || status > 599) ? V_BAD : V_OK;
					v[3] = V_OK;
					v[4] = headers_bad ? V_BAD : V_OK;
					a[2] = T(status_null ? NULL : itoa_a(status));
					a[3] = T(body);
					a[4] = T(headers);
					a[5] = T(tok);
					r = run(&A, "SELECT idempotency.complete($1::text, $2::text, $3::int, $4::jsonb, $5::jsonb, $6::uuid)", 6, a);
					if (!expect_validity(&r, worst(5, v), "complete()"))
						break;
					if (tok == NULL)
					{
						if (t->st == T_OPEN)
						{
							check_complete_result(&r, (int) status);
							t->st = status < 500 ? T_STORED : T_RELEASED;
						}
						else
							EXPECT(&r, "complete() without an open claim", "IK428");
					}
					else if (t->st == T_DURABLE)
					{
						if (which == 0)
						{
							check_complete_result(&r, (int) status);
							if (status < 500)
								t->st = T_STORED;
							else if (t->rp)
								t->ended = true;	/* kept in progress, lease ended */
							else
								t->st = T_RELEASED;
						}
						else
							EXPECT(&r, "complete() with a wrong token", "IK409");
					}
					else
						EXPECT(&r, "complete() with a token, no durable claim in progress", "IK428");
					break;
				}
			case 3:
				{
					/* release */
					int			which = 2;
					const char *tok = (t->st == T_DURABLE && chance(70)) ? (which = 0, t->token) :
						(chance(50) ? NULL : gen_uuid());

					a[2] = T(tok);
					r = run(&A, "SELECT idempotency.release($1::text, $2::text, $3::uuid)", 3, a);
					if (!expect_validity(&r, worst(2, v), "release()"))
						break;
					if (tok == NULL)
					{
						if (t->st == T_OPEN)
						{
							EXPECT(&r, "release() of an open claim", "ok");
							t->st = T_RELEASED;
						}
						else
							EXPECT(&r, "release() without an open claim", "IK428");
					}
					else if (t->st == T_DURABLE)
					{
						if (which == 0)
						{
							EXPECT(&r, "release() with the live token", "ok");
							t->st = T_RELEASED;
						}
						else
							EXPECT(&r, "release() with a wrong token", "IK409");
					}
					else
						EXPECT(&r, "release() with a token, no durable claim in progress", "IK428");
					break;
				}
			case 4:
				{
					/* checkpoint */
					Text		rp = gen_recovery_point(20);
					bool		tok_null = chance(8);
					int			which = 2;
					const char *tok = tok_null ? NULL :
						((t->st == T_DURABLE && chance(70)) ? (which = 0, t->token) : gen_uuid());

					v[2] = rp.v;
					v[3] = tok_null ? V_BAD : V_OK;
					a[2] = targ(&rp);
					a[3] = T(tok);
					r = run(&A, "SELECT idempotency.checkpoint($1::text, $2::text, $3::text, $4::uuid)", 4, a);
					if (!expect_validity(&r, worst(4, v), "checkpoint()"))
						break;
					if (t->st == T_DURABLE)
					{
						if (which == 0)
						{
							EXPECT(&r, "checkpoint() with the live token", "ok");
							/* it also renews a lease that a 5xx ended */
							t->rp = true;
							t->ended = false;
						}
						else
							EXPECT(&r, "checkpoint() with a wrong token", "IK409");
					}
					else
						EXPECT(&r, "checkpoint() without a durable claim in progress", "IK428");
					break;
				}
			default:
				{
					/* reap */
					static const int64_t sizes[] = {0, -1, 1, 2, 10000, INT32_MAX, INT32_MIN};
					bool		null_arg = chance(10);
					int64_t		n = sizes[rnd(sizeof(sizes) / sizeof(*sizes))];

					a[0] = T(null_arg ? NULL : itoa_a(n));
					r = run(&A, "SELECT idempotency.reap($1::int)", 1, a);
					if (null_arg || n < 1)
						EXPECT(&r, "reap() with a NULL or non-positive max_rows", "IK400");
					else
					{
						EXPECT(&r, "reap()", "ok");
						check(val(&r, 0, 0) && atoll(val(&r, 0, 0)) >= 0, &r, "reap() returned NULL or < 0");
					}
					break;
				}
		}
		if (!r.ok)
		{
			/* an error: back to the savepoint, nothing happened */
			*t = saved;
			rollback_to = true;
		}
		else if (chance(15))
		{
			/* undo a call that worked: the savepoint forgets it */
			*t = saved;
			rollback_to = true;
		}
		if (rollback_to)
		{
			r = run0(&A, "ROLLBACK TO SAVEPOINT c");
			EXPECT(&r, "ROLLBACK TO SAVEPOINT", "ok");
			A.failed = false;
		}
		else
		{
			r = run0(&A, "RELEASE SAVEPOINT c");
			EXPECT(&r, "RELEASE SAVEPOINT", "ok");
		}
	}
	any_open = (tkey_valid(&keys[0]) && keys[0].st == T_OPEN) ||
		(nkeys == 2 && tkey_valid(&keys[1]) && keys[1].st == T_OPEN);
	if (any_open && chance(40))
	{
		r = finish(&A, true);
		EXPECT(&r, "COMMIT with a claim neither completed nor released", "IK428");
	}
	else
		rollback(&A);
}

/* ------------------------------------------------------------------ */
/* operation: policies and settings, checked loosely */

#define N_CSCOPES 4
#define N_CKEYS 4

static char *
cscope(int s)
{
	char		buf[32];

	snprintf(buf, sizeof(buf), "fz.c%d", s);
	return astrdup(buf, strlen(buf));
}

/* An interval for a policy column: any sign and size, or NULL. */
static Iv
gen_policy_interval(void)
{
	Iv			iv = {0};

	switch (rnd(8))
	{
		case 0:
			iv.isnull = true;
			break;
		case 1:
			iv.usec = rnd_range(1, 5) * 1000000LL;
			break;
		case 2:
			iv.usec = rnd_range(-3, 1) * 1000000LL;
			break;
		case 3:
			iv.day = (int32_t) rnd_range(1, 30);
			break;
		case 4:
			iv.month = (int32_t) rnd_range(1, 1200);
			break;
		case 5:
			iv.usec = rnd_range(1, 999);
			break;
		default:
			iv = gen_interval();
			break;
	}
	/*
	 * Windows past the end of timestamptz's range (300000 years, the extremes
	 * of every field) are included: they once wrapped around into the past
	 * (fuzz/found/policy_window_overflow.sql).  A finding that is not fixed
	 * yet gates its inputs on opt_include_known instead, until it is.
	 */
	iv_text(&iv);
	return iv;
}

static __int128
iv_usec(const Iv *iv)
{
	return (__int128) iv->usec + (__int128) iv->day * 86400000000LL +
		(__int128) iv->month * 30 * 86400000000LL;
}

/* Insert or update a policy row; CHECK constraints decide what goes in. */
static void
upsert_policy(const char *scope, const char *mode, const Iv *ttl, const Iv *retain,
			  const char *cache)
{
	Arg			a[5];
	Res			r;
	bool		bad = false;

	if (mode && strcmp(mode, "off") && strcmp(mode, "shadow") && strcmp(mode, "enforce"))
		bad = true;
	if (!ttl->isnull && iv_usec(ttl) <= 0)
		bad = true;
	if (!retain->isnull && iv_usec(retain) <= 0)
		bad = true;
	if (!ttl->isnull && !retain->isnull && iv_usec(retain) < iv_usec(ttl))
		bad = true;
	a[0] = T(scope);
	a[1] = T(mode);
	a[2] = ivarg(ttl);
	a[3] = ivarg(retain);
	a[4] = T(cache);
	r = run(&A, "INSERT INTO idempotency.policies AS p VALUES ($1::text, $2::text, $3::interval, $4::interval, $5::boolean)"
			" ON CONFLICT (scope) DO UPDATE SET mode = excluded.mode, ttl = excluded.ttl,"
			" retain = excluded.retain, cache_5xx = excluded.cache_5xx", 5, a);
	if (bad)
		EXPECT(&r, "a policy row that breaks a CHECK constraint", "23514");
	else
		EXPECT(&r, "a valid policy row", "ok");
}

/* The rows of idempotency.keys are sane and printable. */
static void
check_keys_table(void)
{
	Res			r = run0(&A, "SELECT count(*) FILTER (WHERE NOT (created_at <= expires_at AND expires_at <= retain_until)"
						 " OR state NOT IN ('completed', 'in_progress')"
						 " OR (state = 'in_progress') <> (lease_token IS NOT NULL)),"
						 " count(*) FROM idempotency.keys");

	EXPECT(&r, "reading idempotency.keys", "ok");
	check(strcmp(val(&r, 0, 0), "0") == 0, &r,
		  "rows of idempotency.keys with created_at > expires_at, expires_at > retain_until, "
		  "or an unknown state");
	if (chance(20))
	{
		r = run0(&A, "SELECT length(k::text) FROM idempotency.keys AS k");
		EXPECT(&r, "printing every row of idempotency.keys", "ok");
	}
}

/*
 * A key stored under a policy with a replay window of at least a minute
 * replays; the row's times are in order.
 */
static void
op_policy_replay(void)
{
	char		scope[32];
	Iv			ttl = gen_policy_interval(),
				retain;
	Iv			nolease = {.isnull = true},
				zero = {0};
	Arg			a[7];
	Res			r;
	uint8_t		fp[32];
	const char *mode = chance(80) ? "enforce" : NULL;

	snprintf(scope, sizeof(scope), "fz.p%ld", iteration);
	if (ttl.isnull || iv_usec(&ttl) < 60 * 1000000LL)
	{
		ttl.isnull = false;
		ttl.month = 0;
		ttl.day = 0;
		ttl.usec = rnd_range(60, 100000) * 1000000LL;
	}
	iv_text(&ttl);
	retain = ttl;
	if (chance(50))
	{
		Iv			more = gen_policy_interval();

		if (!more.isnull && iv_usec(&more) > iv_usec(&ttl))
			retain = more;
	}
	iv_text(&retain);
	iv_text(&zero);
	for (int i = 0; i < 32; i++)
		fp[i] = (uint8_t) rnd(256);

	begin(&A, "READ COMMITTED");
	upsert_policy(scope, mode, &ttl, &retain, chance(50) ? "true" : NULL);
	if (A.failed)
	{
		rollback(&A);
		return;
	}
	r = finish(&A, true);
	EXPECT(&r, "COMMIT", "ok");

	begin(&A, "READ COMMITTED");
	a[0] = T(scope);
	a[1] = T("k");
	a[2] = BIN(fp, 32);
	a[3] = ivarg(&nolease);
	a[4] = ivarg(&zero);
	a[5] = NUL;
	a[6] = NUL;
	r = run(&A, CLAIM_SQL, 7, a);
	EXPECT(&r, "claim of a fresh key under a policy", "ok");
	check(strcmp(claim_outcome(&r), "new") == 0, &r, "a fresh key is not 'new'");
	{
		Arg			c[4];

		c[0] = T(scope);
		c[1] = T("k");
		c[2] = T("201");
		c[3] = T("{\"id\": 1}");
		r = run(&A, "SELECT idempotency.complete($1::text, $2::text, $3::int, $4::jsonb)", 4, c);
		EXPECT(&r, "complete()", "ok");
	}
	r = finish(&A, true);
	EXPECT(&r, "COMMIT", "ok");

	begin(&A, "READ COMMITTED");
	a[5] = T("{\"id\": 1}");
	r = run(&A, CLAIM_SQL, 7, a);
	EXPECT(&r, "claim of a key stored under a policy whose ttl is >= 1 minute", "ok");
	check(strcmp(claim_outcome(&r), "replay") == 0, &r,
		  "a key stored a moment ago under ttl %s, retain %s does not replay", ttl.text, retain.text);
	check(strcmp(val(&r, 0, 2), "t") == 0, &r, "the replay returned another body");
	check_keys_table();
	rollback(&A);

	begin(&A, "READ COMMITTED");
	a[0] = T(scope);
	r = run(&A, "DELETE FROM idempotency.policies WHERE scope = $1::text", 1, a);
	EXPECT(&r, "DELETE policy", "ok");
	r = finish(&A, true);
	EXPECT(&r, "COMMIT", "ok");
}

/* Anything goes on a few scopes with random policies; errors checked. */
static void
op_chaos(void)
{
	const char *iso = pick_iso(30);
	bool		snapshot = strcmp(iso, "READ COMMITTED") != 0;
	bool		b_holds = false;
	int			calls = (int) rnd_range(1, 8);
	Res			r;
	Arg			a[7];

	/* sometimes B holds a chaos key in an open transaction meanwhile */
	if (chance(30))
	{
		Iv			nolease = {.isnull = true},
					w = gen_small_wait();
		uint8_t		fp = (uint8_t) rnd(3);

		begin(&B, "READ COMMITTED");
		a[0] = T(cscope((int) rnd(N_CSCOPES)));
		a[1] = T(itoa_a(rnd(N_CKEYS)));
		a[2] = BIN(&fp, 1);
		a[3] = ivarg(&nolease);
		a[4] = ivarg(&w);
		r = run(&B, "SELECT outcome, first_seen IS NOT NULL AS first_seen_ok FROM idempotency.claim($1::text, $2::text, $3::bytea, $4::interval, $5::interval)", 5, a);
		EXPECT(&r, "B's claim of a chaos key", "ok", "IK409", "IK410", "IK422", "22023");
		if (r.ok)
		{
			claim_outcome(&r);
			b_holds = true;
		}
		else
			rollback(&B);
	}

	begin(&A, iso);
	if (chance(40))
	{
		/* a policy change, committed or not with the rest */
		static const char *const modes[] = {"off", "shadow", "enforce", NULL, "Enforce", "", "on"};
		Iv			ttl = gen_policy_interval(),
					retain = gen_policy_interval();

		run0(&A, "SAVEPOINT pol");
		upsert_policy(cscope((int) rnd(N_CSCOPES)), modes[rnd(7)], &ttl, &retain,
					  chance(30) ? NULL : (chance(50) ? "true" : "false"));
		if (A.failed)
		{
			run0(&A, "ROLLBACK TO SAVEPOINT pol");
			A.failed = false;
		}
	}
	if (chance(15))
	{
		a[0] = T(cscope((int) rnd(N_CSCOPES)));
		r = run(&A, "DELETE FROM idempotency.policies WHERE scope = $1::text", 1, a);
		EXPECT(&r, "DELETE policy", "ok");
	}
	if (chance(40))
	{
		/* settings, for this transaction only */
		static const char *const gucs[] = {"idempotency.mode", "idempotency.enforce_percent",
		"idempotency.ttl", "idempotency.retain", "idempotency.lock_timeout",
		"idempotency.reaper_batch_size"};
		int			g = (int) rnd(6);
		const char *v;
		int64_t		ttl_s = 86400,
					retain_s = 7 * 86400;

		switch (g)
		{
			case 0:
				v = (const char *[]) {"off", "shadow", "enforce"}[rnd(3)];
				break;
			case 1:
				v = itoa_a(rnd_range(0, 100));
				break;
			case 2:
				ttl_s = chance(50) ? rnd_range(1, 5) : rnd_range(1, INT32_MAX);
				v = itoa_a(ttl_s);
				break;
			case 3:
				retain_s = chance(50) ? rnd_range(1, 10) : rnd_range(1, INT32_MAX);
				v = itoa_a(retain_s);
				break;
			case 4:
				v = itoa_a(rnd_range(0, 20));
				break;
			default:
				v = itoa_a(rnd_range(1, 5));
				break;
		}
		if (!is_superuser && (g == 0 || g == 1 || g == 5))
			g = 4, v = "0";
		a[0] = T(gucs[g]);
		a[1] = T(v);
		r = run(&A, "SELECT set_config($1, $2, true)", 2, a);
		EXPECT(&r, "set_config() of an idempotency setting", "ok");
		(void) ttl_s;
		(void) retain_s;
	}
	for (int c = 0; c < calls; c++)
	{
		int			s = (int) rnd(N_CSCOPES);
		char	   *key = itoa_a(rnd(N_CKEYS));
		uint8_t		fp = (uint8_t) rnd(3);
		int			fn = (int) rnd(6);

		run0(&A, "SAVEPOINT c");
		a[0] = T(cscope(s));
		a[1] = T(key);
		switch (fn)
		{
			case 0:
			case 1:
				{
					Iv			lease = chance(70) ? (Iv) {.isnull = true} : iv_ms_make(rnd_range(1, 5000));
					Iv			w = gen_small_wait();

					a[2] = BIN(&fp, 1);
					a[3] = ivarg(&lease);
					a[4] = ivarg(&w);
					r = run(&A, "SELECT outcome, first_seen IS NOT NULL AS first_seen_ok FROM idempotency.claim($1::text, $2::text, $3::bytea, $4::interval, $5::interval)", 5, a);
					break;
				}
			case 2:
				a[2] = T(itoa_a(chance(70) ? rnd_range(100, 499) : rnd_range(500, 599)));
				a[3] = T(gen_response_json(false));
				a[4] = T(chance(50) ? gen_uuid() : NULL);
				r = run(&A, "SELECT idempotency.complete($1::text, $2::text, $3::int, $4::jsonb, lease_token => $5::uuid)", 5, a);
				if (r.ok)
					check(val(&r, 0, 0) && (strcmp(val(&r, 0, 0), "stored") == 0 ||
											strcmp(val(&r, 0, 0), "released") == 0 ||
											strcmp(val(&r, 0, 0), "skipped") == 0), &r,
						  "complete() returned neither 'stored', 'released' nor 'skipped'");
				break;
			case 3:
				a[2] = T(chance(50) ? gen_uuid() : NULL);
				r = run(&A, "SELECT idempotency.release($1::text, $2::text, $3::uuid)", 3, a);
				break;
			case 4:
				a[2] = T("rp");
				a[3] = T(gen_uuid());
				r = run(&A, "SELECT idempotency.checkpoint($1::text, $2::text, $3::text, $4::uuid)", 4, a);
				break;
			default:
				a[0] = T(itoa_a(rnd_range(1, 3)));
				r = run(&A, "SELECT idempotency.reap($1::int)", 1, a);
				break;
		}
		if (!r.ok)
		{
			/*
			 * 22023: a scope whose effective retain is shorter than its ttl
			 * (set here, or a policy row with one window NULL, which the
			 * table's CHECK cannot compare with the GUC default).
			 */
			const char *ok_list[8] = {"IK409", "IK410", "IK422", "IK428", "22023", NULL, NULL, NULL};
			int			n = 5;

			if (snapshot)
				ok_list[n++] = "40001";
			expect_list(&r, ok_list, "a call on a chaos scope with valid arguments");
			run0(&A, "ROLLBACK TO SAVEPOINT c");
			A.failed = false;
		}
		else
		{
			if (fn <= 1)
				claim_outcome(&r);
			run0(&A, "RELEASE SAVEPOINT c");
		}
	}
	r = finish(&A, chance(60));
	EXPECT(&r, "end of a chaos transaction", "ok", "IK428", snapshot ? "40001" : "ok");
	if (b_holds)
	{
		r = finish(&B, chance(50));
		EXPECT(&r, "end of B's chaos transaction", "ok", "IK428");
	}
	if (chance(30))
	{
		begin(&A, "READ COMMITTED");
		check_keys_table();
		rollback(&A);
	}
}

/* The statistics view works and its counters are sane. */
static void
op_stats(void)
{
	Res			r = run0(&A, "SELECT count(*), bool_and(claims_new >= 0 AND errors_ik400 >= 0"
						 " AND claim_latency_seconds_count >= 0) FROM idempotency.stats");

	EXPECT(&r, "SELECT FROM idempotency.stats", "ok");
	check(strcmp(val(&r, 0, 1), "t") == 0, &r, "a negative counter in idempotency.stats");
	if (is_superuser && chance(10))
	{
		r = run0(&A, "SELECT idempotency.stats_reset()");
		EXPECT(&r, "stats_reset()", "ok");
	}
}

/* ------------------------------------------------------------------ */

typedef void (*OpFn) (void);

static const struct
{
	const char *name;
	int			weight;
	OpFn		fn;
}			ops[] = {
	{"fingerprint_equal", 22, op_fingerprint_equal},
	{"fingerprint_args", 10, op_fingerprint_args},
	{"model_request", 18, op_model_request},
	{"model_durable", 12, op_model_durable},
	{"model_no_lease", 3, op_model_no_lease},
	{"concurrent", 8, op_concurrent},
	{"args", 16, op_args},
	{"policy_replay", 3, op_policy_replay},
	{"chaos", 7, op_chaos},
	{"stats", 1, op_stats},
};

#define N_OPS ((int) (sizeof(ops) / sizeof(*ops)))

static PGconn *
connect_one(void)
{
	PGconn	   *pg = PQconnectdb(opt_conninfo);
	PGresult   *r;

	if (PQstatus(pg) != CONNECTION_OK)
	{
		fprintf(stderr, "ikfuzz: could not connect: %s", PQerrorMessage(pg));
		exit(2);
	}
	PQsetClientEncoding(pg, "UTF8");
	/* a hang becomes an error (57014) and a failure, not a stuck run */
	r = PQexec(pg, "SET statement_timeout = '60s'");
	PQclear(r);
	return pg;
}

static void
usage(void)
{
	fprintf(stderr,
			"usage: ikfuzz [--seed N] [--seconds S] [--iterations N] [--only I]\n"
			"              [--repro FILE] [--include-known] [--verbose] [conninfo]\n"
			"--only I runs iteration I alone (its inputs depend on seed and I only;\n"
			"operations on modelled keys also depend on what ran before).\n"
			"Seed: --seed, else FUZZ_SEED, else time and pid.  Connects with libpq's\n"
			"conninfo and PG* variables; the database must be UTF8 and have the\n"
			"extension (CREATE EXTENSION idempotency CASCADE).\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *env_seed = getenv("FUZZ_SEED");
	bool		seeded = false;
	double		start,
				deadline;
	long		total_weight = 0;

	for (int i = 1; i < argc; i++)
	{
		if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
		{
			opt_seed = strtoull(argv[++i], NULL, 10);
			seeded = true;
		}
		else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
			opt_seconds = atof(argv[++i]);
		else if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc)
			opt_iterations = atol(argv[++i]);
		else if (strcmp(argv[i], "--repro") == 0 && i + 1 < argc)
			opt_repro = argv[++i];
		else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
		{
			opt_only = atol(argv[++i]);
			if (opt_iterations <= opt_only)
				opt_iterations = opt_only + 1;
		}
		else if (strcmp(argv[i], "--verbose") == 0)
			opt_verbose = true;
		else if (strcmp(argv[i], "--include-known") == 0)
			opt_include_known = true;
		else if (argv[i][0] == '-')
			usage();
		else
			opt_conninfo = argv[i];
	}
	if (!seeded && env_seed && env_seed[0])
	{
		opt_seed = strtoull(env_seed, NULL, 10);
		seeded = true;
	}
	if (!seeded)
		opt_seed = ((uint64_t) time(NULL) * 1000003u) ^ (uint64_t) getpid();
	opt_seed %= 1000000000000ULL;	/* short enough to type */
	rng_state = opt_seed;
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ikfuzz: seed %" PRIu64 " (replay: FUZZ_SEED=%" PRIu64 "), up to %.0f s and %ld iterations%s\n",
		   opt_seed, opt_seed, opt_seconds, opt_iterations,
		   opt_include_known ? ", known findings included" : "");

	A.pg = connect_one();
	B.pg = connect_one();
	{
		const char *enc = PQparameterStatus(A.pg, "server_encoding");
		const char *su = PQparameterStatus(A.pg, "is_superuser");

		if (enc == NULL || strcmp(enc, "UTF8") != 0)
		{
			fprintf(stderr, "ikfuzz: the database's encoding is %s; ikfuzz needs UTF8\n",
					enc ? enc : "unknown");
			exit(2);
		}
		is_superuser = su && strcmp(su, "on") == 0;
	}
	{
		PGresult   *r = PQexec(A.pg, "SELECT 1 FROM pg_extension WHERE extname = 'idempotency'");

		if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
		{
			fprintf(stderr, "ikfuzz: the extension idempotency is not installed in this database\n");
			exit(2);
		}
		PQclear(r);
	}

	/* the statistics view needs the library preloaded */
	{
		PGresult   *r = PQexec(A.pg, "SELECT current_setting('shared_preload_libraries') ~ 'idempotency'");

		preloaded = PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
		PQclear(r);
		if (!preloaded)
			printf("ikfuzz: the library is not in shared_preload_libraries: idempotency.stats is not checked\n");
	}
	/* fixed fingerprints of the modelled keys */
	for (int f = 0; f < N_FPS; f++)
		for (int i = 0; i < 64; i++)
			model_fp[f][i] = (uint8_t) (0x11 * (f + 1) + i);
	/* one ikfuzz per database: they would share the modelled keys */
	{
		PGresult   *r = PQexec(A.pg, "SELECT pg_try_advisory_lock(1229669717, 1179996506)");

		if (PQresultStatus(r) != PGRES_TUPLES_OK || strcmp(PQgetvalue(r, 0, 0), "t") != 0)
		{
			fprintf(stderr, "ikfuzz: another ikfuzz is running on this database\n");
			exit(2);
		}
		PQclear(r);
	}
	/* modelled scopes start empty: a previous run may have left rows */
	{
		PGresult   *r = PQexec(A.pg, "DELETE FROM idempotency.keys WHERE scope LIKE 'fz.%';"
								 "DELETE FROM idempotency.policies WHERE scope LIKE 'fz.%'");

		if (PQresultStatus(r) != PGRES_COMMAND_OK)
		{
			fprintf(stderr, "ikfuzz: could not clear earlier fuzz keys: %s", PQerrorMessage(A.pg));
			exit(2);
		}
		PQclear(r);
	}

	for (int i = 0; i < N_OPS; i++)
	{
		total_weight += ops[i].weight;
		op_names[i] = ops[i].name;
	}
	start = now_seconds();
	deadline = start + opt_seconds;
	for (iteration = 0; iteration < opt_iterations; iteration++)
	{
		long		w;
		int			o = 0;

		if (now_seconds() >= deadline)
			break;
		/* each iteration draws from its own stream: (seed, iteration) */
		rng_state = opt_seed * 0x9E3779B97F4A7C15ULL + (uint64_t) iteration * 0xD1B54A32D192ED03ULL;
		(void) rnd64();
		if (opt_only >= 0 && iteration != opt_only)
		{
			/* nothing after it: do not spin through to --seconds */
			if (iteration > opt_only)
				break;
			continue;
		}
		w = (long) rnd((uint32_t) total_weight);
		while (w >= ops[o].weight)
			w -= ops[o++].weight;
		if (ops[o].fn == op_stats && !preloaded)
			continue;
		current_op = ops[o].name;
		op_counts[o]++;
		buf_reset(&oplog);
		buf_printf(&oplog, "-- iteration %ld: %s\n", iteration, current_op);
		ops[o].fn();
		if (A.in_tx)
			rollback(&A);
		if (B.in_tx)
			rollback(&B);
		free_results();
		arena_reset();
	}

	printf("ikfuzz: %ld iterations, %ld statements, %ld checks in %.1f s\n",
		   iteration, n_statements, n_checks, now_seconds() - start);
	printf("ikfuzz: operations:");
	for (int i = 0; i < N_OPS; i++)
		printf(" %s=%ld", op_names[i], op_counts[i]);
	printf("\nikfuzz: results:");
	for (int i = 0; i < n_seen; i++)
		printf(" %s=%ld", seen[i].state, seen[i].count);
	printf("\nikfuzz: seed %" PRIu64 ": every check held\n", opt_seed);
	printf("ikfuzz: %ld passed, 0 failed\n", n_checks);
	PQfinish(A.pg);
	PQfinish(B.pg);
	return 0;
}

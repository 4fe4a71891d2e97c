/*-------------------------------------------------------------------------
 *
 * conn.c
 *	  Connections, statements, the reproducer log, failures.
 *
 * The fuzzer drives two libpq connections (A and B) to one database.
 * run() and its relatives send a statement with out-of-line parameters,
 * record it as SQL, its parameters written as literals, in the current
 * operation's log (and on stderr under --verbose), and return the result
 * with its SQLSTATE.  check() and EXPECT() are the checks: a condition, or
 * the SQLSTATEs a result may have.  On a failure fail() prints the
 * failing operation as SQL, for both connections, to stderr and to the
 * --repro file, and ends the run with exit status 1.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ikfuzz.h"

Conn		A = {NULL, 'A', false, false};
Conn		B = {NULL, 'B', false, false};

/* SQL of the current operation, for a reproducer */
Buf			oplog;

Arg
T(const char *s)
{
	Arg			a = {s, s ? (int) strlen(s) : 0, 0};

	return a;
}

Arg
BIN(const void *p, int len)
{
	Arg			a = {(const char *) p, len, 1};

	return a;
}

const Arg	NUL = {NULL, 0, 0};

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

void
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

Res
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

Res
run0(Conn *c, const char *sql)
{
	return run(c, sql, 0, NULL);
}

/* Send a statement without waiting for its result (a claim that waits). */
char *
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

Res
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
bool
still_busy(Conn *c, int ms)
{
	usleep(ms * 1000);
	if (!PQconsumeInput(c->pg))
		check_conn(c, "PQconsumeInput");
	return PQisBusy(c->pg);
}

const char *
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

void
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

void
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

void
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
Res
finish(Conn *c, bool commit)
{
	Res			r = run0(c, commit && !c->failed ? "COMMIT" : "ROLLBACK");

	c->in_tx = false;
	c->failed = false;
	return r;
}

Res
rollback(Conn *c)
{
	Res			r = finish(c, false);

	EXPECT(&r, "ROLLBACK", "ok");
	return r;
}

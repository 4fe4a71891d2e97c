/*-------------------------------------------------------------------------
 *
 * driver.c
 *	  What the benchmark's C drivers share; see driver.h.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "driver.h"

/* the reservation and the stored reply live as long as a typical API's */
#define KEY_TTL_SECONDS 86400
#define SENTINEL "inflight"

/* ------------------------------------------------------------------ */
/* diagnostics */

/*
 * Format a message into buf without the trailing newlines that libpq's
 * messages end with, so that every diagnostic is one tidy line or block.
 */
void
format_message(char *buf, size_t size, const char *fmt, va_list ap)
{
	size_t		len;

	vsnprintf(buf, size, fmt, ap);
	len = strlen(buf);
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
		buf[--len] = '\0';
}

static void
vnote(const char *fmt, va_list ap)
{
	char		msg[1024];

	format_message(msg, sizeof(msg), fmt, ap);
	fprintf(stderr, "%s: %s\n", progname, msg);
}

/* a line on stderr that is not an error, such as a fault's progress */
void
note(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vnote(fmt, ap);
	va_end(ap);
}

/* an error that ends the program, with exit status 2 */
void
fatal(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vnote(fmt, ap);
	va_end(ap);
	exit(2);
}

/* ------------------------------------------------------------------ */
/* the clock and the random keys */

double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/* xorshift64*: cheap, per client, and good enough to pick keys */
uint64_t
next_random(uint64_t *state)
{
	*state ^= *state >> 12;
	*state ^= *state << 25;
	*state ^= *state >> 27;
	return *state * UINT64_C(2685821657736338717);
}

/* ------------------------------------------------------------------ */
/* option values; a bad one is fatal */

long
parse_long(const char *arg, const char *option, long min, long max)
{
	char	   *end;
	long		v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno != 0 || end == arg || *end != '\0' || v < min || v > max)
		fatal("invalid value \"%s\" for %s: an integer from %ld to %ld "
			  "is expected", arg, option, min, max);
	return v;
}

/* a number of seconds from min to a day */
double
parse_seconds(const char *arg, const char *option, double min)
{
	char	   *end;
	double		v;

	errno = 0;
	v = strtod(arg, &end);
	if (errno != 0 || end == arg || *end != '\0' || !(v >= min && v <= 86400))
		fatal("invalid value \"%s\" for %s: a number of seconds from %g to "
			  "86400 is expected", arg, option, min);
	return v;
}

/* the index of arg among choices */
int
parse_choice(const char *arg, const char *option,
			 const char *const *choices, int nchoices)
{
	char		expected[256] = "";

	for (int i = 0; i < nchoices; i++)
	{
		if (strcmp(arg, choices[i]) == 0)
			return i;
	}
	/* "a or b", "a, b or c" */
	for (int i = 0; i < nchoices; i++)
	{
		size_t		len = strlen(expected);

		snprintf(expected + len, sizeof(expected) - len, "%s%s",
				 i == 0 ? "" : i < nchoices - 1 ? ", " : " or ", choices[i]);
	}
	fatal("invalid value \"%s\" for %s: %s is expected", arg, option,
		  expected);
}

void
parse_redis_address(const char *arg, char **host, int *port)
{
	const char *colon = strrchr(arg, ':');

	if (colon == NULL || colon == arg)
		fatal("invalid value \"%s\" for --redis: HOST:PORT is expected", arg);
	*host = strndup(arg, colon - arg);
	if (*host == NULL)
		fatal("out of memory");
	*port = (int) parse_long(colon + 1, "--redis port", 1, 65535);
}

/* ------------------------------------------------------------------ */
/* the charge, in PostgreSQL */

bool
prepare(PGconn *pg, const char *name, const char *sql, int nparams)
{
	PGresult   *res = PQprepare(pg, name, sql, nparams, NULL);
	bool		ok = PQresultStatus(res) == PGRES_COMMAND_OK;

	PQclear(res);
	return ok;
}

/*
 * Prepare the charge's transaction, the same for every design so that only
 * the idempotency around it differs.  Returns NULL, or the statement that
 * could not be prepared (PQerrorMessage says why).
 */
const char *
prepare_charge(PGconn *pg)
{
	static const struct
	{
		const char *name;
		const char *sql;
		int			nparams;
	}			stmts[] = {
		{"begin", "BEGIN", 0},
		{"insert", "INSERT INTO bench.charges (scope, idem_key, amount) "
		"VALUES ($1, $2, 100)", 2},
		{"commit", "COMMIT", 0},
		{"rollback", "ROLLBACK", 0}
	};

	for (size_t i = 0; i < lengthof(stmts); i++)
	{
		if (!prepare(pg, stmts[i].name, stmts[i].sql, stmts[i].nparams))
			return stmts[i].sql;
	}
	return NULL;
}

/*
 * End a transaction that will not commit, so that the next request starts
 * clean.  A connection that is gone has none.
 */
void
rollback_open(PGconn *pg)
{
	PGTransactionStatusType ts = PQtransactionStatus(pg);

	if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR)
		PQclear(PQexecPrepared(pg, "rollback", 0, NULL, NULL, NULL, 0));
}

/* ------------------------------------------------------------------ */
/* Redis in front: the key reserved, then the response stored */

/*
 * Connect with a timeout on every command too.  Never NULL; the caller
 * checks ->err, which is also set if the timeout could not be.
 */
redisContext *
redis_connect(const char *host, int port)
{
	struct timeval timeout = {REDIS_TIMEOUT_SECONDS, 0};
	redisContext *redis = redisConnectWithTimeout(host, port, timeout);

	if (redis == NULL)
		fatal("out of memory");
	if (redis->err == 0)
		redisSetTimeout(redis, timeout);
	return redis;
}

/* a GET's reply holds a stored response: not nothing, nor the sentinel */
bool
redis_is_response(const redisReply *reply)
{
	return reply->type == REDIS_REPLY_STRING &&
		strcmp(reply->str, SENTINEL) != 0;
}

/* one command; NULL, reported, if it failed */
static redisReply *
redis_command(redisContext *redis, int client, const char *what,
			  const char *fmt,...)
{
	va_list		ap;
	redisReply *reply;

	va_start(ap, fmt);
	reply = redisvCommand(redis, fmt, ap);
	va_end(ap);
	if (reply == NULL)
		client_error(client, "Redis %s failed: %s", what, redis->errstr);
	else if (reply->type == REDIS_REPLY_ERROR)
	{
		client_error(client, "Redis %s failed: %s", what, reply->str);
		freeReplyObject(reply);
		reply = NULL;
	}
	return reply;
}

/*
 * SET NX the sentinel.  True if the key is now this request's to charge;
 * otherwise *outcome is the answer: a replay of the stored response, a 409
 * for the sentinel (or a key deleted since SET NX), or a failure.
 */
bool
redis_reserve(redisContext *redis, int client, const char *scope,
			  const char *key, Outcome *outcome)
{
	redisReply *reply;
	bool		reserved;

	*outcome = OUTCOME_FAILED;
	reply = redis_command(redis, client, "SET NX",
						  "SET " REDIS_KEY " %s NX EX %d", scope, key,
						  SENTINEL, KEY_TTL_SECONDS);
	if (reply == NULL)
		return false;
	reserved = reply->type == REDIS_REPLY_STATUS;
	freeReplyObject(reply);
	if (reserved)
		return true;

	reply = redis_command(redis, client, "GET", "GET " REDIS_KEY, scope, key);
	if (reply == NULL)
		return false;
	*outcome = redis_is_response(reply) ? OUTCOME_REPLAY : OUTCOME_CONFLICT;
	freeReplyObject(reply);
	return false;
}

/* the charge failed: free the key so that the client's retry can charge */
void
redis_release(redisContext *redis, int client, const char *scope,
			  const char *key)
{
	redisReply *reply = redis_command(redis, client, "DEL",
									  "DEL " REDIS_KEY, scope, key);

	if (reply != NULL)
		freeReplyObject(reply);
}

/* the charge committed: store its response over the sentinel */
bool
redis_store(redisContext *redis, int client, const char *scope,
			const char *key, const char *response)
{
	redisReply *reply = redis_command(redis, client, "SET",
									  "SET " REDIS_KEY " %s EX %d", scope,
									  key, response, KEY_TTL_SECONDS);

	if (reply == NULL)
		return false;
	freeReplyObject(reply);
	return true;
}

/*-------------------------------------------------------------------------
 *
 * redisfront.c
 *	  Throughput and latency of the design the extension replaces: the
 *	  Idempotency-Key reserved in Redis, in front of the payment database.
 *
 * One request, as an API middleware of that design does it:
 *
 *	  SET ik:<scope>:<key> inflight NX EX 86400		reserve the key
 *	  BEGIN; INSERT INTO bench.charges ...; COMMIT		charge, in PostgreSQL
 *	  SET ik:<scope>:<key> <response> EX 86400		store the reply
 *
 * If the charge fails, the sentinel is deleted so that the client can retry.
 * If SET NX finds the key taken, GET tells a stored response (a replay) from
 * the sentinel (a 409: the same key is in flight).
 *
 * pgbench cannot talk to Redis, so this driver does what pgbench does for
 * the other cases: one thread per client, each with its own PostgreSQL and
 * Redis connection, running requests back to back for a fixed time, with
 * prepared statements.  --mode rtt sends BEGIN, INSERT and COMMIT as three
 * round trips (pgbench -M prepared); --mode pipeline sends them in one libpq
 * pipeline (pgbench \startpipeline ... \endpipeline).  Redis commands are
 * always one round trip each, as a middleware sends them.
 *
 * --case new gives every request a fresh key (scope m<client>, key
 * k<client>_<counter>_<run nonce>).  --case replay first completes
 * REPLAY_KEYS keys per client through the same flow, untimed, and then
 * times requests that each replay one of them.
 *
 * Usage: redisfront [--pg CONNINFO] [--redis HOST:PORT] [--clients N]
 *					 [--seconds S] [--mode rtt|pipeline] [--case new|replay]
 *
 * Output, one line on stdout:
 *	  tps=<float> p50_ms=<float> p99_ms=<float> requests=<n> errors=<n>
 * requests counts the requests answered as the case expects (a charge for
 * new, a replay for replay) within the run; errors counts the others.  tps
 * is requests per second of the run; the latencies are those of whole
 * requests, from SET NX to the last reply, over all answered requests.
 * Diagnostics go to stderr.  Exit status: 0 after a clean run, 1 if a
 * client lost a connection (the line is still printed, but the run is not
 * a valid measurement), 2 on a usage or set-up error.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

/* the reservation and the stored reply live as long as a typical API's */
#define KEY_TTL_SECONDS 86400
#define SENTINEL "inflight"

/* keys completed per client before a replay run; any number gives replays */
#define REPLAY_KEYS 100

/* a slow Redis fails the request rather than hanging the run */
#define REDIS_TIMEOUT_SECONDS 5

/* diagnostics stop after this many, so a broken run does not flood stderr */
#define MAX_MESSAGES 20

typedef enum BenchCase
{
	CASE_NEW,
	CASE_REPLAY
} BenchCase;

typedef enum Answer
{
	ANSWER_CHARGED,				/* reserved, charged and stored */
	ANSWER_REPLAY,				/* a stored response came back */
	ANSWER_CONFLICT,			/* the sentinel: the key is in flight */
	ANSWER_ERROR				/* something failed, see stderr */
} Answer;

typedef struct Client
{
	int			id;
	pthread_t	thread;
	PGconn	   *pg;
	redisContext *redis;
	uint64_t	rng;
	char		scope[32];
	bool		pipeline_broken;	/* its results went out of step */
	bool		setup_failed;
	bool		lost_connection;
	long		requests;
	long		errors;
	double	   *latency_ms;		/* one sample per answered request */
	size_t		nlatency;
	size_t		latency_cap;
	double		end_ms;			/* when this client stopped */
} Client;

static const char *opt_pg = "";
static char *opt_redis_host;
static int	opt_redis_port = 6379;
static int	opt_clients = 1;
static double opt_seconds = 10;
static bool opt_pipeline = false;
static BenchCase opt_case = CASE_NEW;

/* distinguishes this run's keys from those of earlier runs on one Redis */
static unsigned int run_nonce;

static pthread_barrier_t start_barrier;
static int	messages_printed;

static void
usage(FILE *out)
{
	fprintf(out,
			"Usage: redisfront [OPTION]...\n"
			"Drive the Redis-in-front idempotency design: SET NX in Redis,\n"
			"the charge in PostgreSQL, the reply stored in Redis.\n\n"
			"  --pg CONNINFO         libpq connection string (default: "
			"libpq's defaults)\n"
			"  --redis HOST:PORT     Redis server (default 127.0.0.1:6379)\n"
			"  --clients N           concurrent clients, one thread each "
			"(default 1)\n"
			"  --seconds S           length of the timed run (default 10)\n"
			"  --mode rtt|pipeline   one round trip per statement, or BEGIN/"
			"INSERT/COMMIT\n"
			"                        in one pipeline (default rtt)\n"
			"  --case new|replay     fresh keys, or replays of completed "
			"keys (default new)\n"
			"  --help                show this help\n\n"
			"Prints one line: tps=... p50_ms=... p99_ms=... requests=N "
			"errors=N\n");
}

/*
 * Format a message into buf without the trailing newlines that libpq's
 * messages end with, so that every diagnostic is one tidy line or block.
 */
static void
format_message(char *buf, size_t size, const char *fmt, va_list ap)
{
	size_t		len;

	vsnprintf(buf, size, fmt, ap);
	len = strlen(buf);
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
		buf[--len] = '\0';
}

static void
fatal(const char *fmt,...)
{
	va_list		ap;
	char		msg[1024];

	va_start(ap, fmt);
	format_message(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "redisfront: %s\n", msg);
	exit(2);
}

/*
 * Report a failure during the run.  Clients call this concurrently; the
 * counter keeps a run whose every request fails from burying its first,
 * telling message.
 */
static void
client_error(const Client *c, const char *fmt,...)
{
	va_list		ap;
	char		msg[1024];
	int			n = __atomic_fetch_add(&messages_printed, 1, __ATOMIC_RELAXED);

	if (n >= MAX_MESSAGES)
		return;
	va_start(ap, fmt);
	format_message(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	flockfile(stderr);
	fprintf(stderr, "redisfront: client %d: %s\n", c->id, msg);
	if (n == MAX_MESSAGES - 1)
		fprintf(stderr, "redisfront: further errors are not shown\n");
	funlockfile(stderr);
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static long
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

static void
parse_redis_address(const char *arg)
{
	const char *colon = strrchr(arg, ':');

	if (colon == NULL || colon == arg)
		fatal("invalid value \"%s\" for --redis: HOST:PORT is expected", arg);
	opt_redis_host = strndup(arg, colon - arg);
	if (opt_redis_host == NULL)
		fatal("out of memory");
	opt_redis_port = (int) parse_long(colon + 1, "--redis port", 1, 65535);
}

static void
parse_options(int argc, char **argv)
{
	static const struct option long_options[] = {
		{"pg", required_argument, NULL, 'p'},
		{"redis", required_argument, NULL, 'r'},
		{"clients", required_argument, NULL, 'c'},
		{"seconds", required_argument, NULL, 's'},
		{"mode", required_argument, NULL, 'm'},
		{"case", required_argument, NULL, 'k'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}
	};
	int			opt;
	char	   *end;

	while ((opt = getopt_long(argc, argv, "", long_options, NULL)) != -1)
	{
		switch (opt)
		{
			case 'p':
				opt_pg = optarg;
				break;
			case 'r':
				parse_redis_address(optarg);
				break;
			case 'c':
				opt_clients = (int) parse_long(optarg, "--clients", 1, 1000);
				break;
			case 's':
				errno = 0;
				opt_seconds = strtod(optarg, &end);
				if (errno != 0 || end == optarg || *end != '\0' ||
					!(opt_seconds > 0 && opt_seconds <= 86400))
					fatal("invalid value \"%s\" for --seconds: a number of "
						  "seconds above 0, at most 86400, is expected",
						  optarg);
				break;
			case 'm':
				if (strcmp(optarg, "rtt") == 0)
					opt_pipeline = false;
				else if (strcmp(optarg, "pipeline") == 0)
					opt_pipeline = true;
				else
					fatal("invalid value \"%s\" for --mode: rtt or pipeline "
						  "is expected", optarg);
				break;
			case 'k':
				if (strcmp(optarg, "new") == 0)
					opt_case = CASE_NEW;
				else if (strcmp(optarg, "replay") == 0)
					opt_case = CASE_REPLAY;
				else
					fatal("invalid value \"%s\" for --case: new or replay "
						  "is expected", optarg);
				break;
			case 'h':
				usage(stdout);
				exit(0);
			default:
				usage(stderr);
				exit(2);
		}
	}
	if (optind < argc)
		fatal("unexpected argument \"%s\"; see --help", argv[optind]);
	if (opt_redis_host == NULL)
		opt_redis_host = "127.0.0.1";
}

/* xorshift64*: cheap, per client, and good enough to pick keys */
static uint64_t
next_random(Client *c)
{
	c->rng ^= c->rng >> 12;
	c->rng ^= c->rng << 25;
	c->rng ^= c->rng >> 27;
	return c->rng * UINT64_C(2685821657736338717);
}

/* ------------------------------------------------------------------ */
/* connections */

static void
prepare_or_die(PGconn *pg, const char *name, const char *sql, int nparams)
{
	PGresult   *res = PQprepare(pg, name, sql, nparams, NULL);

	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		fatal("could not prepare \"%s\": %s", sql, PQerrorMessage(pg));
	PQclear(res);
}

static void
connect_client(Client *c)
{
	struct timeval timeout = {REDIS_TIMEOUT_SECONDS, 0};

	c->pg = PQconnectdb(opt_pg);
	if (PQstatus(c->pg) != CONNECTION_OK)
		fatal("could not connect to PostgreSQL: %s", PQerrorMessage(c->pg));
	prepare_or_die(c->pg, "begin", "BEGIN", 0);
	prepare_or_die(c->pg, "insert",
				   "INSERT INTO bench.charges (scope, idem_key, amount) "
				   "VALUES ($1, $2, 100)", 2);
	prepare_or_die(c->pg, "commit", "COMMIT", 0);
	prepare_or_die(c->pg, "rollback", "ROLLBACK", 0);
	if (opt_pipeline && PQenterPipelineMode(c->pg) != 1)
		fatal("could not enter pipeline mode: %s", PQerrorMessage(c->pg));

	c->redis = redisConnectWithTimeout(opt_redis_host, opt_redis_port,
									   timeout);
	if (c->redis == NULL || c->redis->err)
		fatal("could not connect to Redis at %s:%d: %s", opt_redis_host,
			  opt_redis_port, c->redis ? c->redis->errstr : "out of memory");
	if (redisSetTimeout(c->redis, timeout) != REDIS_OK)
		fatal("could not set the Redis timeout: %s", c->redis->errstr);
}

/* ------------------------------------------------------------------ */
/* the charge, in PostgreSQL */

/*
 * Leave no failed transaction behind a failed charge, so that the next
 * request starts clean.  A connection that is gone needs nothing.
 */
static void
rollback_rtt(Client *c)
{
	PGTransactionStatusType ts = PQtransactionStatus(c->pg);

	if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR)
		PQclear(PQexecPrepared(c->pg, "rollback", 0, NULL, NULL, NULL, 0));
}

static bool
run_prepared(Client *c, const char *name, int nparams,
			 const char *const *params)
{
	PGresult   *res = PQexecPrepared(c->pg, name, nparams, params, NULL,
									 NULL, 0);
	bool		ok = PQresultStatus(res) == PGRES_COMMAND_OK;

	if (!ok)
		client_error(c, "%s failed: %s", name, PQresultErrorMessage(res));
	PQclear(res);
	return ok;
}

static bool
charge_rtt(Client *c, const char *key)
{
	const char *params[2] = {c->scope, key};

	if (run_prepared(c, "begin", 0, NULL) &&
		run_prepared(c, "insert", 2, params) &&
		run_prepared(c, "commit", 0, NULL))
		return true;
	rollback_rtt(c);
	return false;
}

/*
 * Read the results of one pipelined statement: one result, then the NULL
 * that ends it.  After an error the server skips the rest of the pipeline
 * up to the sync, and libpq reports those statements as aborted; they are
 * read all the same, so that the pipeline stays in step.
 */
static bool
pipeline_result(Client *c, const char *name, bool *ok)
{
	PGresult   *res = PQgetResult(c->pg);

	if (res == NULL)
	{
		client_error(c, "%s: no result in the pipeline: %s", name,
					 PQerrorMessage(c->pg));
		return false;
	}
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		if (*ok)
			client_error(c, "%s failed: %s", name,
						 PQresultErrorMessage(res));
		*ok = false;
	}
	PQclear(res);
	res = PQgetResult(c->pg);
	if (res != NULL)
	{
		client_error(c, "%s: unexpected extra result in the pipeline", name);
		PQclear(res);
		return false;
	}
	return true;
}

/*
 * Send statements and a sync, and read everything back up to the sync.
 * Returns false if the pipeline itself broke (the connection, usually);
 * *ok tells whether every statement succeeded.
 */
static bool
run_pipeline(Client *c, int nstmts, const char *const *names,
			 const int *nparams, const char *const *const *params, bool *ok)
{
	PGresult   *res;

	*ok = true;
	for (int i = 0; i < nstmts; i++)
	{
		if (!PQsendQueryPrepared(c->pg, names[i], nparams[i], params[i],
								 NULL, NULL, 0))
		{
			client_error(c, "could not send %s: %s", names[i],
						 PQerrorMessage(c->pg));
			return false;
		}
	}
	if (!PQpipelineSync(c->pg))
	{
		client_error(c, "could not send the pipeline: %s",
					 PQerrorMessage(c->pg));
		return false;
	}
	for (int i = 0; i < nstmts; i++)
	{
		if (!pipeline_result(c, names[i], ok))
			return false;
	}
	res = PQgetResult(c->pg);
	if (PQresultStatus(res) != PGRES_PIPELINE_SYNC)
	{
		client_error(c, "pipeline not ended by its sync: %s",
					 PQerrorMessage(c->pg));
		PQclear(res);
		return false;
	}
	PQclear(res);
	return true;
}

static bool
charge_pipeline(Client *c, const char *key)
{
	const char *insert_params[2] = {c->scope, key};
	const char *const names[3] = {"begin", "insert", "commit"};
	const int	nparams[3] = {0, 2, 0};
	const char *const *params[3] = {NULL, insert_params, NULL};
	bool		ok;

	if (!run_pipeline(c, 3, names, nparams, params, &ok))
	{
		c->pipeline_broken = true;
		return false;
	}
	if (!ok && PQtransactionStatus(c->pg) == PQTRANS_INERROR)
	{
		/* an explicit transaction block outlives the sync: end it */
		const char *const rb_names[1] = {"rollback"};
		const int	rb_nparams[1] = {0};
		const char *const *rb_params[1] = {NULL};
		bool		rb_ok;

		if (!run_pipeline(c, 1, rb_names, rb_nparams, rb_params, &rb_ok))
			c->pipeline_broken = true;
	}
	return ok;
}

/* ------------------------------------------------------------------ */
/* one request */

static redisReply *
redis_command(Client *c, const char *what, const char *fmt,...)
{
	va_list		ap;
	redisReply *reply;

	va_start(ap, fmt);
	reply = redisvCommand(c->redis, fmt, ap);
	va_end(ap);
	if (reply == NULL)
		client_error(c, "Redis %s failed: %s", what, c->redis->errstr);
	else if (reply->type == REDIS_REPLY_ERROR)
	{
		client_error(c, "Redis %s failed: %s", what, reply->str);
		freeReplyObject(reply);
		reply = NULL;
	}
	return reply;
}

static Answer
request(Client *c, const char *key)
{
	char		rkey[128];
	char		response[160];
	redisReply *reply;
	bool		reserved;
	bool		charged;

	snprintf(rkey, sizeof(rkey), "ik:%s:%s", c->scope, key);
	reply = redis_command(c, "SET NX", "SET %s %s NX EX %d", rkey, SENTINEL,
						  KEY_TTL_SECONDS);
	if (reply == NULL)
		return ANSWER_ERROR;
	reserved = reply->type == REDIS_REPLY_STATUS;
	freeReplyObject(reply);

	if (!reserved)
	{
		Answer		answer;

		reply = redis_command(c, "GET", "GET %s", rkey);
		if (reply == NULL)
			return ANSWER_ERROR;
		if (reply->type == REDIS_REPLY_STRING &&
			strcmp(reply->str, SENTINEL) != 0)
			answer = ANSWER_REPLAY;
		else
			answer = ANSWER_CONFLICT;
		freeReplyObject(reply);
		return answer;
	}

	charged = opt_pipeline ? charge_pipeline(c, key) : charge_rtt(c, key);
	if (!charged)
	{
		/* free the key so that the client's retry can charge */
		reply = redis_command(c, "DEL", "DEL %s", rkey);
		if (reply != NULL)
			freeReplyObject(reply);
		return ANSWER_ERROR;
	}

	snprintf(response, sizeof(response),
			 "{\"status\": 201, \"body\": {\"charge\": \"%s\", "
			 "\"amount\": 100}}", key);
	reply = redis_command(c, "SET", "SET %s %s EX %d", rkey, response,
						  KEY_TTL_SECONDS);
	if (reply == NULL)
		return ANSWER_ERROR;
	freeReplyObject(reply);
	return ANSWER_CHARGED;
}

static bool
connections_ok(const Client *c)
{
	return PQstatus(c->pg) == CONNECTION_OK && !c->pipeline_broken &&
		c->redis->err == 0;
}

static void
record_latency(Client *c, double ms)
{
	if (c->nlatency == c->latency_cap)
	{
		size_t		cap = c->latency_cap ? c->latency_cap * 2 : 65536;
		double	   *p = realloc(c->latency_ms, cap * sizeof(double));

		if (p == NULL)
			fatal("out of memory for latency samples");
		c->latency_ms = p;
		c->latency_cap = cap;
	}
	c->latency_ms[c->nlatency++] = ms;
}

static void *
client_main(void *arg)
{
	Client	   *c = arg;
	const Answer expected = opt_case == CASE_NEW ? ANSWER_CHARGED :
		ANSWER_REPLAY;
	char		key[64];
	double		deadline;
	unsigned long counter = 0;

	/* untimed: the keys that the replay run replays */
	for (int i = 0; opt_case == CASE_REPLAY && i < REPLAY_KEYS; i++)
	{
		snprintf(key, sizeof(key), "r%d_%d_%08x", c->id, i, run_nonce);
		if (request(c, key) != ANSWER_CHARGED)
		{
			client_error(c, "could not complete key \"%s\" before the run",
						 key);
			c->setup_failed = true;
			break;
		}
	}

	pthread_barrier_wait(&start_barrier);
	if (c->setup_failed)
		return NULL;
	deadline = now_ms() + opt_seconds * 1000.0;

	while (now_ms() < deadline)
	{
		double		t0;
		Answer		answer;

		if (opt_case == CASE_NEW)
			snprintf(key, sizeof(key), "k%d_%lu_%08x", c->id, counter++,
					 run_nonce);
		else
			snprintf(key, sizeof(key), "r%d_%d_%08x", c->id,
					 (int) (next_random(c) % REPLAY_KEYS), run_nonce);

		t0 = now_ms();
		answer = request(c, key);
		if (answer == expected)
		{
			c->requests++;
			record_latency(c, now_ms() - t0);
		}
		else
		{
			c->errors++;
			if (!connections_ok(c))
			{
				client_error(c, "connection lost or out of step; "
							 "this client stops");
				c->lost_connection = true;
				break;
			}
		}
	}
	c->end_ms = now_ms();
	return NULL;
}

/* ------------------------------------------------------------------ */

static int
compare_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

/* nearest-rank percentile of sorted samples */
static double
percentile(const double *sorted, size_t n, double p)
{
	size_t		rank;

	if (n == 0)
		return 0;
	rank = (size_t) ceil(p * n);
	if (rank < 1)
		rank = 1;
	return sorted[rank - 1];
}

int
main(int argc, char **argv)
{
	Client	   *clients;
	double		start;
	double		end = 0;
	long		requests = 0;
	long		errors = 0;
	size_t		nsamples = 0;
	double	   *samples;
	bool		lost = false;
	bool		setup_failed = false;

	parse_options(argc, argv);

	/* a Redis that dies under hiredis's write() must not kill the run */
	signal(SIGPIPE, SIG_IGN);
	run_nonce = (unsigned int) (time(NULL) ^ ((unsigned int) getpid() << 16));

	clients = calloc(opt_clients, sizeof(Client));
	if (clients == NULL)
		fatal("out of memory");
	for (int i = 0; i < opt_clients; i++)
	{
		Client	   *c = &clients[i];

		c->id = i;
		c->rng = (UINT64_C(0x9E3779B97F4A7C15) * (i + 1)) ^ run_nonce;
		snprintf(c->scope, sizeof(c->scope), "m%d", i);
		connect_client(c);
	}

	if (pthread_barrier_init(&start_barrier, NULL, opt_clients + 1) != 0)
		fatal("could not create a barrier");
	for (int i = 0; i < opt_clients; i++)
	{
		if (pthread_create(&clients[i].thread, NULL, client_main,
						   &clients[i]) != 0)
			fatal("could not start client thread %d", i);
	}
	pthread_barrier_wait(&start_barrier);
	start = now_ms();

	for (int i = 0; i < opt_clients; i++)
	{
		Client	   *c = &clients[i];

		pthread_join(c->thread, NULL);
		setup_failed |= c->setup_failed;
		lost |= c->lost_connection;
		requests += c->requests;
		errors += c->errors;
		nsamples += c->nlatency;
		if (c->end_ms > end)
			end = c->end_ms;
	}
	if (setup_failed)
		fatal("the replay keys could not be completed; see above");

	samples = malloc((nsamples ? nsamples : 1) * sizeof(double));
	if (samples == NULL)
		fatal("out of memory");
	nsamples = 0;
	for (int i = 0; i < opt_clients; i++)
	{
		Client	   *c = &clients[i];

		memcpy(samples + nsamples, c->latency_ms,
			   c->nlatency * sizeof(double));
		nsamples += c->nlatency;
		free(c->latency_ms);
		PQfinish(c->pg);
		redisFree(c->redis);
	}
	qsort(samples, nsamples, sizeof(double), compare_double);

	printf("tps=%.1f p50_ms=%.3f p99_ms=%.3f requests=%ld errors=%ld\n",
		   requests / ((end - start) / 1000.0),
		   percentile(samples, nsamples, 0.50),
		   percentile(samples, nsamples, 0.99),
		   requests, errors);
	free(samples);
	free(clients);
	return lost ? 1 : 0;
}

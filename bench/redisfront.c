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
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "driver.h"

/* keys completed per client before a replay run; any number gives replays */
#define REPLAY_KEYS 100

/* diagnostics stop after this many, so a broken run does not flood stderr */
#define MAX_MESSAGES 20

typedef enum BenchCase
{
	CASE_NEW,
	CASE_REPLAY
} BenchCase;

/* --case's values, by BenchCase; --mode's, by opt_pipeline */
static const char *const case_names[] = {"new", "replay"};
static const char *const mode_names[] = {"rtt", "pipeline"};

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

const char *const progname = "redisfront";

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
 * Report a failure during the run.  Clients call this concurrently; the
 * counter keeps a run whose every request fails from burying its first,
 * telling message.
 */
void
client_error(int client, const char *fmt,...)
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
	fprintf(stderr, "%s: client %d: %s\n", progname, client, msg);
	if (n == MAX_MESSAGES - 1)
		fprintf(stderr, "%s: further errors are not shown\n", progname);
	funlockfile(stderr);
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

	while ((opt = getopt_long(argc, argv, "", long_options, NULL)) != -1)
	{
		switch (opt)
		{
			case 'p':
				opt_pg = optarg;
				break;
			case 'r':
				parse_redis_address(optarg, &opt_redis_host, &opt_redis_port);
				break;
			case 'c':
				opt_clients = (int) parse_long(optarg, "--clients", 1, 1000);
				break;
			case 's':
				opt_seconds = parse_seconds(optarg, "--seconds", 0.001);
				break;
			case 'm':
				opt_pipeline = parse_choice(optarg, "--mode", mode_names,
											lengthof(mode_names));
				break;
			case 'k':
				opt_case = (BenchCase) parse_choice(optarg, "--case",
													case_names,
													lengthof(case_names));
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

/* ------------------------------------------------------------------ */
/* connections */

static void
connect_client(Client *c)
{
	const char *failed;

	c->pg = PQconnectdb(opt_pg);
	if (PQstatus(c->pg) != CONNECTION_OK)
		fatal("could not connect to PostgreSQL: %s", PQerrorMessage(c->pg));
	failed = prepare_charge(c->pg);
	if (failed != NULL)
		fatal("could not prepare \"%s\": %s", failed, PQerrorMessage(c->pg));
	if (opt_pipeline && PQenterPipelineMode(c->pg) != 1)
		fatal("could not enter pipeline mode: %s", PQerrorMessage(c->pg));

	c->redis = redis_connect(opt_redis_host, opt_redis_port);
	if (c->redis->err)
		fatal("could not connect to Redis at %s:%d: %s", opt_redis_host,
			  opt_redis_port, c->redis->errstr);
}

/* ------------------------------------------------------------------ */
/* the charge, in PostgreSQL */

static bool
run_prepared(Client *c, const char *name, int nparams,
			 const char *const *params)
{
	PGresult   *res = PQexecPrepared(c->pg, name, nparams, params, NULL,
									 NULL, 0);
	bool		ok = PQresultStatus(res) == PGRES_COMMAND_OK;

	if (!ok)
		client_error(c->id, "%s failed: %s", name, PQresultErrorMessage(res));
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
	rollback_open(c->pg);
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
		client_error(c->id, "%s: no result in the pipeline: %s", name,
					 PQerrorMessage(c->pg));
		return false;
	}
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		if (*ok)
			client_error(c->id, "%s failed: %s", name,
						 PQresultErrorMessage(res));
		*ok = false;
	}
	PQclear(res);
	res = PQgetResult(c->pg);
	if (res != NULL)
	{
		client_error(c->id, "%s: unexpected extra result in the pipeline",
					 name);
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
			client_error(c->id, "could not send %s: %s", names[i],
						 PQerrorMessage(c->pg));
			return false;
		}
	}
	if (!PQpipelineSync(c->pg))
	{
		client_error(c->id, "could not send the pipeline: %s",
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
		client_error(c->id, "pipeline not ended by its sync: %s",
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

/* OUTCOME_CHARGED once the key is reserved, charged and its reply stored */
static Outcome
request(Client *c, const char *key)
{
	char		response[160];
	Outcome		outcome;
	bool		charged;

	if (!redis_reserve(c->redis, c->id, c->scope, key, &outcome))
		return outcome;

	charged = opt_pipeline ? charge_pipeline(c, key) : charge_rtt(c, key);
	if (!charged)
	{
		redis_release(c->redis, c->id, c->scope, key);
		return OUTCOME_FAILED;
	}

	snprintf(response, sizeof(response),
			 "{\"status\": 201, \"body\": {\"charge\": \"%s\", "
			 "\"amount\": 100}}", key);
	if (!redis_store(c->redis, c->id, c->scope, key, response))
		return OUTCOME_FAILED;
	return OUTCOME_CHARGED;
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
	const Outcome expected = opt_case == CASE_NEW ? OUTCOME_CHARGED :
		OUTCOME_REPLAY;
	char		key[64];
	double		deadline;
	unsigned long counter = 0;

	/* untimed: the keys that the replay run replays */
	for (int i = 0; opt_case == CASE_REPLAY && i < REPLAY_KEYS; i++)
	{
		snprintf(key, sizeof(key), "r%d_%d_%08x", c->id, i, run_nonce);
		if (request(c, key) != OUTCOME_CHARGED)
		{
			client_error(c->id, "could not complete key \"%s\" before the "
						 "run", key);
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
		Outcome		outcome;

		if (opt_case == CASE_NEW)
			snprintf(key, sizeof(key), "k%d_%lu_%08x", c->id, counter++,
					 run_nonce);
		else
			snprintf(key, sizeof(key), "r%d_%d_%08x", c->id,
					 (int) (next_random(&c->rng) % REPLAY_KEYS), run_nonce);

		t0 = now_ms();
		outcome = request(c, key);
		if (outcome == expected)
		{
			c->requests++;
			record_latency(c, now_ms() - t0);
		}
		else
		{
			c->errors++;
			if (!connections_ok(c))
			{
				client_error(c->id, "connection lost or out of step; "
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

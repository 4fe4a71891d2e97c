/*-------------------------------------------------------------------------
 *
 * doublecharge.c
 *	  Count the double charges of an idempotency design under concurrency
 *	  and faults, rather than assume there are none.
 *
 * Many clients send the same Idempotency-Key at once, as the retries of one
 * logical request do; a design that is not safe charges some keys twice.
 * Three designs, each with its real request flow, one transaction per
 * request:
 *
 *	extension	BEGIN; idempotency.claim(); on 'new': INSERT the charge,
 *				idempotency.complete(); COMMIT.  IK409 is a 409.
 *	plpgsql		the same with handmade.claim() / handmade.complete() from
 *				bench/plpgsql_layer.sql; outcome 'conflict' is a 409.
 *	redis		SET ik:<scope>:<key> inflight NX EX 86400 in Redis; if
 *				reserved, BEGIN; INSERT; COMMIT in PostgreSQL, then SET the
 *				response over the sentinel, or DEL the sentinel if the charge
 *				failed.  If the key was taken, GET it: a stored response is a
 *				replay, the sentinel a 409.
 *
 * The load: --hot-keys keys g<generation>_<i>, where the generation
 * advances every --generation-ms of wall time, so that each key is
 * hammered by all clients for a while and the run keeps producing charges.
 * Each client sends a random key of the current generation, always with the
 * same body (and so the same fingerprint) for a given key.  A client that
 * gets a 409 or an error, or loses its connection, retries that key later,
 * as a real client does: with jitter after a 409, with exponential backoff
 * after an error, until it gets an answer or the run ends.  Those retries
 * are what re-send a key after a fault, whatever generation it belongs to.
 *
 * The faults: at --fault-at seconds a separate thread runs --fault-cmd and
 * then --restart-cmd with system(), e.g. an immediate stop and a start of
 * PostgreSQL, or a kill and a restart of a Redis without persistence.
 * Clients survive them: a broken connection is reset with backoff until the
 * end of the run.  A request whose COMMIT got no reply has an unknown
 * outcome; it counts as a request and as an error, never as a success.
 *
 * Each run uses its own scope, dc-<unix time>-<pid> unless --scope is
 * given, so that runs on one database or one Redis never see each other's
 * charges or keys and nothing needs truncating.  At the end the counts come
 * from a fresh connection (after any restart):
 *
 *	requests			requests sent, retries included (client-side)
 *	charges				rows of bench.charges in the run's scope
 *	double_charges		sum over keys of (charges of the key - 1)
 *	charges_without_key	charges whose key has no stored response: no row
 *						in idempotency.keys; no row with status 'completed'
 *						in handmade.keys; no stored response under
 *						ik:<scope>:<key> in Redis after the run
 *	errors				requests that failed or whose outcome is unknown
 *						(a 409 is an answer, not an error)
 *
 * Usage: doublecharge --design extension|plpgsql|redis [--pg CONNINFO]
 *					   [--redis HOST:PORT] [--clients N] [--hot-keys N]
 *					   [--seconds S] [--generation-ms MS] [--scope SCOPE]
 *					   [--fault-at S --fault-cmd CMD [--restart-cmd CMD]]
 *
 * Output, one line on stdout:
 *	  design=<d> requests=<n> charges=<n> double_charges=<n>
 *	  charges_without_key=<n> errors=<n>
 * and a breakdown of the answers on stderr.  Exit status: 0 whatever the
 * counts (the caller judges them), 2 on a usage or set-up error, or when
 * the counts cannot be read at the end.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "driver.h"

/* requests a client keeps for retrying; more are given up */
#define MAX_RETRIES 64

/* reconnection backoff, from the first attempt to its cap */
#define RECONNECT_FIRST_MS 10
#define RECONNECT_MAX_MS 500

/* retry delays: a 409 soon, with jitter; an error with backoff */
#define CONFLICT_RETRY_MS 5
#define CONFLICT_JITTER_MS 20
#define ERROR_RETRY_FIRST_MS 10
#define ERROR_RETRY_MAX_MS 1000

/* how long the final count waits for a server that is still restarting */
#define FINAL_CONNECT_SECONDS 60

/* kinds of client diagnostics shown; each is shown once, then counted */
#define MAX_MESSAGE_KINDS 32

typedef enum Design
{
	DESIGN_EXTENSION,
	DESIGN_PLPGSQL,
	DESIGN_REDIS
} Design;

static const char *const design_names[] = {"extension", "plpgsql", "redis"};

/* one logical request: its key, and when to send it again */
typedef struct Request
{
	long		generation;
	int			index;
	int			attempts;
	double		due_ms;
} Request;

typedef struct Client
{
	int			id;
	pthread_t	thread;
	PGconn	   *pg;
	bool		pg_ready;		/* connected, and the statements prepared */
	redisContext *redis;
	uint64_t	rng;
	Request		retries[MAX_RETRIES];
	int			nretries;
	/* the last failed statement's SQLSTATE and message */
	char		sqlstate[6];
	char		errmsg[512];
	/* answers, as the client saw them */
	long		requests;
	long		charged;
	long		replays;
	long		conflicts;
	long		refused;
	long		failed;
	long		unknown;		/* of those, COMMITs with no reply */
	long		reconnects;
	double		longest_outage_ms;	/* from a loss to its reconnection */
	long		given_up;		/* retries that did not fit in the list */
} Client;

static Design opt_design;
static bool opt_design_set = false;
static const char *opt_pg = "";
static char *opt_redis_host;
static int	opt_redis_port = 6379;
static int	opt_clients = 32;
static int	opt_hot_keys = 100;
static double opt_seconds = 10;
static int	opt_generation_ms = 200;
static const char *opt_scope;
static double opt_fault_at = -1;
static const char *opt_fault_cmd;
static const char *opt_restart_cmd;

static char run_scope[64];
static double run_start_ms;
static double run_deadline_ms;

const char *const progname = "doublecharge";

/*
 * Client diagnostics by text.  Under a fault every client fails the same
 * way at once: the first of each kind is shown as it happens, the repeats
 * are counted and summed up at the end, so that a different error later in
 * the run is not buried under the expected ones.
 */
typedef struct MessageKind
{
	char		text[256];
	long		count;
} MessageKind;

static pthread_mutex_t messages_lock = PTHREAD_MUTEX_INITIALIZER;
static MessageKind message_kinds[MAX_MESSAGE_KINDS];
static int	nmessage_kinds;
static long messages_unshown;	/* of kinds beyond the table */

static void
usage(FILE *out)
{
	fprintf(out,
			"Usage: doublecharge --design extension|plpgsql|redis "
			"[OPTION]...\n"
			"Count the double charges of an idempotency design when many "
			"clients send\nthe same keys, optionally across a fault.\n\n"
			"  --design D            extension, plpgsql or redis\n"
			"  --pg CONNINFO         libpq connection string (default: "
			"libpq's defaults)\n"
			"  --redis HOST:PORT     Redis server, for --design redis "
			"(default 127.0.0.1:6379)\n"
			"  --clients N           concurrent clients (default 32)\n"
			"  --hot-keys N          keys hammered at a time (default 100)\n"
			"  --seconds S           length of the run (default 10)\n"
			"  --generation-ms MS    wall time before a new set of keys "
			"(default 200)\n"
			"  --scope SCOPE         scope of the run (default "
			"dc-<unix time>-<pid>)\n"
			"  --fault-at S          when to run the fault, in seconds into "
			"the run\n"
			"  --fault-cmd CMD       shell command that makes the fault\n"
			"  --restart-cmd CMD     shell command run right after it\n"
			"  --help                show this help\n\n"
			"Prints one line: design=D requests=N charges=N double_charges=N "
			"charges_without_key=N errors=N\n");
}

/*
 * A client's diagnostic, on one line: libpq's explanation of a lost
 * connection adds nothing when it is the fault that was asked for.
 */
void
client_error(int client, const char *fmt,...)
{
	va_list		ap;
	char		msg[256];
	int			i;

	va_start(ap, fmt);
	format_message(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	msg[strcspn(msg, "\n")] = '\0';

	pthread_mutex_lock(&messages_lock);
	for (i = 0; i < nmessage_kinds; i++)
	{
		if (strcmp(message_kinds[i].text, msg) == 0)
			break;
	}
	if (i < nmessage_kinds)
		message_kinds[i].count++;
	else if (nmessage_kinds < MAX_MESSAGE_KINDS)
	{
		MessageKind *kind = &message_kinds[nmessage_kinds++];

		snprintf(kind->text, sizeof(kind->text), "%s", msg);
		kind->count = 1;
		fprintf(stderr, "%s: %.2f s: client %d: %s\n", progname,
				(now_ms() - run_start_ms) / 1000, client, msg);
	}
	else
		messages_unshown++;
	pthread_mutex_unlock(&messages_lock);
}

/* the repeats that client_error() counted instead of showing */
static void
report_repeated_messages(void)
{
	for (int i = 0; i < nmessage_kinds; i++)
	{
		if (message_kinds[i].count > 1)
			note("%ld times in all: %s", message_kinds[i].count,
				 message_kinds[i].text);
	}
	if (messages_unshown > 0)
		note("%ld further client messages of other kinds not shown",
			 messages_unshown);
}

static void
sleep_ms(double ms)
{
	struct timespec ts;

	if (ms <= 0)
		return;
	ts.tv_sec = (time_t) (ms / 1000);
	ts.tv_nsec = (long) ((ms - ts.tv_sec * 1000.0) * 1e6);
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void
parse_options(int argc, char **argv)
{
	static const struct option long_options[] = {
		{"design", required_argument, NULL, 'd'},
		{"pg", required_argument, NULL, 'p'},
		{"redis", required_argument, NULL, 'r'},
		{"clients", required_argument, NULL, 'c'},
		{"hot-keys", required_argument, NULL, 'k'},
		{"seconds", required_argument, NULL, 's'},
		{"generation-ms", required_argument, NULL, 'g'},
		{"scope", required_argument, NULL, 'S'},
		{"fault-at", required_argument, NULL, 'f'},
		{"fault-cmd", required_argument, NULL, 'F'},
		{"restart-cmd", required_argument, NULL, 'R'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}
	};
	int			opt;

	while ((opt = getopt_long(argc, argv, "", long_options, NULL)) != -1)
	{
		switch (opt)
		{
			case 'd':
				opt_design_set = true;
				opt_design = (Design) parse_choice(optarg, "--design",
												   design_names,
												   lengthof(design_names));
				break;
			case 'p':
				opt_pg = optarg;
				break;
			case 'r':
				parse_redis_address(optarg, &opt_redis_host, &opt_redis_port);
				break;
			case 'c':
				opt_clients = (int) parse_long(optarg, "--clients", 1, 1000);
				break;
			case 'k':
				opt_hot_keys = (int) parse_long(optarg, "--hot-keys", 1,
												1000000);
				break;
			case 's':
				opt_seconds = parse_seconds(optarg, "--seconds", 0.001);
				break;
			case 'g':
				opt_generation_ms = (int) parse_long(optarg, "--generation-ms",
													 1, 86400000);
				break;
			case 'S':
				if (strlen(optarg) < 1 || strlen(optarg) > 40)
					fatal("invalid value \"%s\" for --scope: 1 to 40 bytes "
						  "are expected", optarg);
				opt_scope = optarg;
				break;
			case 'f':
				opt_fault_at = parse_seconds(optarg, "--fault-at", 0);
				break;
			case 'F':
				opt_fault_cmd = optarg;
				break;
			case 'R':
				opt_restart_cmd = optarg;
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
	if (!opt_design_set)
		fatal("--design is required; see --help");
	if ((opt_fault_at >= 0) != (opt_fault_cmd != NULL))
		fatal("--fault-at and --fault-cmd go together");
	if (opt_restart_cmd != NULL && opt_fault_cmd == NULL)
		fatal("--restart-cmd needs --fault-at and --fault-cmd");
	if (opt_fault_cmd != NULL && opt_fault_at >= opt_seconds)
		fatal("--fault-at %g is not within the run of %g seconds",
			  opt_fault_at, opt_seconds);
	if (opt_redis_host != NULL && opt_design != DESIGN_REDIS)
		fatal("--redis is only for --design redis");
	if (opt_redis_host == NULL)
		opt_redis_host = "127.0.0.1";
}

/* ------------------------------------------------------------------ */
/* connections */

/*
 * Run a prepared statement.  On success the result is returned; on failure
 * NULL, with the SQLSTATE (empty when the connection broke) and the message
 * kept in the client.
 */
static PGresult *
run(Client *c, const char *name, int nparams, const char *const *params)
{
	PGresult   *res = PQexecPrepared(c->pg, name, nparams, params, NULL,
									 NULL, 0);
	ExecStatusType status = PQresultStatus(res);
	const char *sqlstate;
	const char *msg;

	if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
		return res;
	sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	msg = PQresultErrorMessage(res);
	if (msg[0] == '\0')
		msg = PQerrorMessage(c->pg);
	snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", sqlstate ? sqlstate : "");
	snprintf(c->errmsg, sizeof(c->errmsg), "%s", msg);
	PQclear(res);
	return NULL;
}

/* a step that returns nothing the caller needs */
static bool
run_step(Client *c, const char *name, int nparams, const char *const *params)
{
	PGresult   *res = run(c, name, nparams, params);

	if (res == NULL)
		return false;
	PQclear(res);
	return true;
}

/*
 * The server's warnings as it goes down ("terminating connection due to
 * immediate shutdown command") arrive once per client; the failed request
 * that follows says the same once, within the message limit.
 */
static void
ignore_notice(void *arg, const char *message)
{
	(void) arg;
	(void) message;
}

/*
 * Connect, or reset a broken connection, and prepare the design's
 * statements (a new session has none).  False if the server is not there
 * yet; PQerrorMessage says why.
 */
static bool
pg_open(Client *c)
{
	bool		ok;

	if (c->pg == NULL)
	{
		c->pg = PQconnectdb(opt_pg);
		PQsetNoticeProcessor(c->pg, ignore_notice, NULL);
	}
	else
		PQreset(c->pg);
	c->pg_ready = false;
	if (PQstatus(c->pg) != CONNECTION_OK)
		return false;

	ok = prepare_charge(c->pg) == NULL;
	if (ok && opt_design == DESIGN_EXTENSION)
		ok = prepare(c->pg, "claim",
					 "SELECT outcome "
					 "FROM idempotency.claim($1, $2, $3::bytea)", 3) &&
			prepare(c->pg, "complete",
					"SELECT idempotency.complete($1, $2, 201, $3::jsonb)", 3);
	else if (ok && opt_design == DESIGN_PLPGSQL)
		ok = prepare(c->pg, "claim",
					 "SELECT outcome "
					 "FROM handmade.claim($1, $2, $3::bytea)", 3) &&
			prepare(c->pg, "complete",
					"SELECT handmade.complete($1, $2, 201, $3::jsonb)", 3);
	c->pg_ready = ok;
	return ok;
}

static bool
redis_open(Client *c)
{
	if (c->redis != NULL)
		redisFree(c->redis);
	c->redis = redis_connect(opt_redis_host, opt_redis_port);
	return c->redis->err == 0;
}

static bool
pg_ok(const Client *c)
{
	return c->pg_ready && PQstatus(c->pg) == CONNECTION_OK;
}

/* hiredis leaves a context unusable after any I/O error */
static bool
redis_ok(const Client *c)
{
	return opt_design != DESIGN_REDIS || c->redis->err == 0;
}

/*
 * Get both connections back after a fault, with backoff, as an application
 * server's pool does.  False if the run ended first.
 */
static bool
reconnect(Client *c)
{
	double		backoff = RECONNECT_FIRST_MS;
	double		down_since = now_ms();

	while (!pg_ok(c) || !redis_ok(c))
	{
		if (!pg_ok(c))
			pg_open(c);
		if (!redis_ok(c))
			redis_open(c);
		if (pg_ok(c) && redis_ok(c))
			break;
		if (now_ms() + backoff >= run_deadline_ms)
			return false;
		sleep_ms(backoff + (double) (next_random(&c->rng) % 10));
		if (backoff < RECONNECT_MAX_MS)
			backoff *= 2;
	}
	c->reconnects++;
	if (now_ms() - down_since > c->longest_outage_ms)
		c->longest_outage_ms = now_ms() - down_since;
	return true;
}

/* ------------------------------------------------------------------ */
/* the request, per design */

/*
 * The request's texts for a key.  A retry sends the same body, so the
 * designs that bind a key to its request see the same fingerprint: the
 * body's bytes themselves (no backslash in them, so they read as bytea).
 */
typedef struct RequestText
{
	char		key[48];
	char		body[96];		/* the request body, also its fingerprint */
	char		response[96];	/* the body of the 201 */
} RequestText;

static void
request_text(const Request *r, RequestText *t)
{
	snprintf(t->key, sizeof(t->key), "g%ld_%d", r->generation, r->index);
	snprintf(t->body, sizeof(t->body),
			 "{\"amount\": 100, \"currency\": \"eur\", \"key\": \"%s\"}",
			 t->key);
	snprintf(t->response, sizeof(t->response),
			 "{\"charge\": \"%s\", \"amount\": 100}", t->key);
}

/* a statement failed: say so, clean up, and let the client retry */
static Outcome
failed(Client *c, const char *step)
{
	client_error(c->id, "%s failed: %s", step, c->errmsg);
	rollback_open(c->pg);
	return OUTCOME_FAILED;
}

/*
 * COMMIT the charge.  An error the server raised for the COMMIT itself
 * means that the transaction rolled back.  But if the connection broke
 * before the reply (no SQLSTATE, or class 08), or the server was shutting
 * down (57P), the charge may or may not have committed: the application
 * cannot know, and neither can this counter.
 */
static bool
commit_charge(Client *c)
{
	if (run_step(c, "commit", 0, NULL))
		return true;
	if (c->sqlstate[0] == '\0' || strncmp(c->sqlstate, "08", 2) == 0 ||
		strncmp(c->sqlstate, "57P", 3) == 0)
		c->unknown++;
	return false;
}

/* the extension's and the hand-written layer's flow: one transaction */
static Outcome
request_sql(Client *c, const RequestText *t)
{
	const char *claim_params[3] = {run_scope, t->key, t->body};
	const char *insert_params[2] = {run_scope, t->key};
	const char *complete_params[3] = {run_scope, t->key, t->response};
	PGresult   *res;
	char		outcome[16];

	if (!run_step(c, "begin", 0, NULL))
		return failed(c, "BEGIN");
	res = run(c, "claim", 3, claim_params);
	if (res == NULL)
	{
		if (strcmp(c->sqlstate, "IK409") == 0)
		{
			rollback_open(c->pg);
			return OUTCOME_CONFLICT;
		}
		if (strcmp(c->sqlstate, "IK422") == 0)
		{
			rollback_open(c->pg);
			return OUTCOME_REFUSED;
		}
		return failed(c, "claim");
	}
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
	{
		PQclear(res);
		snprintf(c->errmsg, sizeof(c->errmsg), "not one outcome");
		return failed(c, "claim");
	}
	snprintf(outcome, sizeof(outcome), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);

	if (strcmp(outcome, "new") != 0)
	{
		/* nothing to charge, and nothing the claim wrote to keep */
		rollback_open(c->pg);
		if (strcmp(outcome, "replay") == 0)
			return OUTCOME_REPLAY;
		if (strcmp(outcome, "conflict") == 0)
			return OUTCOME_CONFLICT;
		if (strcmp(outcome, "mismatch") == 0)
			return OUTCOME_REFUSED;
		snprintf(c->errmsg, sizeof(c->errmsg), "unexpected outcome \"%s\"",
				 outcome);
		return failed(c, "claim");
	}

	if (!run_step(c, "insert", 2, insert_params))
		return failed(c, "INSERT");
	if (!run_step(c, "complete", 3, complete_params))
		return failed(c, "complete");
	if (!commit_charge(c))
		return failed(c, "COMMIT");
	return OUTCOME_CHARGED;
}

/* the design the extension replaces: Redis in front of PostgreSQL */
static Outcome
request_redis(Client *c, const RequestText *t)
{
	const char *insert_params[2] = {run_scope, t->key};
	Outcome		outcome;
	bool		charged;

	if (!redis_reserve(c->redis, c->id, run_scope, t->key, &outcome))
		return outcome;

	charged = run_step(c, "begin", 0, NULL) &&
		run_step(c, "insert", 2, insert_params) &&
		commit_charge(c);
	if (!charged)
	{
		/*
		 * The charge failed, or its COMMIT got no reply because the
		 * connection died.  A typical application treats both alike: the
		 * request failed, so it frees the key for the client's retry.  When
		 * that COMMIT did commit, the retry charges a second time: this is
		 * how the design double-charges when PostgreSQL dies.
		 */
		client_error(c->id, "charge failed: %s", c->errmsg);
		rollback_open(c->pg);
		redis_release(c->redis, c->id, run_scope, t->key);
		return OUTCOME_FAILED;
	}

	/*
	 * The charge committed, so the application answers 201 even if the
	 * response could not be stored: Redis is gone.  The key then has no
	 * stored response.  If Redis lost its data too (a restart without
	 * persistence loses every sentinel and response), the next retry of
	 * this key, or of any key completed before, charges again.
	 */
	redis_store(c->redis, c->id, run_scope, t->key, t->response);
	return OUTCOME_CHARGED;
}

/* ------------------------------------------------------------------ */
/* clients */

/* keep a request for a retry after delay_ms; give it up if there is no room */
static void
schedule_retry(Client *c, const Request *r, double delay_ms)
{
	Request    *slot;

	if (c->nretries == MAX_RETRIES)
	{
		c->given_up++;
		return;
	}
	slot = &c->retries[c->nretries++];
	*slot = *r;
	slot->attempts++;
	slot->due_ms = now_ms() + delay_ms;
}

/* the next request: the retry due first, else a random hot key */
static void
next_request(Client *c, Request *r)
{
	double		now = now_ms();
	int			best = -1;

	for (int i = 0; i < c->nretries; i++)
	{
		if (c->retries[i].due_ms <= now &&
			(best < 0 || c->retries[i].due_ms < c->retries[best].due_ms))
			best = i;
	}
	if (best >= 0)
	{
		*r = c->retries[best];
		c->retries[best] = c->retries[--c->nretries];
		return;
	}
	r->generation = (long) ((now - run_start_ms) / opt_generation_ms);
	r->index = (int) (next_random(&c->rng) % (uint64_t) opt_hot_keys);
	r->attempts = 0;
	r->due_ms = now;
}

static double
error_retry_delay(Client *c, int attempts)
{
	double		delay = ERROR_RETRY_FIRST_MS;

	for (int i = 0; i < attempts && delay < ERROR_RETRY_MAX_MS; i++)
		delay *= 2;
	if (delay > ERROR_RETRY_MAX_MS)
		delay = ERROR_RETRY_MAX_MS;
	return delay + (double) (next_random(&c->rng) % ERROR_RETRY_FIRST_MS);
}

static void *
client_main(void *arg)
{
	Client	   *c = arg;

	while (now_ms() < run_deadline_ms)
	{
		Request		r;
		RequestText t;
		Outcome		outcome;

		if ((!pg_ok(c) || !redis_ok(c)) && !reconnect(c))
			break;

		next_request(c, &r);
		request_text(&r, &t);
		outcome = opt_design == DESIGN_REDIS ? request_redis(c, &t) :
			request_sql(c, &t);
		c->requests++;

		switch (outcome)
		{
			case OUTCOME_CHARGED:
				c->charged++;
				break;
			case OUTCOME_REPLAY:
				c->replays++;
				break;
			case OUTCOME_REFUSED:
				c->refused++;
				break;
			case OUTCOME_CONFLICT:
				c->conflicts++;
				schedule_retry(c, &r, CONFLICT_RETRY_MS +
							   (double) (next_random(&c->rng) %
										 CONFLICT_JITTER_MS));
				break;
			case OUTCOME_FAILED:
				c->failed++;
				schedule_retry(c, &r, error_retry_delay(c, r.attempts));
				break;
		}
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* the fault */

/*
 * Run a fault or restart command.  Its output goes to stderr: stdout
 * carries only the result line.
 */
static void
run_command(const char *what, const char *cmd)
{
	static const char prefix[] = "exec </dev/null 1>&2\n";
	size_t		size = sizeof(prefix) + strlen(cmd);
	char	   *script = malloc(size);
	double		t0 = now_ms();
	int			rc;

	if (script == NULL)
		fatal("out of memory");
	snprintf(script, size, "%s%s", prefix, cmd);
	note("%.2f s: running the %s command", (t0 - run_start_ms) / 1000, what);
	rc = system(script);
	free(script);
	if (rc == -1)
		note("could not run the %s command: %s", what, strerror(errno));
	else if (!WIFEXITED(rc) || WEXITSTATUS(rc) != 0)
		note("the %s command failed (status %d) after %.0f ms", what, rc,
			 now_ms() - t0);
	else
		note("the %s command finished after %.0f ms", what, now_ms() - t0);
}

static void *
fault_main(void *arg)
{
	(void) arg;
	sleep_ms(run_start_ms + opt_fault_at * 1000 - now_ms());
	run_command("fault", opt_fault_cmd);
	if (opt_restart_cmd != NULL)
		run_command("restart", opt_restart_cmd);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* the counts, from the database and Redis after the run */

static PGconn *
final_connection(void)
{
	double		give_up = now_ms() + FINAL_CONNECT_SECONDS * 1000.0;
	PGconn	   *pg;

	for (;;)
	{
		pg = PQconnectdb(opt_pg);
		if (PQstatus(pg) == CONNECTION_OK)
			return pg;
		if (now_ms() > give_up)
			fatal("could not connect to PostgreSQL to count the charges: %s",
				  PQerrorMessage(pg));
		PQfinish(pg);
		sleep_ms(200);
	}
}

static long
count_query(PGconn *pg, const char *sql)
{
	const char *params[1] = {run_scope};
	PGresult   *res = PQexecParams(pg, sql, 1, NULL, params, NULL, NULL, 0);
	long		n;

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		fatal("could not count: %s\nquery: %s", PQerrorMessage(pg), sql);
	n = atol(PQgetvalue(res, 0, 0));
	PQclear(res);
	return n;
}

/*
 * Charges whose key has no stored response in Redis: those of a key whose
 * entry is gone (Redis lost it) or is still the sentinel (the response was
 * never stored).
 */
static long
count_redis_without_key(PGconn *pg)
{
	const char *params[1] = {run_scope};
	struct timeval timeout = {REDIS_TIMEOUT_SECONDS, 0};
	double		give_up = now_ms() + FINAL_CONNECT_SECONDS * 1000.0;
	redisContext *redis;
	PGresult   *res;
	long		n = 0;

	for (;;)
	{
		redis = redisConnectWithTimeout(opt_redis_host, opt_redis_port,
										timeout);
		if (redis == NULL)
			fatal("out of memory");
		if (redis->err == 0)
			break;
		if (now_ms() > give_up)
			fatal("could not connect to Redis at %s:%d to count the keys: %s",
				  opt_redis_host, opt_redis_port, redis->errstr);
		redisFree(redis);
		sleep_ms(200);
	}

	res = PQexecParams(pg,
					   "SELECT idem_key, count(*) FROM bench.charges "
					   "WHERE scope = $1 GROUP BY idem_key",
					   1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fatal("could not list the charged keys: %s", PQerrorMessage(pg));
	for (int i = 0; i < PQntuples(res); i++)
	{
		redisReply *reply = redisCommand(redis, "GET " REDIS_KEY, run_scope,
										 PQgetvalue(res, i, 0));

		if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
			fatal("could not read key \"%s\" from Redis: %s",
				  PQgetvalue(res, i, 0),
				  reply ? reply->str : redis->errstr);
		if (!redis_is_response(reply))
			n += atol(PQgetvalue(res, i, 1));
		freeReplyObject(reply);
	}
	PQclear(res);
	redisFree(redis);
	return n;
}

int
main(int argc, char **argv)
{
	Client	   *clients;
	Client		total = {0};
	pthread_t	fault_thread;
	PGconn	   *pg;
	long		charges;
	long		double_charges;
	long		without_key = 0;

	parse_options(argc, argv);

	/* a server that dies under a write must not kill the run */
	signal(SIGPIPE, SIG_IGN);

	if (opt_scope != NULL)
		snprintf(run_scope, sizeof(run_scope), "%s", opt_scope);
	else
		snprintf(run_scope, sizeof(run_scope), "dc-%ld-%d",
				 (long) time(NULL), (int) getpid());

	clients = calloc(opt_clients, sizeof(Client));
	if (clients == NULL)
		fatal("out of memory");
	for (int i = 0; i < opt_clients; i++)
	{
		Client	   *c = &clients[i];

		c->id = i;
		c->rng = (UINT64_C(0x9E3779B97F4A7C15) * (i + 1)) ^
			((uint64_t) getpid() << 20) ^ (uint64_t) time(NULL);
		if (!pg_open(c))
			fatal("could not connect to PostgreSQL and prepare the %s "
				  "design's statements: %s", design_names[opt_design],
				  PQerrorMessage(c->pg));
		if (opt_design == DESIGN_REDIS && !redis_open(c))
			fatal("could not connect to Redis at %s:%d: %s", opt_redis_host,
				  opt_redis_port, c->redis->errstr);
	}

	run_start_ms = now_ms();
	run_deadline_ms = run_start_ms + opt_seconds * 1000.0;
	if (opt_fault_cmd != NULL &&
		pthread_create(&fault_thread, NULL, fault_main, NULL) != 0)
		fatal("could not start the fault thread");
	for (int i = 0; i < opt_clients; i++)
	{
		if (pthread_create(&clients[i].thread, NULL, client_main,
						   &clients[i]) != 0)
			fatal("could not start client thread %d", i);
	}

	for (int i = 0; i < opt_clients; i++)
	{
		Client	   *c = &clients[i];

		pthread_join(c->thread, NULL);
		total.requests += c->requests;
		total.charged += c->charged;
		total.replays += c->replays;
		total.conflicts += c->conflicts;
		total.refused += c->refused;
		total.failed += c->failed;
		total.unknown += c->unknown;
		total.reconnects += c->reconnects;
		if (c->longest_outage_ms > total.longest_outage_ms)
			total.longest_outage_ms = c->longest_outage_ms;
		total.given_up += c->given_up;
		total.nretries += c->nretries;
		PQfinish(c->pg);
		if (c->redis != NULL)
			redisFree(c->redis);
	}
	report_repeated_messages();

	/* a restart still running must finish before the counts */
	if (opt_fault_cmd != NULL)
		pthread_join(fault_thread, NULL);

	pg = final_connection();
	charges = count_query(pg,
						  "SELECT count(*) FROM bench.charges "
						  "WHERE scope = $1");
	double_charges = count_query(pg,
								 "SELECT coalesce(sum(n - 1), 0) FROM "
								 "(SELECT count(*) AS n FROM bench.charges "
								 "WHERE scope = $1 GROUP BY idem_key) AS "
								 "per_key");
	switch (opt_design)
	{
		case DESIGN_EXTENSION:
			without_key = count_query(pg,
									  "SELECT count(*) FROM bench.charges c "
									  "WHERE c.scope = $1 AND NOT EXISTS "
									  "(SELECT FROM idempotency.keys k "
									  "WHERE k.scope = c.scope "
									  "AND k.key = c.idem_key)");
			break;
		case DESIGN_PLPGSQL:
			without_key = count_query(pg,
									  "SELECT count(*) FROM bench.charges c "
									  "WHERE c.scope = $1 AND NOT EXISTS "
									  "(SELECT FROM handmade.keys k "
									  "WHERE k.scope = c.scope "
									  "AND k.key = c.idem_key "
									  "AND k.status = 'completed')");
			break;
		case DESIGN_REDIS:
			without_key = count_redis_without_key(pg);
			break;
	}
	PQfinish(pg);

	note("scope %s: %ld requests answered charged=%ld replay=%ld "
		 "conflict=%ld refused=%ld failed=%ld (outcome unknown %ld); "
		 "%ld reconnects, the longest after %.0f ms; %ld retries given up, "
		 "%ld pending at the end",
		 run_scope, total.requests, total.charged, total.replays,
		 total.conflicts, total.refused, total.failed, total.unknown,
		 total.reconnects, total.longest_outage_ms, total.given_up,
		 (long) total.nretries);
	printf("design=%s requests=%ld charges=%ld double_charges=%ld "
		   "charges_without_key=%ld errors=%ld\n",
		   design_names[opt_design], total.requests, charges, double_charges,
		   without_key, total.failed);
	free(clients);
	return 0;
}

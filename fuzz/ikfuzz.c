/*-------------------------------------------------------------------------
 *
 * ikfuzz.c
 *	  A seeded random fuzzer of the idempotency extension's SQL API: main()
 *	  and the table of operations it picks from.
 *
 * It drives two libpq connections (A and B) to one database that has the
 * extension, and feeds claim(), complete(), release(), checkpoint(),
 * fingerprint() (all three overloads), reap() and the stats view random
 * arguments: scopes, keys, intervals, statuses and lease tokens from
 * gen.c, JSON bodies from json.c.
 *
 * What it checks (docs/fuzzing.md has the full list; each operation's
 * file says what it checks in detail):
 *  - the server never crashes: both connections stay up (conn.c);
 *  - a bad argument is rejected with IK400, a good one never is (the
 *    fuzzer knows which it generated); text that is not valid UTF-8 is
 *    refused by PostgreSQL itself (22021) before any function runs;
 *  - every other error is one the contract allows for that call, in that
 *    state (IK409/IK410/IK422/IK428, 40001 only under REPEATABLE READ or
 *    SERIALIZABLE, 22023 only on the scopes whose policies and settings
 *    it randomizes, where retain can end up shorter than ttl); anything
 *    else (XX000, 22008, 57014, a lost connection, ...) is a failure
 *    (op_args.c, op_policy.c);
 *  - claim's outcome is 'new', 'replay' or 'resume', never NULL, and for
 *    the keys it models exactly the one the contract says, with the
 *    stored response on a replay (model.c, op_model.c);
 *  - bodies equal as jsonb fingerprint equal, and unequal ones do not, and
 *    each fingerprint equals SHA-256 (or HMAC-SHA256 under a secret) of
 *    the encoding README.md documents, computed here independently
 *    (op_fingerprint_equal.c, json.c, sha256.c);
 *  - fingerprint(m, p, text) agrees with PostgreSQL's jsonb parser: IK400
 *    exactly when the text is not JSON (op_fingerprint_args.c);
 *  - rows of idempotency.keys stay sane, and a key stored under a policy
 *    whose replay window is at least a minute replays (op_policy.c).
 *
 * Each iteration draws its inputs from its own random stream (rng.c),
 * seeded here by (seed, iteration number); what it expects also depends
 * on the modelled keys' state, which earlier iterations made.  So --seed S
 * --iterations N replays a run up to iteration N - 1, and --seed S --only
 * I runs iteration I alone (exact for operations that do not use modelled
 * keys).  On a failure it prints the failing operation as SQL, for both
 * connections, to stderr and to the --repro file (conn.c).  Runs are
 * bounded by --seconds and --iterations, whichever comes first.
 *
 * The files, each owning one concern (ikfuzz.h declares what they share,
 * in the order they build on each other): options.c, rng.c, arena.c,
 * sha256.c, utf8.c, conn.c, gen.c, json.c, session.c, model.c, and one
 * op_*.c per operation.  fuzz/run.sh and docs/fuzzing.md show how all the
 * .c files of fuzz/ are built into one binary, with libpq.
 *
 * Usage: ikfuzz [--seed N] [--seconds S] [--iterations N] [--only I]
 *               [--repro FILE] [--include-known] [--verbose] [conninfo]
 * FUZZ_SEED in the environment is the default seed.  Exit status: 0 if
 * every check held, 1 on a failure, 2 on a usage or set-up error.
 *
 *-------------------------------------------------------------------------
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ikfuzz.h"

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

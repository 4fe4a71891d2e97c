/*-------------------------------------------------------------------------
 *
 * driver.h
 *	  What the benchmark's C drivers, bench/redisfront and bench/doublecharge,
 *	  have in common: diagnostics, option values, the clock, the random keys,
 *	  the charge's prepared statements and the steps of the Redis-in-front
 *	  design.  Sharing the steps means that both drivers measure the same
 *	  design, not two copies that may drift apart.
 *
 * Each program defines progname and client_error(), below.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BENCH_DRIVER_H
#define BENCH_DRIVER_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#define lengthof(array) (sizeof(array) / sizeof((array)[0]))

/* a hung Redis fails the request rather than the run */
#define REDIS_TIMEOUT_SECONDS 5

/* where the Redis-in-front design keeps a key: a hiredis format, scope, key */
#define REDIS_KEY "ik:%s:%s"

/* what the API answers a request, as its client sees it */
typedef enum Outcome
{
	OUTCOME_CHARGED,			/* this request charged: a 201 */
	OUTCOME_REPLAY,				/* the stored response came back */
	OUTCOME_CONFLICT,			/* 409, the key is in flight: retry later */
	OUTCOME_REFUSED,			/* a final refusal such as a 422 */
	OUTCOME_FAILED				/* an error or an unknown outcome: retry */
} Outcome;

/* the prefix of every diagnostic; defined by each program */
extern const char *const progname;

/*
 * A client's failure during the run.  Defined by each program, since a short
 * measurement and a run across a fault want different amounts of it.
 */
extern void client_error(int client, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));

extern void format_message(char *buf, size_t size, const char *fmt,
						   va_list ap);
extern void note(const char *fmt,...)
			__attribute__((format(printf, 1, 2)));
extern void fatal(const char *fmt,...)
			__attribute__((format(printf, 1, 2), noreturn));

extern double now_ms(void);
extern uint64_t next_random(uint64_t *state);

extern long parse_long(const char *arg, const char *option, long min,
					   long max);
extern double parse_seconds(const char *arg, const char *option,
							double min);
extern int	parse_choice(const char *arg, const char *option,
						 const char *const *choices, int nchoices);
extern void parse_redis_address(const char *arg, char **host, int *port);

extern bool prepare(PGconn *pg, const char *name, const char *sql,
					int nparams);
extern const char *prepare_charge(PGconn *pg);
extern void rollback_open(PGconn *pg);

extern redisContext *redis_connect(const char *host, int port);
extern bool redis_is_response(const redisReply *reply);
extern bool redis_reserve(redisContext *redis, int client, const char *scope,
						  const char *key, Outcome *outcome);
extern void redis_release(redisContext *redis, int client, const char *scope,
						  const char *key);
extern bool redis_store(redisContext *redis, int client, const char *scope,
						const char *key, const char *response);

#endif							/* BENCH_DRIVER_H */

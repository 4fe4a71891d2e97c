/*-------------------------------------------------------------------------
 *
 * ikfuzz.h
 *	  What the files of ikfuzz share: its types, its state and its functions,
 *	  grouped by the file that owns them.
 *
 * The files stack up without a circle, in the order of this header:
 * options.c, rng.c, arena.c, sha256.c and utf8.c need none of the others;
 * conn.c runs statements and judges their results; gen.c makes arguments
 * and json.c JSON bodies (and the fingerprints the oracle expects);
 * session.c holds what is known of the server session; model.c models a
 * few keys; the op_*.c files are the operations; ikfuzz.c, with main(),
 * picks them.  A file uses only what is declared in the parts of this
 * header above its own.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IKFUZZ_H
#define IKFUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

/* options.c: options and counters */

extern uint64_t opt_seed;
extern double opt_seconds;
extern long opt_iterations;
extern const char *opt_repro;
extern const char *opt_conninfo;
extern bool opt_verbose;
extern bool opt_include_known;
extern long opt_only;
extern long iteration;
extern long n_statements;
extern long n_checks;
extern const char *current_op;
extern long op_counts[16];
extern const char *op_names[16];
extern void count_state(const char *st);
extern double now_seconds(void);

/* how often each SQLSTATE (or "ok") was seen, for the summary */
#define MAX_SEEN 64
typedef struct SeenState
{
	char		state[8];
	long		count;
} SeenState;

extern SeenState seen[MAX_SEEN];
extern int	n_seen;

/* rng.c: random numbers */

extern uint64_t rng_state;
extern uint64_t rnd64(void);
extern uint32_t rnd(uint32_t n);
extern int64_t rnd_range(int64_t lo, int64_t hi);
extern bool chance(int percent);

/* arena.c: growable buffers and a per-iteration arena */

typedef struct Buf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} Buf;

extern void buf_add(Buf *b, const void *p, size_t n);
extern void buf_putc(Buf *b, char c);
extern void buf_puts(Buf *b, const char *s);
extern void buf_printf(Buf *b, const char *fmt,...) __attribute__((format(printf, 2, 3)));
extern void buf_reset(Buf *b);
extern void *amalloc(size_t n);
extern char *astrdup(const char *s, size_t n);
extern char *abuf(Buf *b);
extern void arena_reset(void);
extern char *xstrdup(const char *s);

/* sha256.c: SHA-256 and HMAC-SHA256, for the oracle */

extern void digest(const char *secret, const void *data, size_t n, uint8_t out[32]);

/* utf8.c: encoding and validating UTF-8 */

extern int utf8_encode(uint32_t cp, char *out);
extern bool utf8_valid(const unsigned char *p, size_t n);

/* conn.c: connections, statements, the reproducer log, failures */

typedef struct Conn
{
	PGconn	   *pg;
	char		name;
	bool		in_tx;			/* a transaction block is open */
	bool		failed;			/* ... and an error aborted it */
} Conn;

/* An argument: text (format 0) or bytea (format 1); v == NULL is NULL. */
typedef struct Arg
{
	const char *v;
	int			len;
	int			fmt;
} Arg;

typedef struct Res
{
	PGresult   *r;
	bool		ok;
	char		st[6];			/* SQLSTATE, or "" */
	const char *msg;
	const char *sql;			/* the statement as SQL, for messages */
} Res;

extern Conn A;
extern Conn B;
extern Buf oplog;
extern Arg T(const char *s);
extern Arg BIN(const void *p, int len);
extern const Arg NUL;
extern void free_results(void);
extern Res run(Conn *c, const char *sql, int n, const Arg *args);
extern Res run0(Conn *c, const char *sql);
extern char *run_send(Conn *c, const char *sql, int n, const Arg *args);
extern Res run_wait(Conn *c, const char *shown);
extern bool still_busy(Conn *c, int ms);
extern const char *val(Res *r, int row, int col);
extern void expect_list(Res *r, const char *const *list, const char *why);
extern void check(bool cond, Res *r, const char *fmt,...) __attribute__((format(printf, 3, 4)));
extern void begin(Conn *c, const char *iso);
extern Res finish(Conn *c, bool commit);
extern Res rollback(Conn *c);

#define EXPECT(r, why, ...) \
	do { const char *const l_[] = {__VA_ARGS__, NULL}; expect_list((r), l_, (why)); } while (0)

/* gen.c: generators of arguments, each knowing whether what it made is valid */

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

/* Fingerprints passed to claim: bytea, 1 to 255 bytes. */
typedef struct Bytes
{
	char	   *p;				/* NULL for SQL NULL */
	int			len;
	Validity	v;
} Bytes;

/* Intervals: the three fields PostgreSQL keeps; text that round-trips. */
typedef struct Iv
{
	bool		isnull;
	int32_t		month;
	int32_t		day;
	int64_t		usec;
	char	   *text;
} Iv;

extern Text gen_name(int maxbytes, int bad_percent);
extern Arg targ(const Text *t);
extern Bytes gen_fp_arg(int bad_percent);
extern Arg barg(const Bytes *b);
extern void iv_text(Iv *iv);
extern int64_t iv_ms(const Iv *iv);
extern Iv iv_ms_make(int64_t ms);
extern Iv gen_small_wait(void);
extern Iv gen_interval(void);
extern Validity judge_wait(const Iv *iv);
extern Validity judge_lease(const Iv *iv);
extern Arg ivarg(const Iv *iv);
extern int64_t gen_status(bool *isnull, int bad_percent);
extern char *itoa_a(int64_t v);
extern char *gen_uuid(void);
extern Text gen_method(int bad_percent);
extern void upper_ascii(char *dst, const char *src, int n);
extern char *recase(const Text *m);
extern Text gen_path(int bad_percent);
extern Text gen_recovery_point(int bad_percent);

/* json.c: JSON values as trees, rendered many ways */

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

/* How to write a value. */
typedef struct Style
{
	bool		ws;				/* random white space between tokens */
	bool		shuffle;		/* object members in random order */
	bool		dups;			/* earlier duplicates of keys (the last wins) */
	bool		numbers;		/* numbers respelled */
	bool		escapes;		/* characters written as \u escapes */
} Style;

extern int	jbudget;			/* nodes left in the value being made */
extern J *jnew(int k);
extern J *gen_str_node(int maxlen);
extern void obj_add(J *o, J *key, J *v);
extern J *gen_json(int depth);
extern J *gen_body(void);
extern J *jcopy(const J *j);
extern void jmutate(J *j);
extern const Style plain_style;
extern char *json_text(const J *j, const Style *s);
extern void expected_fingerprint(const char *secret, const Text *method, const Text *path, const J *body, uint8_t out[32]);
extern bool bytea_equals(const char *hex, const uint8_t *bytes, int n);
extern char *hex_of(const uint8_t *p, int n);

/* session.c: what is known of the server session */

extern bool is_superuser;
extern bool preloaded;
extern char *secret;			/* fingerprint secret in force in A's transaction */
extern void maybe_secret(void);

/* model.c: the model of a few keys, whose outcomes the fuzzer predicts */

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
	int			fp;				/* which of model_fp[] (model.c) */
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

#define CLAIM_SQL \
	"SELECT outcome, response_status," \
	" response_body IS NOT DISTINCT FROM $6::jsonb," \
	" response_headers IS NOT DISTINCT FROM $7::jsonb," \
	" recovery_point, first_seen IS NOT NULL AS first_seen_ok, lease_token" \
	" FROM idempotency.claim($1::text, $2::text, $3::bytea, $4::interval, $5::interval)"

extern MKey model[N_MSCOPES][N_MKEYS];
extern uint8_t model_fp[N_FPS][64];
extern int	model_fp_len[N_FPS];
extern char *mscope(int s);
extern char *mkey(int k);
extern void mkey_set_done(MKey *mk, int fp, int status, const char *body, const char *headers);
extern void mkey_set_absent(MKey *mk);
extern char *gen_response_json(bool object);
extern Res model_claim_as(Conn *c, int s, int k, int fp, const Iv *lease, const Iv *wait, const MKey *mk);
extern Res model_claim(Conn *c, int s, int k, int fp, const Iv *lease, const Iv *wait);
extern const char *claim_outcome(Res *r);
extern void check_model_claim(Res *r, MKey *mk, int fp, bool durable, bool may_resume, bool serializable_race);
extern int pick_fp(const MKey *mk);
extern const char *pick_iso(int rr_percent);
extern Res model_complete(Conn *c, int s, int k, int status, const char *body, const char *headers, const char *token);
extern Res model_release(Conn *c, int s, int k, const char *token);
extern void check_complete_result(Res *r, int status);

/* the operations, one file each, picked by ikfuzz.c */

/* op_fingerprint_equal.c */
extern void op_fingerprint_equal(void);

/* op_fingerprint_args.c */
extern void op_fingerprint_args(void);

/* op_model.c */
extern void op_model_request(void);
extern void op_model_durable(void);
extern void op_model_no_lease(void);
extern void op_concurrent(void);

/* op_args.c */
extern void op_args(void);

/* op_policy.c */
extern void op_policy_replay(void);
extern void op_chaos(void);
extern void op_stats(void);

#endif							/* IKFUZZ_H */

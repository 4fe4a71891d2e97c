/*-------------------------------------------------------------------------
 *
 * op_args.c
 *	  Operation args: random arguments, with a model of this transaction
 *	  only.
 *
 * claim(), complete(), release() and checkpoint() on random scopes and
 * keys with random arguments from gen.c: a bad argument must be rejected
 * with IK400 and a good one never is; every other error must be one the
 * contract allows for that call, in the state this transaction put the
 * key in (IK409/IK410/IK422/IK428, 40001 only under REPEATABLE READ or
 * SERIALIZABLE).
 *
 *-------------------------------------------------------------------------
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ikfuzz.h"

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

void
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

/*-------------------------------------------------------------------------
 *
 * op_model.c
 *	  The operations on the modelled keys (model.c): model_request,
 *	  model_durable, model_no_lease and concurrent.
 *
 * A request in one transaction; durable claims with their lease,
 * checkpoints and recovery points; claims without a lease; and two
 * connections racing for one key.  Each predicts every outcome from the
 * model and updates it with what committed.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ikfuzz.h"

/*
 * A request in one transaction: claim, then complete, release, forget to
 * close, or claim twice; savepoints; COMMIT or ROLLBACK.
 */
void
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

/* Durable claims of modelled keys: lease, checkpoint, complete, release. */
void
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
				if (commit && mk->rp)
					mk->ended = true;	/* kept as a 5xx keeps it, to resume */
				else if (commit)
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
void
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
void
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

/*-------------------------------------------------------------------------
 *
 * model.c
 *	  The model of a few keys, whose outcomes the fuzzer predicts exactly.
 *
 * N_MSCOPES scopes of N_MKEYS keys each, in the scopes "fz.m0".."fz.m2",
 * each absent, done (with its stored response) or held by a durable
 * claim (with its lease token).  Claims of them must come out 'new',
 * 'replay' or 'resume' exactly as the contract says for that state, with
 * the stored response on a replay; the operations in op_model.c keep the
 * model in step with what they commit.  The model lives as long as the
 * run, so --only I is exact only for operations that do not use it.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ikfuzz.h"

MKey		model[N_MSCOPES][N_MKEYS];
uint8_t		model_fp[N_FPS][64];
int			model_fp_len[N_FPS] = {32, 32, 1};

char *
mscope(int s)
{
	char		buf[32];

	snprintf(buf, sizeof(buf), "fz.m%d", s);
	return astrdup(buf, strlen(buf));
}

char *
mkey(int k)
{
	char		buf[32];

	snprintf(buf, sizeof(buf), "k\xc3\xa9%02d", k);
	return astrdup(buf, strlen(buf));
}

void
mkey_set_done(MKey *mk, int fp, int status, const char *body, const char *headers)
{
	mk->st = M_DONE;
	mk->fp = fp;
	mk->status = status;
	free(mk->body);
	free(mk->headers);
	mk->body = xstrdup(body);
	mk->headers = xstrdup(headers);
	mk->token[0] = mk->stale[0] = '\0';
	mk->ended = false;
}

void
mkey_set_absent(MKey *mk)
{
	mk->st = M_ABSENT;
	free(mk->body);
	free(mk->headers);
	free(mk->rp);
	mk->body = mk->headers = mk->rp = NULL;
	mk->token[0] = mk->stale[0] = '\0';
	mk->ended = false;
}

/* A response body, or headers (a JSON object), to store: text or NULL. */
char *
gen_response_json(bool object)
{
	J		   *j;

	if (chance(20))
		return NULL;
	jbudget = 40;
	if (object)
	{
		int			n = (int) rnd_range(0, 4);

		j = jnew(J_OBJ);
		j->v = amalloc(sizeof(J *) * (n + 1));
		j->key = amalloc(sizeof(J *) * (n + 1));
		for (int i = 0; i < n; i++)
			obj_add(j, gen_str_node(8), gen_json(2));
	}
	else
		j = gen_body();
	return json_text(j, chance(50) ? &plain_style : &(Style) {true, true, true, true, true});
}

/* Claim a modelled key on connection c; returns the result. */
Res
model_claim_as(Conn *c, int s, int k, int fp, const Iv *lease, const Iv *wait,
			   const MKey *mk)
{
	Arg			a[7];

	a[0] = T(mscope(s));
	a[1] = T(mkey(k));
	a[2] = BIN(model_fp[fp], model_fp_len[fp]);
	a[3] = ivarg(lease);
	a[4] = ivarg(wait);
	a[5] = T(mk->st == M_DONE ? mk->body : NULL);
	a[6] = T(mk->st == M_DONE ? mk->headers : NULL);
	return run(c, CLAIM_SQL, 7, a);
}

/* ... expecting what the model says of the key */
Res
model_claim(Conn *c, int s, int k, int fp, const Iv *lease, const Iv *wait)
{
	return model_claim_as(c, s, k, fp, lease, wait, &model[s][k]);
}

/* Every successful claim: one row, a known outcome, never NULL. */
const char *
claim_outcome(Res *r)
{
	const char *o;

	check(PQntuples(r->r) == 1, r, "claim() returned %d rows", PQntuples(r->r));
	o = val(r, 0, 0);
	check(o != NULL, r, "claim() returned a NULL outcome");
	check(strcmp(o, "new") == 0 || strcmp(o, "replay") == 0 || strcmp(o, "resume") == 0,
		  r, "claim() returned outcome '%s'", o);
	{
		int			fs = PQfnumber(r->r, "first_seen_ok");

		if (fs >= 0)
			check(strcmp(val(r, 0, fs), "t") == 0, r, "claim() returned a NULL first_seen");
	}
	return o;
}

/* Check a claim of a modelled key against the model; true if it is 'new'. */
void
check_model_claim(Res *r, MKey *mk, int fp, bool durable, bool may_resume,
				  bool serializable_race)
{
	const char *o;

	if (serializable_race && !r->ok && strcmp(r->st, "40001") == 0)
		return;
	switch (mk->st)
	{
		case M_ABSENT:
			EXPECT(r, "claim of a key that has no row", "ok");
			o = claim_outcome(r);
			check(strcmp(o, "new") == 0, r, "claim of an absent key is not 'new'");
			check(durable == (val(r, 0, 6) != NULL), r,
				  "a new claim %s a lease token", durable ? "without" : "with");
			check(val(r, 0, 1) == NULL && val(r, 0, 4) == NULL, r,
				  "a new claim returned a response status or recovery point");
			break;
		case M_DONE:
			if (fp != mk->fp)
			{
				EXPECT(r, "claim of a completed key with another fingerprint", "IK422");
				break;
			}
			EXPECT(r, "claim of a completed key with its fingerprint", "ok");
			o = claim_outcome(r);
			check(strcmp(o, "replay") == 0, r, "claim of a completed key is not 'replay'");
			check(val(r, 0, 1) && atoi(val(r, 0, 1)) == mk->status, r,
				  "replay returned another status than %d", mk->status);
			check(strcmp(val(r, 0, 2), "t") == 0, r, "replay returned another body than %.200s",
				  mk->body ? mk->body : "NULL");
			check(strcmp(val(r, 0, 3), "t") == 0, r, "replay returned other headers than %.200s",
				  mk->headers ? mk->headers : "NULL");
			check(val(r, 0, 6) == NULL, r, "replay returned a lease token");
			check((mk->rp == NULL) == (val(r, 0, 4) == NULL) &&
				  (mk->rp == NULL || strcmp(mk->rp, val(r, 0, 4)) == 0), r,
				  "replay returned recovery point %s, the last checkpoint was %s",
				  val(r, 0, 4) ? val(r, 0, 4) : "NULL", mk->rp ? mk->rp : "NULL");
			break;
		case M_DURABLE:
			if (fp != mk->fp)
			{
				EXPECT(r, "claim of a durable claim with another fingerprint", "IK422");
				break;
			}
			if (mk->ended)
			{
				EXPECT(r, "claim of a durable claim whose lease a 5xx ended", "ok");
				o = claim_outcome(r);
				check(strcmp(o, "resume") == 0, r,
					  "a durable claim whose lease a 5xx ended is not 'resume'd");
				check(val(r, 0, 6) && strcmp(val(r, 0, 6), mk->token) != 0, r,
					  "a resume did not hand out a new lease token");
				check(mk->rp && val(r, 0, 4) && strcmp(mk->rp, val(r, 0, 4)) == 0, r,
					  "resume returned recovery point %s, the last checkpoint was %s",
					  val(r, 0, 4) ? val(r, 0, 4) : "NULL", mk->rp ? mk->rp : "NULL");
				break;
			}
			if (mk->long_lease || !may_resume)
			{
				EXPECT(r, "claim of a durable claim whose lease is live", "IK409");
				break;
			}
			EXPECT(r, "claim of a durable claim whose short lease may have lapsed", "IK409", "ok");
			if (r->ok)
			{
				o = claim_outcome(r);
				check(strcmp(o, "resume") == 0, r, "a lapsed durable claim is not 'resume'd");
				check(val(r, 0, 6) && strcmp(val(r, 0, 6), mk->token) != 0, r,
					  "a resume did not hand out a new lease token");
				check((mk->rp == NULL) == (val(r, 0, 4) == NULL) &&
					  (mk->rp == NULL || strcmp(mk->rp, val(r, 0, 4)) == 0), r,
					  "resume returned recovery point %s, the last checkpoint was %s",
					  val(r, 0, 4) ? val(r, 0, 4) : "NULL", mk->rp ? mk->rp : "NULL");
			}
			break;
	}
}

int
pick_fp(const MKey *mk)
{
	if (mk->st != M_ABSENT && chance(70))
		return mk->fp;
	return (int) rnd(N_FPS);
}

const char *
pick_iso(int rr_percent)
{
	if (!chance(rr_percent))
		return "READ COMMITTED";
	return chance(50) ? "REPEATABLE READ" : "SERIALIZABLE";
}

static const char *
complete_result_for(int status)
{
	return status >= 500 ? "released" : "stored";
}

/* complete() of a modelled key, in this transaction's claim or by token */
Res
model_complete(Conn *c, int s, int k, int status, const char *body, const char *headers,
			   const char *token)
{
	Arg			a[6];

	a[0] = T(mscope(s));
	a[1] = T(mkey(k));
	a[2] = T(itoa_a(status));
	a[3] = T(body);
	a[4] = T(headers);
	a[5] = T(token);
	return run(c, "SELECT idempotency.complete($1::text, $2::text, $3::int, $4::jsonb, $5::jsonb, $6::uuid)",
			   6, a);
}

Res
model_release(Conn *c, int s, int k, const char *token)
{
	Arg			a[3];

	a[0] = T(mscope(s));
	a[1] = T(mkey(k));
	a[2] = T(token);
	return run(c, "SELECT idempotency.release($1::text, $2::text, $3::uuid)", 3, a);
}

void
check_complete_result(Res *r, int status)
{
	EXPECT(r, "complete() of an open claim", "ok");
	check(val(r, 0, 0) && strcmp(val(r, 0, 0), complete_result_for(status)) == 0, r,
		  "complete(%d) did not return '%s'", status, complete_result_for(status));
}

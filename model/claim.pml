/*
 * claim.pml: the claim protocol of one key, as src/ decides it.
 *
 * NPROC clients on one (scope, key), the background reaper, a clock of
 * MAXT ticks, a policy change between calls and one crash at any step.
 * Each step prints the C function and branch it stands for; `spin -t -T`
 * replays a trail as that interleaving.  model/README.md has the table
 * of steps and the bounds.
 *
 *   -DOLD_DECIDE  decide() of 05d5658: a waiter that locked a lapsed lease
 *                 and found it renewed polls keeping the row lock
 *   -DOLD_GUARD   commit guard and release() of 05d5658: a 5xx or a release
 *                 in the charge's transaction commits, release() deletes a
 *                 recovery point
 *   -DCHECKS=n    the properties checked (bits below), all by default
 */

#ifndef NPROC
#define NPROC 2
#endif
#ifndef CHECKS
#define CHECKS 511
#endif
#ifndef MAXCRASH
#define MAXCRASH 1
#endif

/* the properties */
#define C_DOUBLE	1	/* no second 'new'/'resume' while the first can commit */
#define C_KEYED		2	/* a committed charge keeps its key's row */
#define C_FENCE		4	/* a holder inside its lease is never fenced */
#define C_RESUMERP	8	/* a resume returns the last committed point */
#define C_5XX		16	/* a 5xx (or release) never erases a point */
#define C_REPLAYFP	32	/* a replay is the stored reply of the same request */
#define C_LIVEREAP	64	/* nothing live is reaped or replaced */
#define C_REPLAYLOCK 128	/* a replay takes no lock */
#define C_POLLLOCK	256	/* no row lock on a version whose lease is live */
#define check(c, e)	assert(!((CHECKS) & (c)) || (e))

#define NONE	255
#define REAPER	NPROC
#ifndef MAXT
#define MAXT	3		/* the clock: 4 ticks, 0..MAXT */
#endif
#define LEASE	2		/* lease => 2 ticks */
#define TTL		1		/* policy ttl: the replay window */
#define RET		2		/* policy retain */

/* a row's state */
#define ABSENT	0
#define INPROG	1
#define DONE	2
/* claim.c RowVerdict */
#define V_GONE		0
#define V_REPLAY	1
#define V_HELD		2
#define V_LAPSED	3
#define V_MISMATCH	4
#define V_EXPIRED	5
/* policy mode */
#define ENFORCE	0
#define SHADOW	1
#define OFF		2
/* token operations */
#define OP_CKPT	1
#define OP_2XX	2
#define OP_5XX	3
#define OP_REL	4
/* phases of a client */
#define PH_CLAIM 0
#define PH_T2	1
#define PH_T3	2
#define PH_END	3

#define max(a, b) ((a) > (b) -> (a) : (b))
#define min(a, b) ((a) < (b) -> (a) : (b))

byte now = 0;
byte mode = ENFORCE;
byte klock = NONE;		/* keylock.c: the per-key lock's holder */
byte rlock = NONE;		/* the row lock's holder (FOR UPDATE, UPDATE, DELETE) */
byte rwait = NONE;		/* the first waiter for it: heapam's tuple lock queues */

/* the committed version of the key's row (idempotency.keys) */
byte R_st, R_fp, R_tok, R_lease, R_rp, R_resp, R_exp, R_ret, R_ver, R_gen;
/* the row lock holder's uncommitted version: kind 1 write, 2 delete */
byte P_kind, P_st, P_fp, P_tok, P_lease, P_rp, P_resp, P_exp, P_ret, P_gen;

byte gens = 0;			/* ghost: logical requests ('new') so far */
byte keyed = 0;			/* ghost: request whose charge committed */
byte kcharger = NONE;	/* ghost: who committed it */
byte retired = 0;		/* ghost: requests whose row ended past retention */
bool holdtx[NPROC];		/* ghost: an enforce new/resume's transaction open */
byte htok[NPROC];		/* ghost: the recorded token a client holds */
bool crash[NPROC + 1];	/* the crasher's choice */
byte ncrash = MAXCRASH;
byte tokens = 0;


/* ik_store_lookup(), a fresh snapshot: the committed version */
#define LOAD_ROW \
	row_st = R_st; row_fp = R_fp; row_tok = R_tok; row_lease = R_lease; \
	row_rp = R_rp; row_resp = R_resp; row_exp = R_exp; row_ret = R_ret; \
	row_ver = R_ver
#define SEEN_TO_ROW \
	row_st = seen_st; row_fp = seen_fp; row_tok = seen_tok; \
	row_lease = seen_lease; row_rp = seen_rp; row_resp = seen_resp; \
	row_exp = seen_exp; row_ret = seen_ret; row_ver = seen_ver
#define ROW_TO_SEEN \
	seen_st = row_st; seen_fp = row_fp; seen_tok = row_tok; \
	seen_lease = row_lease; seen_rp = row_rp; seen_resp = row_resp; \
	seen_exp = row_exp; seen_ret = row_ret; seen_ver = row_ver
#define CLEAR_ROWS \
	row_st = 0; row_fp = 0; row_tok = 0; row_lease = 0; row_rp = 0; \
	row_resp = 0; row_exp = 0; row_ret = 0; row_ver = 0; \
	seen_st = 0; seen_fp = 0; seen_tok = 0; seen_lease = 0; seen_rp = 0; \
	seen_resp = 0; seen_exp = 0; seen_ret = 0; seen_ver = 0; snapped = 0; \
	w_st = 0; w_lease = 0; w_resp = 0; w_ret = 0
#define CLEAR_P \
	P_kind = 0; P_st = 0; P_fp = 0; P_tok = 0; P_lease = 0; P_rp = 0; \
	P_resp = 0; P_exp = 0; P_ret = 0; P_gen = 0
/* the uncommitted version starts as the locked one (ik_row_to_write) */
#define P_FROM_R \
	P_kind = 1; P_st = R_st; P_fp = R_fp; P_tok = R_tok; P_lease = R_lease; \
	P_rp = R_rp; P_resp = R_resp; P_exp = R_exp; P_ret = R_ret; P_gen = R_gen

/* claim.c classify_row(): row_* against this request */
#define LIVE	(row_st == INPROG && now < row_lease)
inline classify()
{
	if
	:: row_st == ABSENT || (tstart >= row_ret && !LIVE) -> v = V_GONE
	:: else ->
		if
		:: row_fp != myfp -> v = V_MISMATCH
		:: else ->
			if
			:: row_st == INPROG && LIVE -> v = V_HELD
			:: row_st == INPROG && !LIVE -> v = V_LAPSED
			:: row_st == DONE && tstart >= row_exp -> v = V_EXPIRED
			:: row_st == DONE && tstart < row_exp -> v = V_REPLAY
			fi
		fi
	fi
}

/* claim.c judge_row(): the errors an enforced claim raises for v */
inline judge()
{
	if
	:: v == V_MISMATCH -> printf("t=%d P%d claim.c judge_row: ROW_MISMATCH -> IK422\n", now, me); err = 22; goto fail
	:: v == V_EXPIRED -> printf("t=%d P%d claim.c judge_row: ROW_EXPIRED -> IK410\n", now, me); err = 10; goto fail
	:: else
	fi
}

/* keylock.c ik_lock_key(wait): the key lock, or IK409 from decide() */
inline lock_key()
{
	if
	:: atomic { klock == NONE || klock == me -> klock = me }
	:: wt && klock != NONE && klock != me ->
		printf("t=%d P%d claim.c decide: ik_lock_key times out -> raise_in_progress IK409\n", now, me);
		err = 9; goto fail
	:: !wt && klock != NONE && klock != me ->
		printf("t=%d P%d claim.c decide: ik_lock_key(0) busy -> raise_in_progress IK409\n", now, me);
		err = 9; goto fail
	fi
}

/*
 * store.c ik_store_lock(row, ms_left(deadline)): wait for the row lock,
 * then (READ COMMITTED) follow the row to its latest version and judge
 * it, in one step: the judgement uses the time at which the lock was
 * granted.  gone: deleted meanwhile (IK_ROW_GONE).
 */
inline lock_row_claim()
{
	if
	:: atomic { rlock == me || (rlock == NONE && (rwait == NONE || rwait == me)) ->
		if
		:: rwait == me -> rwait = NONE
		:: else
		fi;
		if
		:: R_st == ABSENT -> gone = 1
		:: R_st != ABSENT && rr && R_ver != row_ver -> gone = 2
		:: else -> gone = 0; rlock = me; LOAD_ROW; classify()
		fi;
		printf("t=%d P%d store.c ik_store_lock: locked, latest version judged\n", now, me);
		if
		:: gone == 2 ->
			printf("t=%d P%d store.c ik_store_lock: REPEATABLE READ, row changed -> raise_concurrent_update 40001\n", now, me);
			err = 40; goto fail
		:: gone == 1 && rr ->
			printf("t=%d P%d store.c ik_store_lock: REPEATABLE READ, row deleted -> 40001\n", now, me);
			err = 40; goto fail
		:: else
		fi }
	:: wt && rlock != NONE && rlock != me ->
		printf("t=%d P%d store.c ik_store_lock: wait times out -> IK_ROW_BUSY -> IK409\n", now, me);
		err = 9; goto fail
	:: !wt && rlock != NONE && rlock != me ->
		printf("t=%d P%d store.c ik_store_lock(0): IK_ROW_BUSY -> IK409\n", now, me);
		err = 9; goto fail
	fi
}

/*
 * The windows of the row a claim writes: start_durable_claim() and
 * store_response() compute them before write_claimed_row().
 */
#define LEASE_NOW \
	if \
	:: w_st == INPROG -> w_lease = now + LEASE; \
		w_ret = max(tstart + RET, now + LEASE + TTL) \
	:: else -> w_lease = 0; w_ret = tstart + RET \
	fi

/*
 * claim.c write_claimed_row(): with replace, lock a row past retention
 * (waiting as lock_timeout allows) and replace it if it still is past
 * retention; else insert.
 */
inline write_claimed_row()
{
	gone = 1;
	if
	:: replace ->
		atomic { LEASE_NOW;
			printf("t=%d P%d claim.c write_claimed_row: replace: ik_store_lookup, ik_store_lock(-1)\n", now, me) };
		atomic { rlock == NONE || rlock == me ->
			if
			:: R_st == ABSENT -> gone = 1
			:: else -> gone = 0; rlock = me; LOAD_ROW
			fi }
	:: else
	fi;
	if
	:: !gone && !(tstart >= row_ret && (row_st == DONE || now >= row_lease)) ->
		printf("t=%d P%d claim.c write_claimed_row: renewed after retention -> IK409\n", now, me);
		err = 9; goto fail
	:: else
	fi;
	atomic {
		if
		:: !replace -> LEASE_NOW
		:: else
		fi;
		check(C_LIVEREAP, gone || row_st == DONE || now >= row_lease);
		if
		:: !gone -> retired = retired | (1 << R_gen)
		:: else
		fi;
		rlock = me; P_kind = 1; P_st = w_st; P_fp = myfp; P_tok = tok;
		P_lease = w_lease; P_rp = 0; P_resp = w_resp; P_exp = tstart + TTL;
		P_ret = w_ret; P_gen = mygen;
		if
		:: gone -> printf("t=%d P%d claim.c write_claimed_row: ik_store_insert\n", now, me)
		:: else -> printf("t=%d P%d claim.c write_claimed_row: ik_store_update of a row past retention\n", now, me)
		fi
	}
}

/* claim.c sleep_before_next_look(): sleep, or the wait is over */
inline nap()
{
	if
	:: wt -> printf("t=%d P%d claim.c sleep_before_next_look: sleeps\n", now, me)
	:: wt -> printf("t=%d P%d claim.c sleep_before_next_look: deadline -> raise_in_progress IK409\n", now, me);
		err = 9; goto fail
	:: !wt -> printf("t=%d P%d claim.c sleep_before_next_look: no wait -> raise_in_progress IK409\n", now, me);
		err = 9; goto fail
	fi
}

/* a transaction's end: the row version and the locks */
inline commit()
{
	atomic {
		if
		:: rlock == me && P_kind == 1 ->
			R_st = P_st; R_fp = P_fp; R_tok = P_tok; R_lease = P_lease;
			R_rp = P_rp; R_resp = P_resp; R_exp = P_exp; R_ret = P_ret;
			R_gen = P_gen; R_ver++
		:: rlock == me && P_kind == 2 ->
			check(C_KEYED, keyed == 0 || keyed != R_gen);
			R_st = ABSENT; R_fp = 0; R_tok = 0; R_lease = 0; R_rp = 0;
			R_resp = 0; R_exp = 0; R_ret = 0; R_gen = 0; R_ver++
		:: else
		fi;
		if
		:: pch && cmode == ENFORCE ->
			check(C_KEYED, (R_st != ABSENT && R_gen == mygen) ||
			      (retired & (1 << mygen)));
			check(C_DOUBLE, keyed == 0 || keyed != mygen || kcharger == me);
			if
			:: R_st != ABSENT && R_gen == mygen -> keyed = mygen; kcharger = me
			:: else
			fi
		:: else
		fi;
		if
		:: rlock == me -> rlock = NONE; CLEAR_P
		:: else
		fi;
		if
		:: klock == me -> klock = NONE
		:: else
		fi;
		if
		:: tok != 0 && R_st == INPROG && R_tok == tok -> mylease = R_lease
		:: else
		fi;
		holdtx[me] = 0; pch = 0; freed = 0; openc = 0;
		printf("t=%d P%d COMMIT; row: state %d token %d lease %d point %d reply %d expires %d retain %d\n",
		       now, me, R_st, R_tok, R_lease, R_rp, R_resp, R_exp, R_ret)
	}
}

inline abort()
{
	atomic {
		if
		:: rlock == me -> rlock = NONE; CLEAR_P
		:: else
		fi;
		if
		:: klock == me -> klock = NONE
		:: else
		fi;
		holdtx[me] = 0; pch = 0; freed = 0; openc = 0;
		if
		:: rwait == me -> rwait = NONE
		:: else
		fi;
		CLEAR_ROWS
	}
}

proctype client(byte me)
{
	byte w_st, w_lease, w_resp, w_ret;
	byte inlease, myfp = 1, tstart, tok, mylease, mygen, v, err, cmode, op, phase, gone, i;
	bool waited, known, dur, wt, rr, pch, freed, openc, replace, unrec, holds, snapped;
	byte row_st, row_fp, row_tok, row_lease, row_rp, row_resp, row_exp, row_ret, row_ver;
	byte seen_st, seen_fp, seen_tok, seen_lease, seen_rp, seen_resp, seen_exp, seen_ret, seen_ver;

	/* the request: durable or not, wait or not, isolation, fingerprint */
	atomic {
#ifdef FIXED_ROLES
		/* P0 and P1 durable claims that wait, P2 a plain claim that waits */
		dur = (me < 2); wt = 1;
#else
		if :: dur = 1 :: dur = 0 fi;
		if :: wt = 1 :: wt = 0 fi;
#endif
#ifndef NO_RR
		if :: rr = 1 :: rr = 0 fi;
#endif
		if
		:: me == NPROC - 1 && NPROC > 1 -> myfp = 2
		:: skip
		fi;
		printf("P%d: durable %d, wait %d, repeatable read %d, fingerprint %d\n",
		       me, dur, wt, rr, myfp) };

	{
	atomic {
		tstart = now; cmode = mode;	/* claim.c claim(): ik_policy_for() */
		printf("t=%d P%d BEGIN; claim()\n", now, me);
		if
		:: cmode == OFF ->
			printf("t=%d P%d claim.c claim: IK_MODE_OFF -> 'new', nothing recorded\n", now, me);
			unrec = dur; openc = !dur; goto claimed
		:: cmode == SHADOW ->
			/* claim.c shadow_claim() */
			LOAD_ROW; classify();
			if
			:: v == V_GONE && (klock == NONE || klock == me) ->
				replace = (row_st != ABSENT); klock = me; holds = 1
			:: else
			fi;
			printf("t=%d P%d claim.c shadow_claim: IK_MODE_SHADOW -> 'new', nothing recorded\n", now, me);
			unrec = dur; openc = !dur; goto claimed
		:: cmode == ENFORCE
		fi };

	/* ------------------------------------------------------------ decide() */
#ifdef OLD_DECIDE
d_top:
	if
	:: atomic { !rr && (klock == NONE || klock == me) -> klock = me; LOAD_ROW; classify();
		printf("t=%d P%d claim.c decide: READ COMMITTED, key free: ik_lock_key(0), ik_store_lookup\n", now, me);
		judge();
		if
		:: v == V_REPLAY -> klock = NONE;
			printf("t=%d P%d claim.c decide: ROW_REPLAY -> ik_unlock_key\n", now, me)
		:: else
		fi }
	:: else ->
		atomic {
			if
			:: !snapped -> LOAD_ROW; ROW_TO_SEEN; snapped = rr
			:: else -> SEEN_TO_ROW
			fi;
			classify();
			printf("t=%d P%d claim.c decide: key taken or REPEATABLE READ: ik_store_lookup -> seen\n", now, me);
			judge() };
		if
		:: v != V_REPLAY && v != V_HELD ->
			lock_key();
			atomic { LOAD_ROW; classify();
				printf("t=%d P%d claim.c decide: holds the key lock: ik_store_lookup(latest)\n", now, me);
				if
				:: rr && row_st != ABSENT && (seen_st == ABSENT || row_ver != seen_ver) ->
					printf("t=%d P%d claim.c decide: REPEATABLE READ, row not the snapshot's -> raise_serialization_failure 40001\n", now, me);
					err = 40; goto fail
				:: else
				fi;
				judge() }
		:: else
		fi
	fi;
	if
	:: v == V_LAPSED ->
		lock_row_claim();
		atomic {
			if
			:: gone -> printf("t=%d P%d claim.c decide: IK_ROW_GONE -> look again\n", now, me); goto d_top
			:: else
			fi;
			judge();
			if
			:: v == V_LAPSED -> goto d_resume
			:: else -> printf("t=%d P%d claim.c decide: IK_ROW_LOCKED, judge_row: not lapsed any more\n", now, me)
			fi }
	:: else
	fi;
	atomic {
		if
		:: v == V_GONE -> goto d_new
		:: v == V_REPLAY -> goto d_replay
		:: else
		fi;
		printf("t=%d P%d claim.c decide: ROW_HELD -> poll, keeping the locks it holds\n", now, me) };
d_poll:
	check(C_POLLLOCK, rlock != me || !(R_st == INPROG && now < R_lease));
	nap();
	if
	:: !rr -> goto d_top
	:: else
	fi;
	atomic { LOAD_ROW; classify();
		printf("t=%d P%d claim.c decide: REPEATABLE READ poll: ik_store_lookup(latest)\n", now, me);
		if
		:: row_st == ABSENT || row_ver != seen_ver ->
			printf("t=%d P%d claim.c decide: REPEATABLE READ poll: row changed -> 40001\n", now, me);
			err = 40; goto fail
		:: else
		fi;
		judge();
		if
		:: v == V_HELD -> goto d_poll
		:: else -> goto d_top
		fi };
#else
	/*
	 * decide() as split by the fix of issue 22.1: a judge of an unlocked
	 * read, a key-lock wait, a takeover of a lapsed lease in a
	 * subtransaction that is rolled back (its row lock with it) unless it
	 * takes over, and a poll that holds no row lock.
	 */
d_top:
	atomic {
		if
		:: !snapped -> LOAD_ROW; ROW_TO_SEEN; snapped = rr
		:: else -> SEEN_TO_ROW
		fi;
		classify();
		printf("t=%d P%d claim.c decide: judge: ik_store_lookup, no lock\n", now, me);
		judge();
		if
		:: v == V_REPLAY -> goto d_replay
		:: v == V_HELD -> goto d_poll
		:: else
		fi };
	lock_key();
	atomic { LOAD_ROW; classify();
		printf("t=%d P%d claim.c decide: key-lock wait done: ik_store_lookup(latest)\n", now, me);
		if
		:: rr && row_st != ABSENT && (seen_st == ABSENT || row_ver != seen_ver) ->
			printf("t=%d P%d claim.c decide: REPEATABLE READ, row not the snapshot's -> raise_serialization_failure 40001\n", now, me);
			err = 40; goto fail
		:: else
		fi;
		judge();
		if
		:: v == V_REPLAY -> goto d_replay
		:: v == V_HELD -> goto d_poll
		:: v == V_GONE -> goto d_new
		:: v == V_LAPSED ->
			printf("t=%d P%d claim.c decide: ROW_LAPSED: takeover in a subtransaction: ik_store_lock\n", now, me)
		fi };
	lock_row_claim();
	atomic {
		if
		:: gone -> printf("t=%d P%d claim.c decide: takeover: IK_ROW_GONE -> roll back the subtransaction, look again\n", now, me);
			goto d_top
		:: else
		fi;
		judge();
		if
		:: v == V_LAPSED -> goto d_resume
		:: else -> rlock = NONE;
			printf("t=%d P%d claim.c decide: takeover: locked version not lapsed -> roll back the subtransaction (row lock released)\n", now, me);
			if
			:: v == V_REPLAY -> goto d_replay
			:: v == V_HELD -> goto d_poll
			:: else -> goto d_top
			fi
		fi };
d_poll:
	atomic {
		printf("t=%d P%d claim.c decide: poll: ROW_HELD, no row lock\n", now, me);
		check(C_POLLLOCK, rlock != me) };
	nap();
	if
	:: !rr -> goto d_top
	:: else
	fi;
	atomic { LOAD_ROW; classify();
		printf("t=%d P%d claim.c decide: REPEATABLE READ poll: ik_store_lookup(latest)\n", now, me);
		if
		:: row_st == ABSENT || row_ver != seen_ver ->
			printf("t=%d P%d claim.c decide: REPEATABLE READ poll: row changed -> 40001\n", now, me);
			err = 40; goto fail
		:: else
		fi;
		judge();
		if
		:: v == V_HELD -> goto d_poll
		:: else -> goto d_top
		fi };
#endif

	/* ----------------------------------------------- claim()'s outcomes */
d_replay:
	atomic {
#ifndef OLD_DECIDE
		if
		:: klock == me -> klock = NONE
		:: else
		fi;
#endif
		printf("t=%d P%d claim.c claim: CLAIM_REPLAY -> 'replay'\n", now, me);
		check(C_REPLAYLOCK, rlock != me && klock != me);
		check(C_REPLAYFP, row_st == DONE && row_resp / 4 == myfp);
		phase = PH_END;
		goto tx_commit };

d_resume:
	atomic {
		/* lease.c ik_lease_take_over() under the row lock */
		check(C_RESUMERP, rlock == me && row_rp == R_rp && row_ver == R_ver);
		check(C_DOUBLE, !(R_st == INPROG && now < R_lease));
		i = 0;
		do
		:: i < NPROC -> check(C_DOUBLE, i == me || !holdtx[i]); i++
		:: else -> i = 0; break
		od;
		tokens++; tok = tokens; htok[me] = tok; holdtx[me] = 1;
		mygen = R_gen; dur = 1; known = (R_rp != 0);
		P_FROM_R; P_tok = tok; P_lease = now + LEASE;
		P_ret = max(R_ret, P_lease + TTL);
		printf("t=%d P%d claim.c claim: CLAIM_RESUME -> lease.c ik_lease_take_over -> 'resume'\n", now, me);
		goto claimed };

d_new:
	atomic {
		i = 0;
		do
		:: i < NPROC -> check(C_DOUBLE, i == me || !holdtx[i]); i++
		:: else -> i = 0; break
		od;
		gens++; mygen = gens; holdtx[me] = 1;
		replace = (row_st != ABSENT);
		if
		:: !dur -> openc = 1;
			printf("t=%d P%d claim.c claim: CLAIM_NEW -> ik_claim_open -> 'new'\n", now, me);
			goto claimed
		:: else -> tokens++; tok = tokens; htok[me] = tok; w_st = INPROG; w_resp = 0
		fi };
	/* claim.c start_durable_claim() */
	write_claimed_row();
	atomic {
		check(C_DOUBLE, R_st == ABSENT ||
		      (tstart >= R_ret && !(R_st == INPROG && now < R_lease)));
		printf("t=%d P%d claim.c claim: CLAIM_NEW, durable -> start_durable_claim -> 'new'\n", now, me) };

claimed:
	atomic {
		CLEAR_ROWS;
		if
		:: dur ->
			/* the claim's transaction commits before the processor call */
			phase = PH_T2; goto tx_commit
		:: else
		fi;
		/* a plain claim: the charge and complete() in the same transaction */
		if
		:: pch = 1; printf("t=%d P%d INSERT INTO charges\n", now, me)
		:: skip
		fi;
		phase = PH_END;
		if
		:: cmode == OFF -> openc = 0;
			printf("t=%d P%d claim.c complete: IK_MODE_OFF -> 'skipped'\n", now, me);
			goto tx_commit
		:: cmode != OFF && (cmode == ENFORCE || holds) ->
			printf("t=%d P%d claim.c complete(2xx): store_response\n", now, me);
			openc = 0; w_st = DONE; w_resp = myfp * 4 + 1
		:: cmode == SHADOW && !holds ->
			printf("t=%d P%d claim.c complete(2xx): shadow, no lock -> nothing written\n", now, me);
			openc = 0; goto tx_commit
		:: cmode != OFF ->
			printf("t=%d P%d claim.c complete(5xx): store_response -> 'released', nothing written\n", now, me);
			openc = 0; freed = (cmode == ENFORCE); goto tx_commit
		:: cmode != OFF ->
			printf("t=%d P%d claim.c release(): ik_claim_close\n", now, me);
			openc = 0; freed = (cmode == ENFORCE); goto tx_commit
		:: printf("t=%d P%d neither complete() nor release()\n", now, me);
			goto tx_commit
		fi };
	write_claimed_row();
	goto tx_commit;

	/* ------------------------------------------- a token's transactions */
token_tx:
	atomic {
		op = 0; printf("t=%d P%d BEGIN\n", now, me);
		if
		:: !known -> pch = 1; printf("t=%d P%d INSERT INTO charges\n", now, me)
		:: skip
		fi;
		if
		:: phase == PH_T2 -> op = OP_CKPT; printf("t=%d P%d lease.c checkpoint()\n", now, me)
		:: phase == PH_T3 -> op = OP_2XX; printf("t=%d P%d claim.c complete(2xx, token) -> lease.c ik_lease_complete\n", now, me)
		:: phase == PH_T3 -> op = OP_5XX; printf("t=%d P%d claim.c complete(5xx, token) -> lease.c ik_lease_complete\n", now, me)
		:: phase == PH_T3 -> op = OP_REL; printf("t=%d P%d claim.c release(token) -> lease.c ik_lease_release\n", now, me)
		fi };
ll_top:
	/*
	 * lease.c lock_lease().  inlease: the call was inside the lease the
	 * holder last committed when it last made progress by itself (a
	 * wait for another's row lock does not count).
	 */
	atomic {
		inlease = (now < mylease);
		LOAD_ROW; printf("t=%d P%d lease.c lock_lease: ik_store_lookup\n", now, me);
		if
		:: !(row_st == INPROG && row_tok == tok) ->
			if
			:: (row_st == ABSENT || row_st == DONE) && (unrec || mode != ENFORCE) ->
				printf("t=%d P%d lease.c lock_lease: unrecorded token or not enforced -> nothing to do\n", now, me);
				phase = (op == OP_CKPT -> PH_T3 : PH_END);
				goto tx_commit
			:: else -> goto lease_lost
			fi
		:: else
		fi;
		if
		:: rlock == NONE || rlock == me -> waited = 0
		:: else -> waited = 1;
			if
			:: rwait == NONE -> rwait = me
			:: else
			fi;
			printf("t=%d P%d lease.c lock_lease: ik_store_lock(-1) waits for the row lock\n", now, me)
		fi };
	atomic { rlock == me || (rlock == NONE && (rwait == NONE || rwait == me)) ->
		if
		:: rwait == me -> rwait = NONE
		:: else
		fi;
		if
		:: R_st == ABSENT -> goto ll_top	/* IK_ROW_GONE: look again */
		:: else -> rlock = me; LOAD_ROW
		fi;
		if
		:: !waited -> inlease = (now < mylease)
		:: else
		fi;
		waited = 0;
		printf("t=%d P%d lease.c lock_lease: ik_store_lock(-1) locked\n", now, me);
		if
		:: !(row_st == INPROG && row_tok == tok) -> goto lease_lost
		:: else
		fi;
		P_FROM_R;
		if
		:: op == OP_CKPT ->
			P_rp = me + 1 + 4 * tok; P_lease = now + LEASE;
			P_ret = max(R_ret, P_lease + TTL);
			printf("t=%d P%d lease.c checkpoint: records the recovery point, renews the lease\n", now, me)
		:: op == OP_2XX ->
			P_st = DONE; P_resp = myfp * 4 + 1;
			printf("t=%d P%d lease.c ik_lease_complete: stored\n", now, me)
		:: op == OP_5XX && R_rp == 0 ->
			P_kind = 2; freed = 1;
			printf("t=%d P%d lease.c ik_lease_complete(5xx): no recovery point -> ik_store_delete\n", now, me)
		:: op == OP_5XX && R_rp != 0 ->
			P_lease = min(R_lease, now); P_ret = max(R_ret, now + TTL);
			printf("t=%d P%d lease.c ik_lease_complete(5xx): recovery point -> lease ended, row kept\n", now, me)
#ifdef OLD_GUARD
		:: op == OP_REL ->
			P_kind = 2; freed = 1;
			printf("t=%d P%d lease.c ik_lease_release: ik_store_delete\n", now, me)
#else
		:: op == OP_REL && R_rp == 0 ->
			P_kind = 2; freed = 1;
			printf("t=%d P%d lease.c ik_lease_release: no recovery point -> ik_store_delete\n", now, me)
		:: op == OP_REL && R_rp != 0 ->
			P_lease = min(R_lease, now); P_ret = max(R_ret, now + TTL);
			printf("t=%d P%d lease.c ik_lease_release: recovery point -> kept as a 5xx keeps it\n", now, me)
#endif
		fi;
		check(C_5XX, !(op == OP_5XX || op == OP_REL) || R_rp == 0 ||
		      (P_kind == 1 && P_rp == R_rp));
		if
		:: op == OP_CKPT -> phase = PH_T3
		:: else -> phase = PH_END
		fi;
		goto tx_commit };
lease_lost:
	atomic {
		if
		:: row_st == INPROG ->
			printf("t=%d P%d lease.c raise_lease_lost: another token -> IK409 (fenced)\n", now, me);
			check(C_FENCE, !inlease); err = 9
		:: else ->
			printf("t=%d P%d lease.c raise_lease_lost: no claim in progress -> IK428\n", now, me); err = 28
		fi;
		goto fail };

	/* ------------------------------------------------------ COMMIT */
tx_commit:
	atomic {
		/* xactstate.c check_no_open_claim() at XACT_EVENT_PRE_COMMIT */
		if
		:: openc && cmode == ENFORCE ->
			printf("t=%d P%d xactstate.c check_no_open_claim: claim still open -> IK428\n", now, me);
			err = 28; goto fail
		:: else
		fi;
#ifndef OLD_GUARD
		if
		:: pch && freed && cmode == ENFORCE ->
			printf("t=%d P%d commit guard (22.5): data written, then the key freed -> IK428\n", now, me);
			err = 28; goto fail
		:: else
		fi;
#endif
		commit();
		CLEAR_ROWS; op = 0; inlease = 0;
		if
		:: phase == PH_T2 -> goto token_tx	/* checkpoint(), then the end */
		:: phase == PH_T2 -> phase = PH_T3; goto token_tx	/* the end at once */
		:: phase == PH_T3 -> goto token_tx
		:: phase == PH_END -> goto done
		fi };

fail:
	atomic {
		abort();
		printf("t=%d P%d ROLLBACK (error %d)\n", now, me, err);
		goto done }
	}
#if MAXCRASH > 0
	unless {
		atomic { crash[me] -> abort();
			printf("t=%d P%d CRASH: its transaction aborts\n", now, me) }
	}
#endif
	;
done:
	skip
}

/*
 * reap.c / store.c ik_store_reap_scan() then ik_store_reap_delete(): a
 * row past retention that no live lease holds, deleted without waiting
 * and only in the version the scan saw.
 */
proctype reaper()
{
	byte me = REAPER;
	bool found;
end_idle:
	do
	:: atomic {
		R_st != ABSENT && R_ret <= now && (R_st == DONE || R_lease <= now) &&
		rlock == NONE ->
		check(C_LIVEREAP, R_st == DONE || now >= R_lease);
		rlock = me; P_kind = 2; found = 1;
		printf("t=%d P%d reap.c: ik_store_reap_scan, store.c reap_delete_in: row past retention, no live lease: table_tuple_delete\n", now, me) };
		{
		atomic {
			if
			:: keyed == R_gen -> keyed = 0; kcharger = NONE
			:: else
			fi;
			retired = retired | (1 << R_gen);
			R_st = ABSENT; R_fp = 0; R_tok = 0; R_lease = 0; R_rp = 0;
			R_resp = 0; R_exp = 0; R_ret = 0; R_gen = 0; R_ver++;
			rlock = NONE; CLEAR_P; found = 0;
			printf("t=%d P%d reap.c: COMMIT\n", now, me) }
		} unless {
			crash[REAPER] -> atomic {
				rlock = NONE; CLEAR_P; crash[REAPER] = 0; found = 0;
				printf("t=%d P%d CRASH: the reaper's transaction aborts; it restarts\n", now, me) }
		}
	od
}

proctype clock()
{
	byte me = NONE;
end_tick:
	do
	:: atomic { now < MAXT -> now++; printf("t=%d tick\n", now) }
	od
}

/* policy.c: the scope's mode changed by the DBA between calls, once */
proctype admin()
{
	byte me = NONE;
#ifndef NO_MODE
	if
	:: atomic { mode = SHADOW; printf("t=%d P%d ALTER policy: mode = shadow\n", now, me) }
	:: atomic { mode = OFF; printf("t=%d P%d ALTER policy: mode = off\n", now, me) }
	:: skip
	fi
#endif
}

/* a crash of one process at any step */
proctype crasher()
{
	byte me = NONE;
	if
	:: ncrash > 0 -> ncrash--; select(me : 0 .. NPROC); crash[me] = 1
	:: skip
	fi
}

init
{
	byte i;
	atomic {
		i = 0;
		do
		:: i < NPROC -> run client(i); i++
		:: else -> break
		od;
		run reaper();
		run clock();
		run admin();
		run crasher()
	}
}

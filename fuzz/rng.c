/*-------------------------------------------------------------------------
 *
 * rng.c
 *	  Random numbers: splitmix64, seeded.
 *
 * One stream for the whole program: main() in ikfuzz.c reseeds it at the
 * start of every iteration from (seed, iteration number), so that an
 * iteration's inputs do not depend on what the iterations before it drew.
 * Every generator draws from it in a fixed order; nothing else may, or a
 * seed would stop replaying its run.
 *
 *-------------------------------------------------------------------------
 */
#include "ikfuzz.h"

uint64_t	rng_state;

uint64_t
rnd64(void)
{
	uint64_t	z = (rng_state += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

/* 0 .. n-1 */
uint32_t
rnd(uint32_t n)
{
	return n == 0 ? 0 : (uint32_t) (rnd64() % n);
}

/* lo .. hi inclusive */
int64_t
rnd_range(int64_t lo, int64_t hi)
{
	return lo + (int64_t) (rnd64() % (uint64_t) (hi - lo + 1));
}

bool
chance(int percent)
{
	return (int) rnd(100) < percent;
}

/*-------------------------------------------------------------------------
 *
 * session.c
 *	  What is known of the server session: whether the fuzzer is a
 *	  superuser, whether the library is preloaded, and the fingerprint
 *	  secret in force in A's transaction.
 *
 * main() in ikfuzz.c sets the first two at start.  maybe_secret() sets a
 * random idempotency.fingerprint_secret for A's transaction (superusers
 * only) and keeps it in secret, which the fingerprint operations hand to
 * json.c's oracle.
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>

#include "ikfuzz.h"

bool		is_superuser;
bool		preloaded;
char	   *secret;				/* fingerprint secret in force in A's transaction */

/* A random secret; the GUC is a C string, so no NUL. */
static char *
gen_secret(void)
{
	Buf			b = {0};
	int			n = (int) rnd_range(1, 80);
	char	   *r;

	for (int i = 0; i < n; i++)
	{
		if (chance(10))
			buf_puts(&b, "\xc3\xa9");
		else
			buf_putc(&b, (char) rnd_range(0x20, 0x7E));
	}
	r = abuf(&b);
	free(b.data);
	return r;
}

/* Inside A's transaction: maybe switch to a random fingerprint secret. */
void
maybe_secret(void)
{
	secret = NULL;
	if (is_superuser && chance(30))
	{
		Arg			a[1];
		Res			r;

		secret = gen_secret();
		a[0] = T(secret);
		r = run(&A, "SELECT set_config('idempotency.fingerprint_secret', $1, true)", 1, a);
		EXPECT(&r, "setting the fingerprint secret", "ok");
	}
}

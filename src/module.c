/*-------------------------------------------------------------------------
 *
 * module.c
 *	  Library start-up: GUCs and transaction callbacks.
 *
 * Everything here works whether or not the library is preloaded: claims
 * need no shared memory, only the transaction callbacks that enforce the
 * commit guard, and those are registered in whichever backend loads us.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include "fmgr.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	ik_define_gucs();
	ik_register_xact_callbacks();
}

/*-------------------------------------------------------------------------
 *
 * module.c
 *	  Library start-up: GUCs and transaction callbacks.
 *
 * Claims work whether or not the library is preloaded: they need no shared
 * memory, only the transaction callbacks that enforce the commit guard,
 * and those are registered in whichever backend loads us.  Preloaded, the
 * library also keeps statistics in shared memory and starts the background
 * reaper.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

#include "fmgr.h"
#include "miscadmin.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	ik_define_gucs();
	ik_register_xact_callbacks();
	ik_register_keylock_callbacks();
	ik_register_oncommit_callbacks();
	ik_store_register_callbacks();

	if (!process_shared_preload_libraries_in_progress || IsBinaryUpgrade)
		return;
	ik_stats_install_hooks();
	ik_scope_stats_install_hooks();
	ik_reap_skips_install_hooks();
	ik_register_reaper_launcher();
}

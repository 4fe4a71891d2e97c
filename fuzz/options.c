/*-------------------------------------------------------------------------
 *
 * options.c
 *	  The command-line options, and the counters the summary prints.
 *
 * main() in ikfuzz.c sets the options, the iteration number and the name
 * of the current operation, and prints the counts at the end; conn.c
 * counts statements, checks and each result's SQLSTATE, and names the
 * operation and the iteration in a failure's report.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "ikfuzz.h"

uint64_t	opt_seed;
double		opt_seconds = 10;
long		opt_iterations = 1000000000L;
const char *opt_repro;
const char *opt_conninfo = "";
bool		opt_verbose;
bool		opt_include_known;
long		opt_only = -1;

long		iteration;
long		n_statements;
long		n_checks;
const char *current_op = "";

/* how often each SQLSTATE (or "ok") was seen, for the summary */
SeenState	seen[MAX_SEEN];
int			n_seen;

long		op_counts[16];
const char *op_names[16];

void
count_state(const char *st)
{
	for (int i = 0; i < n_seen; i++)
		if (strcmp(seen[i].state, st) == 0)
		{
			seen[i].count++;
			return;
		}
	if (n_seen < MAX_SEEN)
	{
		snprintf(seen[n_seen].state, sizeof(seen[n_seen].state), "%s", st);
		seen[n_seen++].count = 1;
	}
}

double
now_seconds(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return tv.tv_sec + tv.tv_usec / 1e6;
}

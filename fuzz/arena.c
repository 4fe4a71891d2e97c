/*-------------------------------------------------------------------------
 *
 * arena.c
 *	  Growable buffers, and a per-iteration arena.
 *
 * A Buf is a NUL-terminated byte string that grows as it is written.  What
 * an iteration allocates with amalloc(), astrdup() or abuf() lives until
 * arena_reset(), which main() calls after every iteration, so generators
 * and operations need not free what they make; xstrdup() is for what must
 * outlive an iteration (the modelled keys' stored responses).  Running out
 * of memory in a Buf or the arena ends the run with exit status 2.
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ikfuzz.h"

static void
buf_reserve(Buf *b, size_t more)
{
	if (b->len + more + 1 > b->cap)
	{
		size_t		cap = b->cap ? b->cap : 64;

		while (b->len + more + 1 > cap)
			cap *= 2;
		b->data = realloc(b->data, cap);
		if (b->data == NULL)
		{
			fprintf(stderr, "ikfuzz: out of memory\n");
			exit(2);
		}
		b->cap = cap;
	}
}

void
buf_add(Buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
buf_putc(Buf *b, char c)
{
	buf_add(b, &c, 1);
}

void
buf_puts(Buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

void
buf_printf(Buf *b, const char *fmt,...)
{
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	buf_reserve(b, n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, n + 1, fmt, ap);
	va_end(ap);
	b->len += n;
}

void
buf_reset(Buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

static void **arena;
static size_t arena_n,
			arena_cap;

void *
amalloc(size_t n)
{
	void	   *p = calloc(1, n ? n : 1);

	if (p == NULL)
	{
		fprintf(stderr, "ikfuzz: out of memory\n");
		exit(2);
	}
	if (arena_n == arena_cap)
	{
		arena_cap = arena_cap ? arena_cap * 2 : 1024;
		arena = realloc(arena, arena_cap * sizeof(void *));
	}
	arena[arena_n++] = p;
	return p;
}

char *
astrdup(const char *s, size_t n)
{
	char	   *p = amalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

/* Take a Buf's contents into the arena. */
char *
abuf(Buf *b)
{
	return astrdup(b->data ? b->data : "", b->len);
}

void
arena_reset(void)
{
	for (size_t i = 0; i < arena_n; i++)
		free(arena[i]);
	arena_n = 0;
}

char *
xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

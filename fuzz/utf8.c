/*-------------------------------------------------------------------------
 *
 * utf8.c
 *	  Encoding and validating UTF-8.
 *
 * utf8_valid() is the fuzzer's own idea of what PostgreSQL accepts as
 * UTF-8 text (no overlong forms, no surrogates, nothing past U+10FFFF):
 * text it calls invalid must be refused with 22021 before any function of
 * the extension runs.
 *
 *-------------------------------------------------------------------------
 */
#include "ikfuzz.h"

int
utf8_encode(uint32_t cp, char *out)
{
	if (cp < 0x80)
	{
		out[0] = (char) cp;
		return 1;
	}
	if (cp < 0x800)
	{
		out[0] = (char) (0xC0 | (cp >> 6));
		out[1] = (char) (0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000)
	{
		out[0] = (char) (0xE0 | (cp >> 12));
		out[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char) (0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char) (0xF0 | (cp >> 18));
	out[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char) (0x80 | (cp & 0x3F));
	return 4;
}

/* Strict UTF-8 (RFC 3629), as PostgreSQL checks it; NUL is invalid too. */
bool
utf8_valid(const unsigned char *p, size_t n)
{
	size_t		i = 0;

	while (i < n)
	{
		unsigned char c = p[i];
		int			len;
		unsigned char lo = 0x80,
					hi = 0xBF;

		if (c == 0)
			return false;
		if (c < 0x80)
		{
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			len = 2;
		else if (c >= 0xE0 && c <= 0xEF)
		{
			len = 3;
			if (c == 0xE0)
				lo = 0xA0;
			if (c == 0xED)
				hi = 0x9F;
		}
		else if (c >= 0xF0 && c <= 0xF4)
		{
			len = 4;
			if (c == 0xF0)
				lo = 0x90;
			if (c == 0xF4)
				hi = 0x8F;
		}
		else
			return false;
		if (i + len > n)
			return false;
		if (p[i + 1] < lo || p[i + 1] > hi)
			return false;
		for (int j = 2; j < len; j++)
			if (p[i + j] < 0x80 || p[i + j] > 0xBF)
				return false;
		i += len;
	}
	return true;
}

/*-------------------------------------------------------------------------
 *
 * named_row.c
 *	  Rows of the statistics functions, filled by column name.
 *
 * A function that returns a row of statistics declares its columns in the
 * install script of its catalog version, and a library serves every
 * catalog version from 0.1.0 on: a column added later is missing from an
 * older declaration.  So the C side names each value it has, and the row
 * is filled in the order the function's declaration has, by name; a
 * declared column the library does not know is the documented error of a
 * catalog the library cannot serve, never a shifted row.
 *
 *-------------------------------------------------------------------------
 */
#include "idempotency.h"

/* Add a named value to a row; *n is the next free column. */
void
ik_named(IkNamedValue *row, int *n, const char *name, Datum value,
		 bool isnull)
{
	row[*n].name = name;
	row[*n].value = value;
	row[*n].isnull = isnull;
	(*n)++;
}

/*
 * Fill values and nulls in the order desc declares, from the n named
 * values of row; funcname names the function in the error.
 */
void
ik_fill_by_name(TupleDesc desc, const IkNamedValue *row, int n,
				const char *funcname, Datum *values, bool *nulls)
{
	for (int a = 0; a < desc->natts; a++)
	{
		const char *name = NameStr(TupleDescAttr(desc, a)->attname);
		int			r = 0;

		while (r < n && strcmp(row[r].name, name) != 0)
			r++;
		if (r == n)
			ereport(ERROR,
					(errcode(ERRCODE_IK_TABLE_NEEDS_OPERATOR),
					 errmsg("idempotency.%s() declares column \"%s\", which this library does not know",
							funcname, name),
					 errhint("Install the extension's files of the version the catalog has, or run ALTER EXTENSION idempotency UPDATE.")));
		values[a] = row[r].value;
		nulls[a] = row[r].isnull;
	}
}

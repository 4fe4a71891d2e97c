# PostgreSQL's pgindent over src/*.c and src/*.h (scripts/pgindent.sh).  Included from the
# Makefile:
#     include scripts/indent.mk
#
#   make indent        reformat src/*.c src/*.h in place with PostgreSQL 18's pgindent and
#                      pg_bsd_indent (built once from ../shared/toolchain and cached)
#   make check-indent  the same on a temporary copy: prints the diff and fails if any file
#                      would change
#
# The typedef list is PostgreSQL's typedefs.list plus the project's own typedef names,
# read from src/ on every run (`bash scripts/pgindent.sh --typedefs` prints them).

# Do not take over the default goal, wherever this file is included.
idempotency_indent_saved_goal := $(.DEFAULT_GOAL)

.PHONY: indent check-indent
#> develop indent PostgreSQL's pgindent over src/ in place
indent:
	bash scripts/pgindent.sh
#> develop check-indent the same on a copy: fails, with the diff, if a file would change
check-indent:
	bash scripts/pgindent.sh --check

.DEFAULT_GOAL := $(idempotency_indent_saved_goal)

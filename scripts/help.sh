#!/usr/bin/env bash
# `make help`: every make target, one line each, grouped.  The list is the
# "#> GROUP TARGET DESCRIPTION" lines written above the rules in the
# Makefile and the files it includes, so that a target and its line sit
# together; PGXS's own targets that a user needs have their lines in the
# Makefile.
#
#   bash scripts/help.sh FILE...          print the list (make help)
#   bash scripts/help.sh --check FILE...  fail, naming it, when a target
#                                         declared .PHONY in FILE... has no
#                                         line or a line names no target, or
#                                         when docs/development.md does not
#                                         show the list as it is printed
#
# FILE... is make's MAKEFILE_LIST; files outside this tree (PGXS's) are
# left out.
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
[ "${1-}" = --check ] && { check=1; shift; }
[ $# -gt 0 ] || set -- Makefile $(sed -n 's/^include \([^$].*\)/\1/p' Makefile)
files=()
for f in "$@"; do
  case $f in /*|../*) ;; *) [ -f "$f" ] && files+=("$f") ;; esac
done
groups=(use test bench release develop)
# PGXS's targets that are documented here without a rule of ours.
pgxs_targets=(all install installcheck uninstall clean)

lines=$(grep -h '^#> ' "${files[@]}" | sed 's/^#> //' || true)

print_list() {
  for g in "${groups[@]}"; do
    printf '%s:\n' "$g"
    printf '%s\n' "$lines" | awk -v g="$g" '$1 == g {
      t = $2; $1 = ""; $2 = ""; sub(/^ +/, ""); printf "  %-20s %s\n", t, $0 }'
  done
}
if [ $check = 0 ]; then
  print_list
  exit 0
fi

listed=$(printf '%s\n' "$lines" | awk '{ print $2 }' | sort)
phony=$( (grep -h '^\.PHONY:' "${files[@]}" | sed 's/^\.PHONY://' | tr ' ' '\n'
          printf '%s\n' "${pgxs_targets[@]}") | grep . | sort -u)
bad=0
for g in $(printf '%s\n' "$lines" | awk '{ print $1 }' | sort -u); do
  [[ " ${groups[*]} " == *" $g "* ]] || { echo "help: unknown group $g"; bad=1; }
done
for t in $(comm -23 <(printf '%s\n' "$phony") <(printf '%s\n' "$listed" | sort -u)); do
  echo "help: make $t has no '#> GROUP $t DESCRIPTION' line"; bad=1
done
for t in $(comm -13 <(printf '%s\n' "$phony") <(printf '%s\n' "$listed" | sort -u)); do
  echo "help: '#> ... $t' names no .PHONY target"; bad=1
done
for t in $(printf '%s\n' "$listed" | uniq -d); do
  echo "help: make $t is listed twice"; bad=1
done
# docs/development.md shows the list between its markers, as printed.
shown=$(sed -n '/^<!-- make help -->$/,/^<!-- end make help -->$/p' docs/development.md | sed '1,2d;$d' | sed '$d')
if [ "$shown" != "$(print_list)" ]; then
  echo "help: docs/development.md does not show the list as make help prints it"; bad=1
fi
[ $bad = 0 ] && echo "help: all $(printf '%s\n' "$phony" | wc -l) targets listed"
exit $bad

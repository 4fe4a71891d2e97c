#!/usr/bin/env bash
# PostgreSQL's pgindent over the extension's C (src/*.c, src/*.h), so that "pgindent-clean"
# is something `make check-indent` checks rather than something the README claims.
#
#   bash scripts/pgindent.sh                 reformat src/*.c src/*.h in place
#   bash scripts/pgindent.sh --check         reformat a temporary copy, print the diff
#                                            (git apply-able), exit 1 if anything would change
#   bash scripts/pgindent.sh --typedefs      print the project's own typedef names
#   ... [FILE...]                            only these files (paths from the repo's top)
#
# pgindent and pg_bsd_indent come from PostgreSQL 18's source tarball in ../shared/toolchain
# (never from the network, never copied into the repo), built once and cached by
# `scripts/toolchain.sh pgindent` (80 s on 2 idle cores; later runs take a few seconds).
#
# The typedef list given to pgindent is PostgreSQL's typedefs.list plus the project's own
# names, extracted from src/*.{c,h} on every run: the NAME of `typedef struct|union|enum
# [Tag] {...} NAME;`, of `typedef RET (*NAME) (...);` and of `typedef TYPE NAME;`.  A type
# pg_bsd_indent does not know is formatted as a variable (`Foo * bar`, `(Foo *) x` spaced
# oddly), so a new typedef is picked up without anyone editing a list.
#
# Settings (environment): TOOLCHAIN_DIR and TOOLCHAIN_CACHE, as scripts/toolchain.sh reads
# them.  Needs gcc, make, perl, bzip2 and diff (scripts/setup-debian.sh installs them).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

say() { echo "pgindent: $*" >&2; }
die() { say "$*"; exit 2; }
usage() { die "usage: $0 [--check | --typedefs] [FILE...]"; }

mode=inplace
case ${1-} in
  --check) mode=check; shift ;;
  --typedefs) mode=typedefs; shift ;;
  -*) usage ;;
esac
cd "$top"

# The project's own typedef names, one a line, from the given C files.
project_typedefs() {
  perl -e '
    use strict; use warnings;
    my %names;
    for my $file (@ARGV) {
      open(my $fh, "<", $file) or die "$file: $!\n";
      local $/; my $s = <$fh>; close $fh;
      $s =~ s{/\*.*?\*/}{ }gs;            # comments
      $s =~ s{//[^\n]*}{}g;
      $s =~ s{"(?:[^"\\\n]|\\.)*"}{""}g;  # string literals
      # typedef struct|union|enum [Tag] { ... } NAME[, NAME2];
      while ($s =~ /\btypedef\s+(?:struct|union|enum)\b[^;{]*(\{(?:[^{}]++|(?1))*\})\s*([^;]*);/g) {
        $names{$_} = 1 for $2 =~ /(\w+)\s*(?:,|$)/g;
      }
      # typedef RET (*NAME) (ARGS);
      $names{$1} = 1 while $s =~ /\btypedef\b[^;{]*?\(\s*\*\s*(\w+)\s*\)\s*\(/g;
      # typedef TYPE NAME;
      $names{$1} = 1 while $s =~ /\btypedef\s+[^;{}()]*?\b(\w+)\s*;/g;
    }
    print "$_\n" for sort keys %names;
  ' "$@"
}

all_sources=(src/*.c src/*.h)
if [ "$mode" = typedefs ]; then
  project_typedefs "${all_sources[@]}"
  exit 0
fi
if [ $# -gt 0 ]; then files=("$@"); else files=("${all_sources[@]}"); fi
for f in "${files[@]}"; do
  [[ $f == *.[ch] && -f $f && $f != /* ]] || die "$f: not a .c or .h file under $top"
done

# --- the tools: pg_bsd_indent and pgindent, built once per tarball (scripts/toolchain.sh) ----
tools=$(bash "$top/scripts/toolchain.sh" pgindent) || die "no pg_bsd_indent (scripts/toolchain.sh pgindent)"
indent=$tools/bin/pg_bsd_indent
pgindent=$tools/pgindent/pgindent

# --- the run ------------------------------------------------------------------------------
# pgindent writes its temporary files into the current directory: give it one of its own.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat "$tools/pgindent/typedefs.list" >"$work/typedefs.list"
project_typedefs "${all_sources[@]}" >>"$work/typedefs.list"

run_pgindent() {  # run_pgindent FILE... (absolute paths)
  local rc=0
  (cd "$work" && perl "$pgindent" --typedefs="$work/typedefs.list" --indent="$indent" "$@") || rc=$?
  [ $rc -eq 0 ] || die "pgindent failed (exit $rc)"
}

if [ "$mode" = inplace ]; then
  before=$(md5sum "${files[@]}")
  run_pgindent "${files[@]/#/$top/}"
  changed=$(diff <(echo "$before") <(md5sum "${files[@]}") | grep -c '^>' || true)
  say "$changed of ${#files[@]} files reformatted"
  exit 0
fi

mkdir "$work/copy"
for f in "${files[@]}"; do
  mkdir -p "$work/copy/$(dirname "$f")"
  cp "$f" "$work/copy/$f"
done
run_pgindent "${files[@]/#/$work/copy/}"
changed=0 lines=0
for f in "${files[@]}"; do
  if ! out=$(diff -u --label "a/$f" --label "b/$f" "$f" "$work/copy/$f"); then
    printf '%s\n' "$out"
    changed=$((changed + 1))
    lines=$((lines + $(printf '%s\n' "$out" | tail -n +3 | grep -c '^[-+]' || true)))
  fi
done
if [ $changed -gt 0 ]; then
  say "$changed of ${#files[@]} files are not pgindent-clean ($lines lines removed or added);" \
      "make indent reformats them"
  exit 1
fi
say "pgindent-clean: ${#files[@]} of ${#files[@]} files"

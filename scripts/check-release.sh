#!/usr/bin/env bash
# `make check-release` (and the release suite of `make test`): the version number and the
# license, which live in one place each, are what every other file says.
#   - the version is idempotency.control's default_version; META.json (the release and
#     what it provides), debian/changelog (the upstream part of the package version) and
#     README.md ("The current release is **X.Y.Z**", and every archive or package file
#     name it mentions) must say the same, and its install script must be the one
#     scripts/install-script.sh builds; released scripts are byte for byte as released
#     (scripts/released.sha256);
#   - the license is the PostgreSQL License in LICENSE; META.json says "postgresql",
#     debian/copyright says PostgreSQL with the same text, README.md's License section
#     names it;
#   - META.json's prerequisites are PostgreSQL 15 and the control file's `requires`;
#   - `make help` lists every make target (scripts/help.sh --check);
#   - README.md is at most 45 KB, every page of docs/ is linked, and no link of the manual
#     is broken (scripts/check-links.pl);
#   - no file of src/ calls, however far round, a file that calls it (scripts/src-graph.pl);
#   - in a git checkout, `make dist` gives dist/idempotency-X.Y.Z.zip, whose files are the
#     committed tree under idempotency-X.Y.Z/, and which builds with PGXS.
# Prints one line per check and "check-release: N passed, M failed" last.
set -euo pipefail
cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}
PG_CONFIG=${PG_CONFIG:-pg_config}

passed=0 failed=0
pass() { echo "check-release: ok: $*"; passed=$((passed + 1)); }
fail() { echo "check-release: FAIL: $*"; failed=$((failed + 1)); }
check() {  # check DESCRIPTION EXPECTED ACTUAL
  if [ "$2" = "$3" ]; then pass "$1 ($3)"; else fail "$1: expected '$2', found '$3'"; fi
}

version=$(sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" idempotency.control)
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] ||
  { echo "check-release: no X.Y.Z default_version in idempotency.control ('$version')" >&2; exit 1; }
echo "check-release: idempotency.control says $version"
if bash scripts/install-script.sh "$version" | cmp -s - "idempotency--$version.sql"; then
  pass "the install script idempotency--$version.sql is built from its sources (scripts/install-script.sh)"
else
  fail "idempotency--$version.sql is missing or not what scripts/install-script.sh builds: run make"
fi
# Released scripts stay byte for byte as released: users' catalogs came from them.
while read -r sum file; do
  check "$file is as released" "$sum" "$(sha256sum "$file" 2>/dev/null | cut -c1-64)"
done <scripts/released.sha256

# --- META.json -----------------------------------------------------------------------------
meta() {  # meta PERL-EXPRESSION-OVER-$m
  perl -MJSON::PP -e 'local $/; my $m = decode_json(<STDIN>); my $v = eval $ARGV[0];
    print defined $v ? (ref $v eq "ARRAY" ? join(",", @$v) : $v) : "(none)"' "$1" <META.json
}
if ! meta '1' >/dev/null 2>&1; then
  fail "META.json is not valid JSON"
else
  check "META.json name" idempotency "$(meta '$m->{name}')"
  check "META.json version" "$version" "$(meta '$m->{version}')"
  check "META.json provides idempotency version" "$version" "$(meta '$m->{provides}{idempotency}{version}')"
  check "META.json provides idempotency file" "idempotency--$version.sql" \
    "$(meta '$m->{provides}{idempotency}{file}')"
  check "META.json license" postgresql "$(meta '$m->{license}')"
  check "META.json prereqs: PostgreSQL" 15.0.0 "$(meta '$m->{prereqs}{runtime}{requires}{PostgreSQL}')"
  requires=$(sed -n "s/^requires *= *'\([^']*\)'.*/\1/p" idempotency.control | tr -d ' ')
  for ext in ${requires//,/ }; do
    check "META.json prereqs: $ext (required in idempotency.control)" 0 \
      "$(meta "\$m->{prereqs}{runtime}{requires}{'$ext'}")"
  done
  check "META.json meta-spec" 1.0.0 "$(meta '$m->{"meta-spec"}{version}')"
fi

# --- debian/changelog ----------------------------------------------------------------------
deb_version=$(dpkg-parsechangelog -l debian/changelog -S Version 2>/dev/null || echo '(unreadable)')
check "debian/changelog upstream version (package $deb_version)" "$version" "${deb_version%-*}"

# --- README.md -----------------------------------------------------------------------------
said=$(grep -oE 'current release is \*\*[^*]+\*\*' README.md | sed -E 's/.*\*\*(.*)\*\*/\1/' |
       sort -u | paste -sd' ' || true)
check "README.md: the current release" "$version" "${said:-(not stated)}"
stale=$(grep -oE '(idempotency-|postgresql-[0-9]+-idempotency_)[0-9]+\.[0-9]+\.[0-9]+' README.md |
        grep -vE "[-_]$version\$" | sort -u | paste -sd' ' || true)
[ -z "$stale" ] && pass "README.md names no archive or package of another version" ||
  fail "README.md names files of another version: $stale"

# --- the license -----------------------------------------------------------------------------
check "LICENSE is the PostgreSQL License" "PostgreSQL License" "$(head -n1 LICENSE)"
check "debian/copyright: the license of every file" PostgreSQL \
  "$(awk '/^Files: \*$/ {f = 1} f && /^License:/ {print $2; exit}' debian/copyright)"
# The license text of debian/copyright (its continuation lines, " ." for a blank one) is
# LICENSE's from "Permission" on.
copyright_text=$(awk '/^License: PostgreSQL$/ && seen++ {t = 1; next} t && /^ / {print} t && !/^ / {t = 0}' \
                   debian/copyright | sed 's/^ //; s/^\.$//')
license_text=$(sed -n '/^Permission/,$p' LICENSE)
[ -n "$license_text" ] && [ "$copyright_text" = "$license_text" ] &&
  pass "debian/copyright has LICENSE's text" || fail "debian/copyright's license text differs from LICENSE"
if sed -n '/^## License/,/^## /p' README.md | grep -q 'PostgreSQL License'; then
  pass "README.md's License section names the PostgreSQL License"
else
  fail "README.md has no License section naming the PostgreSQL License"
fi

# --- make help ---------------------------------------------------------------------------------
# Every target of the Makefile and its included files has its line in `make help`.
if out=$(bash scripts/help.sh --check 2>&1); then pass "make help lists every target: $out"
else fail "make help: $(printf '%s' "$out" | tr '\n' ';')"; fi

# --- the manual -------------------------------------------------------------------------------
# README.md is a user's manual under 45 KB, the rest is in docs/, every page of docs/ is linked
# from the README or another page, and no link points at a file or a heading that is not there.
pages=()
for page in README.md docs/*.md examples/*/README.md model/README.md trusted/README.md; do
  [ -f "$page" ] && pages+=("$page")
done
if out=$(perl scripts/check-links.pl "${pages[@]}" 2>&1); then pass "$(printf '%s' "$out" | tail -n 1)"
else fail "$(printf '%s' "$out" | tr '\n' ';')"; fi
size=$(wc -c <README.md)
[ "$size" -le 45000 ] && pass "README.md is $size bytes (at most 45 KB)" ||
  fail "README.md is $size bytes, over 45 KB: move a section to docs/"
for page in docs/*.md; do
  name=$(basename "$page")
  if grep -lF -- "$name" README.md docs/*.md | grep -vqx -- "$page"; then pass "$page is linked"
  else fail "$page is linked from neither README.md nor another page of docs/"; fi
done

# --- src/ has no circle ------------------------------------------------------------------------
# No file of src/ calls a file that calls it back, however far round (scripts/src-graph.pl).
if out=$(perl scripts/src-graph.pl 2>&1); then pass "$out"
else fail "$(printf '%s' "$out" | tr '\n' ';')"; fi

# --- the release archive -------------------------------------------------------------------------
if git rev-parse --is-inside-work-tree >/dev/null 2>&1 && command -v unzip >/dev/null; then
  tmp=$(mktemp -d /tmp/idempotency-dist.XXXXXX)
  trap 'rm -rf "$tmp"' EXIT
  if $MAKE --no-print-directory -s dist >"$tmp/dist.log" 2>&1 &&
     [ -f "dist/idempotency-$version.zip" ]; then
    pass "make dist gives dist/idempotency-$version.zip"
    unzip -q "dist/idempotency-$version.zip" -d "$tmp"
    listed=$(cd "$tmp/idempotency-$version" && find . -type f | sed 's|^\./||' | sort)
    committed=$(git ls-tree -r --name-only HEAD | sort)
    [ "$listed" = "$committed" ] && pass "the archive holds the committed tree under idempotency-$version/" ||
      fail "the archive's files differ from the committed tree: $(diff <(echo "$committed") <(echo "$listed") | head -n 5 | tr '\n' ' ')"
    if $MAKE -C "$tmp/idempotency-$version" --no-print-directory -s PG_CONFIG="$PG_CONFIG" \
         >"$tmp/build.log" 2>&1; then
      pass "the archive builds with PGXS ($("$PG_CONFIG" --version))"
    else
      fail "the archive does not build: $(tail -n 5 "$tmp/build.log" | tr '\n' ' ')"
    fi
  else
    fail "make dist failed: $(tail -n 5 "$tmp/dist.log" | tr '\n' ' ')"
  fi
else
  echo "check-release: not a git checkout (or no unzip): the release archive is not checked"
fi

echo "check-release: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

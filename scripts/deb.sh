#!/usr/bin/env bash
# The Debian package (debian/: pg_buildext, one postgresql-VERSION-idempotency binary package
# per supported PostgreSQL major version; on Debian 12 that is postgresql-15-idempotency).
#
#   bash scripts/deb.sh build   # make deb: dpkg-buildpackage -us -uc -b in a copy of the tree
#                               # (so that the tree gets no build products), which also runs
#                               # the regression and isolation suites against the staged
#                               # files; the .deb goes to dist/
#   bash scripts/deb.sh test    # make test-deb: build, then in a private mount namespace
#                               # remove any installed copy of the extension, dpkg -i the
#                               # package, verify its files, CREATE EXTENSION and run the demo
#                               # on a throwaway cluster, run the suites against the installed
#                               # package (debian/tests, as autopkgtest does), dpkg -r it
#
# The mount namespace (unshare --mount) puts overlays over /usr/lib/postgresql,
# /usr/share/postgresql, /usr/share/doc, /var/lib/dpkg and /var/cache/postgresql, and dpkg
# logs into the work directory: the removal, the dpkg -i and the dpkg -r are seen by the
# processes of the test only, never by the rest of the machine, whose PostgreSQL installation
# other work may be using.  The test checks that afterwards.
# Run as root on Debian 12.  DEB_WORKDIR: the work directory (default: a new one in /tmp,
# removed after a successful run).  Ends with "deb: N passed, M failed" (test).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
what=${1:-}
case $what in build|test) ;; *) echo "usage: $0 build|test" >&2; exit 2 ;; esac
[ "$(id -u)" -eq 0 ] || { echo "deb: run as root (dpkg, mount namespaces)" >&2; exit 2; }

bash scripts/setup-debian.sh
version=$(sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" idempotency.control)
deb_version=$(dpkg-parsechangelog -S Version)
work=${DEB_WORKDIR:-$(mktemp -d /tmp/idempotency-deb.XXXXXX)}
mkdir -p "$work"
chmod 755 "$work"
t_start=$(date +%s)
log() { echo "deb: $*"; }

# --- build ---------------------------------------------------------------------------------
src=$work/idempotency-${deb_version%-*}
rm -rf "$src" "$work"/*.deb "$work"/*.changes "$work"/*.buildinfo
mkdir -p "$src"
tar -cf - --exclude=./.git --exclude=./dist --exclude=./tmp_check --exclude=./results \
  --exclude=./output_iso --exclude=./log --exclude='*.o' --exclude='*.so' --exclude='*.bc' . |
  tar -C "$src" -xf -
log "dpkg-buildpackage -us -uc -b in $src (package $deb_version; output in $work/build.log)"
t0=$(date +%s)
if ! (cd "$src" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1; then
  tail -n 60 "$work/build.log"
  log "the package build failed (log: $work/build.log)"
  exit 1
fi
shopt -s nullglob; debs=("$work"/*.deb); shopt -u nullglob
[ ${#debs[@]} -gt 0 ] || { log "dpkg-buildpackage made no .deb"; exit 1; }
mkdir -p dist
cp "${debs[@]}" dist/
log "built in $(( $(date +%s) - t0 )) s: $(cd "$work" && ls ./*.deb | sed 's|^\./||' | paste -sd' ') (copied to dist/)"
if [ "$what" = build ]; then
  [ -n "${DEB_WORKDIR:-}" ] || rm -rf "$work"
  exit 0
fi

# --- test: in a private mount namespace ------------------------------------------------------
rm -rf "$work/overlay" "$work/pg"   # of an earlier run in the same DEB_WORKDIR
major=$(pg_config --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
pkg=postgresql-$major-idempotency
deb=$work/${pkg}_${deb_version}_$(dpkg --print-architecture).deb
[ -f "$deb" ] || { log "no $deb among the built packages"; exit 1; }

# What the machine has before the test, to compare with afterwards: the package's state in
# dpkg's database and its documentation directory, and the files that both the package and
# `make install` write.  Those may change meanwhile by another worktree's `make install`;
# what must not happen is that they become the package's.
outside_files=("/usr/lib/postgresql/$major/lib/idempotency.so"
               "/usr/share/postgresql/$major/extension/idempotency.control")
outside_state() {
  echo "dpkg: $(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || echo not-installed)"
  [ -e "/usr/share/doc/$pkg" ] && echo "/usr/share/doc/$pkg exists" || echo "no /usr/share/doc/$pkg"
}
file_sum() { if [ -f "$1" ]; then sha256sum <"$1" | cut -c1-64; else echo absent; fi; }
packaged_sum() { dpkg-deb --fsys-tarfile "$deb" | tar -xOf - ".$1" | sha256sum | cut -c1-64; }
before=$(outside_state)
declare -A before_sum
for f in "${outside_files[@]}"; do before_sum[$f]=$(file_sum "$f"); done

cat >"$work/inside.sh" <<'INSIDE'
#!/usr/bin/env bash
# Runs in the private mount namespace: scripts/deb.sh test.
set -euo pipefail
work=$1 deb=$2 pkg=$3 major=$4 version=$5 top=$6
passed=0 failed=0
pass() { echo "deb: ok: $*"; passed=$((passed + 1)); }
fail() { echo "deb: FAIL: $*"; failed=$((failed + 1)); }

n=0
# /var/cache/postgresql: postgresql-common's dpkg trigger rebuilds its dictionaries there.
for dir in /usr/lib/postgresql /usr/share/postgresql /usr/share/doc /var/lib/dpkg \
           /var/cache/postgresql; do
  [ -d "$dir" ] || continue
  n=$((n + 1))
  mkdir -p "$work/overlay/$n/upper" "$work/overlay/$n/work"
  mount -t overlay overlay \
    -o "lowerdir=$dir,upperdir=$work/overlay/$n/upper,workdir=$work/overlay/$n/work" "$dir"
done
pass "overlays over /usr/lib/postgresql, /usr/share/postgresql, /usr/share/doc, /var/lib/dpkg, /var/cache/postgresql"

# A clean state: no copy of the extension from `make install` (or an earlier package).
if [ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)" = installed ]; then
  dpkg --log="$work/dpkg.log" -r "$pkg" >/dev/null
fi
rm -rf "/usr/lib/postgresql/$major/lib/idempotency.so" \
       "/usr/lib/postgresql/$major/lib/bitcode/idempotency" \
       "/usr/lib/postgresql/$major/lib/bitcode/idempotency.index.bc" \
       /usr/share/postgresql/$major/extension/idempotency[.-]*
left=$(find /usr/lib/postgresql /usr/share/postgresql -name 'idempotency*' | head -n 5)
[ -z "$left" ] && pass "no installed copy of the extension left" || fail "still installed: $left"

dpkg --log="$work/dpkg.log" -i "$deb" >"$work/dpkg-i.log" 2>&1 &&
  pass "dpkg -i $(basename "$deb")" || { fail "dpkg -i failed: $(tail -n 5 "$work/dpkg-i.log")"; }
[ "$(dpkg-query -W -f='${db:Status-Status} ${Version}' "$pkg")" = "installed $(dpkg-deb -f "$deb" Version)" ] &&
  pass "$pkg is installed" || fail "$pkg is not installed"
dpkg --verify "$pkg" >"$work/verify.log" 2>&1 && [ ! -s "$work/verify.log" ] &&
  pass "dpkg --verify: every file as packaged" || fail "dpkg --verify: $(head -n 5 "$work/verify.log")"
for f in "/usr/lib/postgresql/$major/lib/idempotency.so" \
         "/usr/share/postgresql/$major/extension/idempotency.control" \
         "/usr/share/postgresql/$major/extension/idempotency--$version.sql" \
         "/usr/share/doc/$pkg/copyright"; do
  owner=$(dpkg -S "$f" 2>/dev/null || true)
  [ "$owner" = "$pkg: $f" ] && pass "packaged: $f" || fail "not packaged: $f (${owner:-no owner})"
done

# A throwaway cluster of the system's PostgreSQL, with the packaged library preloaded.
bindir=/usr/lib/postgresql/$major/bin
data=$work/pg/data sock=$work/pg/sock
as_pg() { runuser -u postgres -- "$@"; }
mkdir -p "$sock" "$data"; chown -R postgres: "$work/pg"
as_pg "$bindir/initdb" -D "$data" -A trust -U postgres -E UTF8 --locale=C --no-sync >"$work/initdb.log"
cat >>"$data/postgresql.conf" <<EOF
shared_preload_libraries = 'idempotency'
listen_addresses = ''
unix_socket_directories = '$sock'
port = 5499
fsync = off
EOF
stop_server() { as_pg "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true; }
trap stop_server EXIT
as_pg "$bindir/pg_ctl" -D "$data" -l "$work/pg/server.log" -w start >/dev/null ||
  { fail "the server did not start: $(tail -n 5 "$work/pg/server.log")"; exit 1; }
psql=(runuser -u postgres -- "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$sock" -p 5499 -d postgres)
pm=$(head -n1 "$data/postmaster.pid")
grep -q "/usr/lib/postgresql/$major/lib/idempotency.so" "/proc/$pm/maps" &&
  pass "the postmaster preloaded the packaged idempotency.so" || fail "the packaged library is not loaded"
"${psql[@]}" -c 'CREATE EXTENSION idempotency CASCADE' >"$work/create.log" 2>&1 &&
  pass "CREATE EXTENSION idempotency CASCADE" || fail "CREATE EXTENSION: $(cat "$work/create.log")"
got=$("${psql[@]}" -At -c "SELECT extversion FROM pg_extension WHERE extname = 'idempotency'")
[ "$got" = "$version" ] && pass "the installed version is $version" ||
  fail "the installed version is '$got', not $version"
if "${psql[@]}" -f "$top/demo/payment_flow.sql" >"$work/demo.log" 2>&1; then
  pass "demo/payment_flow.sql against the packaged files"
else
  fail "demo/payment_flow.sql: $(tail -n 10 "$work/demo.log")"
fi
"${psql[@]}" -At -c "SELECT claims_new > 0 FROM idempotency.stats WHERE database = 'postgres'" \
  >"$work/stats.log" 2>&1 && [ "$(cat "$work/stats.log")" = t ] &&
  pass "the statistics view counts the demo's claims" || fail "idempotency.stats: $(cat "$work/stats.log")"
stop_server

# The suites against the installed package, as autopkgtest runs debian/tests (as root:
# pg_virtualenv makes its cluster the postgres user's).
if (cd "$work/src-test" && debian/tests/installcheck) >"$work/installcheck.log" 2>&1; then
  pass "debian/tests/installcheck: $(grep -cE '^ok |^test .* ok' "$work/installcheck.log") tests against the installed package"
else
  fail "debian/tests/installcheck: $(grep -E 'not ok|FAILED|failed' "$work/installcheck.log" | head -n 5)"
fi

dpkg --log="$work/dpkg.log" -r "$pkg" >"$work/dpkg-r.log" 2>&1 &&
  [ ! -e "/usr/lib/postgresql/$major/lib/idempotency.so" ] &&
  [ -z "$(find /usr/share/postgresql -name 'idempotency*')" ] &&
  pass "dpkg -r removes every file" || fail "dpkg -r: $(tail -n 5 "$work/dpkg-r.log")"

echo "deb: inside: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
INSIDE

# debian/tests/installcheck runs in a copy of the source, as autopkgtest would unpack it.
rm -rf "$work/src-test"
cp -a "$src" "$work/src-test"
(cd "$work/src-test" && rm -rf debian/.debhelper debian/"$pkg" debian/files debian/*.substvars)

rc=0
unshare --mount --propagation private bash "$work/inside.sh" "$work" "$deb" "$pkg" "$major" \
  "$version" "$top" 2>&1 | tee "$work/inside.log" || rc=$?
p=$(grep -c '^deb: ok: ' "$work/inside.log" || true)
f=$(grep -c '^deb: FAIL: ' "$work/inside.log" || true)
if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
  echo "deb: FAIL: the test in the namespace stopped early (exit $rc)"
  f=1
fi

after=$(outside_state)
if [ "$after" = "$before" ]; then
  echo "deb: ok: outside the namespace dpkg knows nothing new ($(echo "$after" | paste -sd';'))"
  p=$((p + 1))
else
  echo "deb: FAIL: outside the namespace dpkg's state changed:"
  diff <(echo "$before") <(echo "$after") || true
  f=$((f + 1))
fi
for file in "${outside_files[@]}"; do
  now=$(file_sum "$file")
  if [ "$now" = "${before_sum[$file]}" ]; then
    echo "deb: ok: outside the namespace $file is as before"; p=$((p + 1))
  elif [ "$now" = "$(packaged_sum "$file")" ]; then
    echo "deb: FAIL: outside the namespace $file is now the package's"; f=$((f + 1))
  else
    echo "deb: ok: outside the namespace $file changed meanwhile, but not to the package's" \
      "(another make install)"
    p=$((p + 1))
  fi
done
log "took $(( $(date +%s) - t_start )) s (work directory $work)"
echo "deb: $p passed, $f failed"
if [ "$f" -eq 0 ] && [ -z "${DEB_WORKDIR:-}" ]; then rm -rf "$work"; fi
[ "$f" -eq 0 ]

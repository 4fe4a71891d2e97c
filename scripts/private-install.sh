#!/usr/bin/env bash
# scripts/private-install.sh COMMAND [ARGS...]: run COMMAND in a private mount
# namespace where /usr/lib/postgresql and /usr/share/postgresql are overlays
# on a temporary directory, so that the `make install` it does (bench/run.sh,
# bench/callgrind.sh, scripts/test.sh) is seen by its own clusters only: not
# by the system's PostgreSQL, and not by another worktree's `make test`
# running at the same time on the same machine, nor overwritten by theirs.
# The overlays go away with the namespace when COMMAND exits.
#
# As root (unshare and mount need it).  IDEMPOTENCY_PRIVATE_INSTALL=0 runs
# COMMAND as it is, installing into the system's directories; so does a
# machine where a mount namespace with an overlay cannot be made (not root,
# or a container without CAP_SYS_ADMIN), with a note saying so.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }
if [ "${IDEMPOTENCY_PRIVATE_INSTALL:-1}" = 0 ] || [ -n "${IDEMPOTENCY_IN_PRIVATE_INSTALL-}" ]; then
  exec "$@"
fi
overlay=$(mktemp -d /tmp/idempotency-overlay.XXXXXX)
chmod 755 "$overlay"
trap 'rm -rf "$overlay"' EXIT
mkdir -p "$overlay/probe/lower" "$overlay/probe/upper" "$overlay/probe/work" "$overlay/probe/mnt"
if [ "$(id -u)" -ne 0 ] || ! unshare --mount --propagation private sh -c \
    "mount -t overlay overlay -o lowerdir=$overlay/probe/lower,upperdir=$overlay/probe/upper,workdir=$overlay/probe/work $overlay/probe/mnt" \
    >/dev/null 2>&1; then
  echo "private-install: no private mount namespace here; installing into the system's directories" >&2
  rm -rf "$overlay"; trap - EXIT
  exec "$@"
fi
rm -rf "$overlay/probe"
export IDEMPOTENCY_IN_PRIVATE_INSTALL=$overlay
# Not exec: the trap removes the overlay's directory afterwards.
unshare --mount --propagation private bash -c '
  set -euo pipefail
  overlay=$1; shift
  n=0
  for dir in /usr/lib/postgresql /usr/share/postgresql; do
    n=$((n + 1))
    mkdir -p "$overlay/$n/upper" "$overlay/$n/work"
    chmod 755 "$overlay/$n" "$overlay/$n/upper"
    mount -t overlay overlay -o "lowerdir=$dir,upperdir=$overlay/$n/upper,workdir=$overlay/$n/work" "$dir"
  done
  exec "$@"' private-install "$overlay" "$@"

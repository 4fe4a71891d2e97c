#!/usr/bin/env bash
# model/run.sh NAME EXPECT SPIN-FLAGS...: generate, compile and run the
# verifier of model/claim.pml with SPIN-FLAGS (-D...), in a scratch
# directory.  EXPECT is pass or fail.  A violated property prints its
# trail as the interleaving of the C steps (spin -t -T, printf lines).
# MODEL_PAN_FLAGS adds pan compile flags (default: full state storage).
set -uo pipefail
name=$1 expect=$2; shift 2
src=$(cd "$(dirname "$0")" && pwd)/claim.pml
dir=$(mktemp -d /tmp/idempotency-model.XXXXXX)
trap 'rm -rf "$dir"' EXIT
cp "$src" "$dir/claim.pml"
cd "$dir"
t0=$(date +%s)
spin -a "$@" claim.pml >/dev/null || exit 2
gcc -O2 -DSAFETY -DCOLLAPSE ${MODEL_PAN_FLAGS:-} -o pan pan.c || exit 2
./pan -m500000 -w26 >out 2>&1
took=$(( $(date +%s) - t0 ))
grep -E "assertion violated|errors:|states, stored|elapsed" out
if grep -q "errors: 0" out; then got=pass; else got=fail; fi
if [ "$got" = fail ] && [ -f claim.pml.trail ]; then
  echo "--- $name: trail (t=clock tick, Pn=client n; the reaper is the P after the last client; P255 the DBA)"
  spin -t -T "$@" claim.pml 2>&1 | grep -E '^(t=[0-9]+ P|P[0-9]|spin: (text|trail))' | grep -v ' tick$'
fi
echo "model: $name: $got (expected $expect) in $took s"
[ "$got" = "$expect" ]

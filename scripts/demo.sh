#!/usr/bin/env bash
# The main demo: a service that takes seconds to warm up is started,
# checkpointed from a second "shell", and restored warm — twice.
# Usage: scripts/demo.sh   (needs the Rust toolchain, root, Linux >= 6.13)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "demo: the Rust toolchain (cargo) is needed" >&2
  exit 1
fi
echo "== Building (release)"
cargo build --release --workspace --locked -q
B=$PWD/target/release
WORK=$(mktemp -d /tmp/crac-demo.XXXXXX)
IMG=$WORK/image
PID=
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill "$PID"; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
quote() { sed 's/^/    | /'; }

echo
echo "== Shell 1: start a service that warms up for a few seconds"
echo "\$ crac run --checkpoint-to $IMG -- warmup --requests 4"
t0=$(date +%s%N)
"$B/crac" run --checkpoint-to "$IMG" -- "$B/warmup" --requests 4 >"$WORK/shell1.log" 2>&1 &
PID=$!
until grep -q "warm after" "$WORK/shell1.log"; do
  if ! kill -0 "$PID" 2>/dev/null; then
    quote <"$WORK/shell1.log"
    echo "demo: the service ended before it was warm" >&2
    exit 1
  fi
  sleep 0.02
done
cold_ms=$(ms_since "$t0")
quote <"$WORK/shell1.log"

echo
echo "== Shell 2: checkpoint it (like jcmd PID JDK.checkpoint, but it waits for the real outcome)"
echo "\$ crac checkpoint $PID"
"$B/crac" checkpoint "$PID"
wait "$PID" || true # the checkpointed process exits, as with CRaC
PID=
echo "    shell 1 now shows:"
tail -n 2 "$WORK/shell1.log" | quote

echo
echo "== Look inside the image"
echo "\$ crac inspect $IMG"
"$B/crac" inspect "$IMG" | head -n 20 | quote

for n in 1 2; do
  echo
  echo "== Restore it ($n of 2: an image can be restored many times, same PID each time)"
  echo "\$ crac restore --env CRAC_DEMO_GREETING=hello-$n $IMG"
  "$B/crac" restore --env "CRAC_DEMO_GREETING=hello-$n" "$IMG" | quote
done

echo
echo "Cold start to warm: ${cold_ms} ms. Restore to running: see \"restored in\" above."

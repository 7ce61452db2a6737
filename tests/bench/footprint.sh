#!/usr/bin/env bash
# The footprint of the peer library in a plugin's process (issue 12): the size of the C ABI
# library (release, as shipped, and stripped), and the resident memory of a process running one
# `peer::Node` (what `ffxp_node_create` runs) idle and with N peers connected and idle.
# Usage: bash tests/bench/footprint.sh [N]   (default 50; Linux: reads /proc/PID/status)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-50}
target=${CARGO_TARGET_DIR:-target}
cargo build --release -p peer-ffi --lib 2>&1 | tail -n 1
cargo build --profile bench-fast -p pb-tests --example footprint 2>&1 | tail -n 1
lib=$target/release/libffxiv_p2p_peer_v1.so
work=$(mktemp -d)
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$work"; }
PIDS=()
trap cleanup EXIT
strip -o "$work/lib.so" "$lib"
echo "library: $(stat -c %s "$lib") bytes (release), $(stat -c %s "$work/lib.so") stripped"

mkfifo "$work/node.in" "$work/peers.in"
"$target/bench-fast/examples/footprint" node "$work/node" < "$work/node.in" > "$work/node.out" &
PIDS+=($!)
exec 3> "$work/node.in"
for _ in $(seq 100); do grep -q '^ready' "$work/node.out" 2>/dev/null && break; sleep 0.1; done
read -r _ addr key < <(grep '^ready' "$work/node.out")
rss() { echo >&3; local n; n=$(grep -c '^rss' "$work/node.out"); for _ in $(seq 50); do
    [ "$(grep -c '^rss' "$work/node.out")" -gt "$n" ] 2>/dev/null && break; sleep 0.1; done
    grep '^rss' "$work/node.out" | tail -n 1 | cut -d' ' -f2; }
sleep 2
idle=$(rss)
"$target/bench-fast/examples/footprint" peers "$N" "$addr" "$key" < "$work/peers.in" > "$work/peers.out" &
PIDS+=($!)
exec 4> "$work/peers.in"
for _ in $(seq 300); do grep -q '^connected' "$work/peers.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^connected' "$work/peers.out" || { echo "footprint: the peers did not connect"; exit 1; }
sleep 5
busy=$(rss)
echo "node process RSS: $idle KiB idle, $busy KiB with $N peers connected and idle ($(( (busy - idle) / N )) KiB per peer)"
exec 4>&- 3>&-
wait

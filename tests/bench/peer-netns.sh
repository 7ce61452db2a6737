#!/usr/bin/env bash
# Peers in network namespaces behind shaped links (tbf), RFC 5737 addresses, all created and
# deleted by this script. Needs root, iproute2 (ip, tc) and the kernel's sch_tbf/sch_netem.
#  1. one seeder limited to 25 Mbit/s -> one downloader; then four such seeders at once:
#     target: four give >= 3.5x one seeder's rate.
#  2. one seeder on 100 Mbit/s: target >= 90% of the link.
# (Time to first byte is measured by `cargo run -p pb-tests --example peer_ttfb`, with delaying
# proxies on loopback: this kernel has no sch_netem.)
# Usage: tests/bench/peer-netns.sh [FILE_MIB]
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/bench/peer-common.sh
MIB=${1:-48}
if [ "$(id -u)" != 0 ]; then echo "skipped: network namespaces and tc need root"; exit 0; fi
for t in ip tc bc; do command -v $t >/dev/null || apt-get install -y -qq iproute2 bc >/dev/null; done
if ! ip netns add pb-probe 2>/dev/null; then echo "skipped: cannot create network namespaces here"; exit 0; fi
ip netns del pb-probe

cargo build --profile bench-fast -p peer --bin peer
BIN=$PWD/target/bench-fast
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done
    for n in pbdl pbs1 pbs2 pbs3 pbs4; do ip netns del $n 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add pbdl
for i in 1 2 3 4; do
    ip netns add pbs$i
    ip link add pbd$i netns pbdl type veth peer name pbs$i netns pbs$i
    ip -n pbdl addr add 192.0.2.$((4*i+1))/30 dev pbd$i
    ip -n pbs$i addr add 192.0.2.$((4*i+2))/30 dev pbs$i
    ip -n pbdl link set pbd$i up
    ip -n pbs$i link set pbs$i up
    ip -n pbs$i link set lo up
done
ip -n pbdl link set lo up

shape() { # namespace device rate
    ip netns exec "$1" tc qdisc replace dev "$2" root tbf rate "$3" burst 64kb latency 200ms
}

mkdir -p "$WORK/files"
head -c $((MIB << 20)) /dev/urandom > "$WORK/files/mod.bin"
HASH=$(sha1sum "$WORK/files/mod.bin" | cut -d' ' -f1)
KEYS=()
for i in 1 2 3 4; do
    ip netns exec pbs$i "$BIN/peer" serve "$WORK/files" --identity "$WORK/s$i.key" --visibility public --listen 192.0.2.$((4*i+2)):7000 > "$WORK/s$i.log" 2>&1 &
    PIDS+=($!)
done
for i in 1 2 3 4; do
    for _ in $(seq 1 300); do grep -q "^listening" "$WORK/s$i.log" && break; sleep 0.1; done
    KEYS+=("$(awk '/^listening/ {print $6}' "$WORK/s$i.log")")
done
peer_arg() { echo "--peer 192.0.2.$((4*$1+2)):7000,${KEYS[$(($1-1))]}"; }

fetch() { # label, peer args...
    local label=$1; shift
    rm -f "$WORK/out.bin" "$WORK/out.bin.part" "$WORK/out.bin.manifest"
    local before after seeders0 seeders1 out line fetch_cpu other
    before=$(machine_busy_seconds)
    seeders0=$(pids_cpu_seconds "${PIDS[@]}")
    out=$(ip netns exec pbdl "$BIN/peer" fetch "$HASH" --out "$WORK/out.bin" --identity "$WORK/dl.key" --pins "$WORK/pins" --quiet "$@")
    after=$(machine_busy_seconds)
    seeders1=$(pids_cpu_seconds "${PIDS[@]}")
    line=$(echo "$out" | awk 'NR==1')
    fetch_cpu=$(echo "$out" | sed -nE 's/^  cpu ([0-9.]+) s.*/\1/p')
    other=$(echo "$after - $before - ($seeders1 - $seeders0) - ${fetch_cpu:-0}" | bc)
    echo "$label: $line (seeders used $(echo "$seeders1 - $seeders0" | bc) CPU s, downloader ${fetch_cpu:-?} s, other processes $other s)" >&2
    echo "$line" | sed -E 's/.*= ([0-9.]+) MB\/s.*/\1/'
}

busy_check
for i in 1 2 3 4; do shape pbs$i pbs$i 25mbit; done
one=$(fetch "1 seeder  @ 25 Mbit/s" $(peer_arg 1))
four=$(fetch "4 seeders @ 25 Mbit/s" $(peer_arg 1) $(peer_arg 2) $(peer_arg 3) $(peer_arg 4))
echo "four seeders / one seeder = $(echo "scale=2; $four / $one" | bc)x (target >= 3.5x)"
shape pbs1 pbs1 100mbit
hundred=$(fetch "1 seeder  @ 100 Mbit/s" $(peer_arg 1))
echo "one seeder on 100 Mbit/s: $(echo "scale=1; $hundred * 8 / 1" | bc)% of the link (goodput; target >= 90%)"


#!/usr/bin/env bash
# The relay on shaped links (issue 11): network namespaces on a bridge, RFC 5737 addresses, all
# created and deleted by this script; the real `pi-server` (phone book + relay) and `peer` CLI.
# UDP between the fetcher and a "relayed" seeder is dropped (nftables in the fetcher's namespace),
# so that pair has no direct path and goes through the relay; the bottleneck of every transfer
# is the seeder's uplink (tbf), relayed or not.
#  1. One seeder on a 100 Mbit/s uplink: direct, then relayed (target: relayed >= 90% of the
#     link). The relay's caps are raised for this (its defaults, 10 Mbit/s per connection and
#     20 Mbit/s in all, suit a Pi on a home uplink).
#  2. The relay's CPU per relayed GiB (pi-server's utime+stime over the relayed transfer, per
#     byte it received) beside a plain TCP forward (socat, no TLS) of as many bytes on the same
#     link.
#  3. Four seeders on 25 Mbit/s uplinks, one of them relayed, beside one seeder alone
#     (target: >= 3.5x).
# Usage: tests/bench/relay-netns.sh [FILE_MIB]   (default 64)
# Needs root, iproute2 (ip, tc), nftables, socat, python3, bc: installed when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/bench/peer-common.sh
MIB=${1:-64}
if [ "$(id -u)" != 0 ]; then echo "skipped: network namespaces, tc and nftables need root"; exit 0; fi
.ci/apt-install.sh relay-netns iproute2 nftables socat python3 bc procps
if ! ip netns add rl-probe 2>/dev/null; then echo "skipped: cannot create network namespaces here"; exit 0; fi
ip netns del rl-probe

cargo build --profile bench-fast -p peer -p pi-server --bin peer --bin pi-server
BIN=$PWD/target/bench-fast
WORK=$(mktemp -d)
PIDS=()
NSS=(rlnet rlpb rlf rls1 rls2 rls3 rls4)
cleanup() {
    for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done
    for n in "${NSS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
for n in "${NSS[@]}"; do ip netns del "$n" 2>/dev/null || true; done

# The "internet": one bridge; phone book .1, fetcher .2, seeders .11-.14.
ip netns add rlnet
ip -n rlnet link add br0 type bridge
ip -n rlnet link set br0 up
plug() { # namespace address
    ip netns add "$1"
    ip link add "p-$1" netns rlnet type veth peer name eth0 netns "$1"
    ip -n rlnet link set "p-$1" master br0
    ip -n rlnet link set "p-$1" up
    ip -n "$1" addr add "$2/24" dev eth0
    ip -n "$1" link set eth0 up
    ip -n "$1" link set lo up
}
plug rlpb 198.51.100.1
plug rlf 198.51.100.2
for i in 1 2 3 4; do plug "rls$i" "198.51.100.1$i"; done
shape() { # namespace rate: the namespace's uplink
    ip netns exec "$1" tc qdisc replace dev eth0 root tbf rate "$2" burst 64kb latency 200ms
}
relay_only() { # seeder index: no UDP between the fetcher and that seeder
    ip netns exec rlf nft -f - <<EOF
table inet relaybench {
    chain out { type filter hook output priority 0; ip daddr 198.51.100.1$1 meta l4proto udp drop; }
    chain in { type filter hook input priority 0; ip saddr 198.51.100.1$1 meta l4proto udp drop; }
}
EOF
}
open_all() { ip netns exec rlf nft delete table inet relaybench 2>/dev/null || true; }

ip netns exec rlpb "$BIN/pi-server" --listen 198.51.100.1:8080 --relay-listen 198.51.100.1:443 \
    --relay-rate 0 --relay-rate-total 0 --metrics-public true --snapshot "$WORK/pb.snapshot" --log-level warn \
    > "$WORK/pb.log" 2>&1 &
PB_PID=$!
PIDS+=("$PB_PID")
PB=http://198.51.100.1:8080
for _ in $(seq 100); do
    ip netns exec rlf python3 tests/natlab/natlab.py http-ok "$PB/api/health" --timeout 1 2>/dev/null && break
    sleep 0.1
done

seeder_name() { echo "Seed Er$(echo "$1" | tr 1234 abcd)@World"; }  # names hold letters only
mkdir -p "$WORK/files"
head -c $((MIB << 20)) /dev/urandom > "$WORK/files/mod.bin"
HASH=$(sha1sum "$WORK/files/mod.bin" | cut -d' ' -f1)
BYTES=$((MIB << 20))
for i in 1 2 3 4; do
    ip netns exec "rls$i" "$BIN/peer" serve "$WORK/files" --identity "$WORK/s$i.key" --visibility public \
        --pins "$WORK/s$i.pins" --listen "198.51.100.1$i:7000" --phonebook "$PB" \
        --name "$(seeder_name "$i")" --no-portmap > "$WORK/s$i.log" 2>&1 &
    PIDS+=($!)
done
for i in 1 2 3 4; do
    for _ in $(seq 300); do grep -q "^candidates" "$WORK/s$i.log" && break; sleep 0.1; done
    grep -q "^candidates" "$WORK/s$i.log" || { echo "seeder $i did not start:"; cat "$WORK/s$i.log"; exit 1; }
done
sleep 1

relay_in() {
    ip netns exec rlf python3 - "$PB/metrics" <<'EOF'
import sys, urllib.request
for line in urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().splitlines():
    if line.startswith('phonebook_relay_bytes_total{direction="in"} '):
        print(line.split()[1])
EOF
}
pb_cpu() { pids_cpu_seconds "$PB_PID"; }
RUN=0
fetch() { # label, seeder indexes...: prints MB/s; the paths taken go to $WORK/last.log
    local label=$1; shift
    local args=() i
    for i in "$@"; do args+=(--player "$(seeder_name "$i")"); done
    RUN=$((RUN + 1))
    local out=$WORK/out-$RUN.bin t0 t1
    t0=$(date +%s.%N)
    ip netns exec rlf "$BIN/peer" fetch "$HASH" --out "$out" --phonebook "$PB" --no-portmap \
        --identity "$WORK/f.key" --pins "$WORK/f.pins" --quiet "${args[@]}" > "$WORK/last.log" 2>&1 \
        || { echo "$label: fetch failed:"; cat "$WORK/last.log"; exit 1; }
    t1=$(date +%s.%N)
    [ "$(sha1sum "$out" | cut -d' ' -f1)" = "$HASH" ] || { echo "$label: hash mismatch"; exit 1; }
    rm -f "$out"
    echo "$t1 - $t0" | bc -l
}
paths() { grep '^path:' "$WORK/last.log" | awk '{print $(NF-2)}' | sort | uniq -c | tr -s ' \n' ' '; }
# The longest time to connect among the last fetch's sources, in seconds.
connect_s() { grep '^path:' "$WORK/last.log" | awk '$(NF-1) > m {m = $(NF-1)} END {print m / 1000}'; }
mbps() { echo "scale=1; $BYTES / ($1) / 1000000" | bc -l; }
link_pct() { echo "scale=1; $1 * 100 / $2" | bc -l; }
row() { # label, elapsed s, connect s, link MB/s, paths
    local whole after
    whole=$(mbps "$2"); after=$(mbps "$2 - $3")
    printf '%-26s %6.2f s  %5s MB/s (%5s %% of the link) | after connect (%.2f s): %5s MB/s (%5s %%)  paths: %s\n' \
        "$1" "$2" "$whole" "$(link_pct "$whole" "$4")" "$3" "$after" "$(link_pct "$after" "$4")" "$5"
}

busy_check
echo
echo "== 1. one seeder, 100 Mbit/s uplink, $MIB MiB (link = 12.5 MB/s)"
shape rls1 100mbit
open_all
direct=$(fetch "direct" 1); dpaths=$(paths); dconn=$(connect_s)
relay_only 1
in0=$(relay_in); cpu0=$(pb_cpu)
relayed=$(fetch "relayed" 1); rpaths=$(paths); rconn=$(connect_s)
in1=$(relay_in); cpu1=$(pb_cpu)
open_all
case $rpaths in *relayed*) ;; *) echo "the relayed fetch did not go through the relay: $rpaths"; exit 1 ;; esac
row "direct" "$direct" "$dconn" 12.5 "$dpaths"
row "relayed" "$relayed" "$rconn" 12.5 "$rpaths"
relay_bytes=$((in1 - in0))
relay_cpu=$(echo "$cpu1 - $cpu0" | bc -l)

echo
echo "== 2. CPU per GiB: the relay (TLS, pi-server) vs a plain TCP forward (socat), same link"
ip netns exec rlf socat -u TCP-LISTEN:9001,reuseaddr - > /dev/null &
SINK=$!
ip netns exec rlpb python3 -c '
import resource, subprocess
subprocess.run(["socat", "TCP-LISTEN:9000,reuseaddr", "TCP:198.51.100.2:9001"], check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(r.ru_utime + r.ru_stime)' > "$WORK/fwd.cpu" &
FWD=$!
sleep 0.5
t0=$(date +%s.%N)
ip netns exec rls1 sh -c "head -c $relay_bytes /dev/zero | socat -u - TCP:198.51.100.1:9000"
wait "$FWD" "$SINK"
t1=$(date +%s.%N)
fwd_cpu=$(cat "$WORK/fwd.cpu")
fwd_rate=$(echo "scale=1; $relay_bytes / ($t1 - $t0) / 1000000" | bc)
gib=$(echo "$relay_bytes / 1073741824" | bc -l)
relay_per=$(echo "$relay_cpu / $gib" | bc -l)
fwd_per=$(echo "$fwd_cpu / $gib" | bc -l)
printf '%-28s %12s bytes  %7.3f CPU s  %6.1f CPU s per GiB\n' "relay (pi-server, TLS)" "$relay_bytes" "$relay_cpu" "$relay_per"
printf '%-28s %12s bytes  %7.3f CPU s  %6.1f CPU s per GiB  (%s MB/s)\n' "plain TCP forward (socat)" "$relay_bytes" "$fwd_cpu" "$fwd_per" "$fwd_rate"
printf 'relay / plain forward: %.1fx the CPU per byte\n' "$(echo "$relay_per / $fwd_per" | bc -l)"

echo
echo "== 3. four seeders on 25 Mbit/s uplinks, seeder 4 relayed, vs one seeder alone"
for i in 1 2 3 4; do shape "rls$i" 25mbit; done
one=$(fetch "one seeder" 1); oconn=$(connect_s); opaths=$(paths)
relay_only 4
four=$(fetch "four seeders" 1 2 3 4); fpaths=$(paths); fconn=$(connect_s)
open_all
case $fpaths in *relayed*) ;; *) echo "seeder 4 did not go through the relay: $fpaths"; exit 1 ;; esac
row "one seeder" "$one" "$oconn" 3.125 "$opaths"
row "four, one of them relayed" "$four" "$fconn" 12.5 "$fpaths"
printf 'four / one: %.2fx (whole fetch), %.2fx (after connect)\n' "$(echo "$one / $four" | bc -l)" \
    "$(echo "($one - $oconn) / ($four - $fconn)" | bc -l)"

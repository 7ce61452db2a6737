#!/usr/bin/env bash
# Short side-by-side reruns of two phone-book measurements that are noisy on a shared 2-core VM
# (the full report is tests/bench/phonebook.sh). Server on core 0, pb-load on core 1.
#
#   bash tests/bench/phonebook-reruns.sh lookups [ROUNDS]
#       reference then pi-server, alternating, ROUNDS times (3): lookups at 64 and 512
#       keep-alive connections, 100k entries, 5 s each; prints server CPU per lookup.
#   bash tests/bench/phonebook-reruns.sh register-friends [ROUNDS]
#       pi-server only: server CPU per registration while pb-load prefills 30k entries with
#       0, 16 and 64 friend keys (whole-process CPU minus the short timed lookup phase).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
mode=${1:-}
rounds=${2:-3}
[[ $mode == lookups || $mode == register-friends ]] || {
    sed -n '2,11p' "$0"
    exit 2
}
REF_SERVER=${REF_SERVER:-}
for c in "$root/../shared/anchors/node-phonebook/server.js" /work/shared/anchors/node-phonebook/server.js; do
    [[ -z $REF_SERVER && -f $c ]] && REF_SERVER=$c
done
cargo build -q --release -p pi-server -p pb-tests
bin=$root/target/release
port=$((36000 + RANDOM % 2000))
tck=$(getconf CLK_TCK)
pid=
trap '[[ -n $pid ]] && kill $pid 2>/dev/null; true' EXIT

start() { # reference|pi-server [pi-server flags...]
    local kind=$1
    shift
    port=$((port + 1))
    if [[ $kind == reference ]]; then
        [[ -f $REF_SERVER ]] || { echo "reference server.js not found (set REF_SERVER)" >&2; exit 1; }
        PORT=$port HOST=127.0.0.1 RATE_LIMIT=0 taskset -c 0 node "$REF_SERVER" >/dev/null 2>&1 &
    else
        # One load client on 127.0.0.1: rate limits and per-address quotas off.
        taskset -c 0 "$bin/pi-server" --listen "127.0.0.1:$port" --rate-ip 0 --rate-key 0 \
            --max-records-per-address 50000000 --max-friend-keys-per-address 100000000 \
            --max-friend-keys-per-key 100000000 --log-level warn "$@" >/dev/null 2>&1 &
    fi
    pid=$!
    for _ in $(seq 50); do
        curl -sf "http://127.0.0.1:$port/api/health" >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "server did not start" >&2
    exit 1
}
stop() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; }
load() { # server pb-load-args...
    local server=$1
    shift
    taskset -c 1 "$bin/pb-load" --url "http://127.0.0.1:$port" --target "$server" --server-pid "$pid" --json "$@"
}

if [[ $mode == lookups ]]; then
    for round in $(seq "$rounds"); do
        for s in reference pi-server; do
            start "$s" --capacity 200000 --max-connections 4096
            for c in 64 512; do
                j=$(load "$s" --scenario lookup --connections "$c" --entries 100000 --duration 5 --warmup 1)
                node -e 'const r = JSON.parse(process.argv[1]);
                    console.log(`round ${process.argv[2]} ${process.argv[3]} ${process.argv[4]} conn: ` +
                        `${r.server_cpu_us_per_req.toFixed(2)} us/lookup, ${r.requests_per_s.toFixed(0)}/s, ` +
                        `p99 ${(r.latency.p99_us / 1000).toFixed(2)} ms, others ${r.others_cpu_s} CPU s`)' \
                    "$j" "$round" "$s" "$c"
            done
            stop
        done
    done
else
    n=30000
    for round in $(seq "$rounds"); do
        for f in 0 16 64; do
            start pi-server --capacity 100000 --friend-keys-total 3000000
            t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
            extra=()
            [[ $f -gt 0 ]] && extra=(--friends "$f")
            j=$(load pi-server --scenario lookup --connections 64 --entries $n --duration 200ms --warmup 0 "${extra[@]}")
            t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
            node -e 'const [j, t1, t0, tck, n, f, round] = process.argv.slice(1); const r = JSON.parse(j);
                const total = (t1 - t0) / tck * 1e6, timed = r.requests * r.server_cpu_us_per_req;
                console.log(`round ${round} friends ${f}: ${((total - timed) / n).toFixed(1)} us of server CPU per registration`)' \
                "$j" "$t1" "$t0" "$tck" "$n" "$f" "$round"
            stop
        done
    done
fi

#!/usr/bin/env bash
# Side-by-side benchmark of the phone book (issue 2, "Performance"): the reference Node server
# of the original plan and pi-server, back to back on the same load, the server pinned to one
# core and the load generator (pb-load, one thread) to the other.
#
# Run with, from the workspace root, on a quiet machine (about 8 minutes):
#     bash tests/bench/phonebook.sh
# It prints a Markdown report and writes it to tests/bench/results-<date>.md.
#
# Knobs (environment): ENTRIES (100000) DURATION (10) WARMUP (2) REG_DURATION (5) IDLE (10000)
#   OPEN_RATE (requests/s of the open-loop run at 512 connections, 40000)
#   RSS_SIZES ("10000 100000 1000000") SERVER_CORE (0) LOAD_CORE (1) RETRIES (2)
#   REF_SERVER (path of the reference server.js) OUT (report file) SKIP_WRK=1 SKIP_RSS=1
#   QUIET_WAIT (seconds to wait for a quiet machine before each run, 120)
#   PI_SERVER (a pi-server binary to use instead of building the workspace's)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
ENTRIES=${ENTRIES:-100000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
REG_DURATION=${REG_DURATION:-5}
IDLE=${IDLE:-10000}
OPEN_RATE=${OPEN_RATE:-40000}
RSS_SIZES=${RSS_SIZES:-"10000 100000 1000000"}
SERVER_CORE=${SERVER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
RETRIES=${RETRIES:-2}
QUIET_WAIT=${QUIET_WAIT:-120}
REF_SERVER=${REF_SERVER:-}
if [[ -z $REF_SERVER ]]; then
    for c in "$root/../shared/anchors/node-phonebook/server.js" /work/shared/anchors/node-phonebook/server.js; do
        [[ -f $c ]] && REF_SERVER=$c && break
    done
fi
OUT=${OUT:-$root/tests/bench/results-$(date -u +%Y-%m-%d).md}
# A fresh port range per run: a port left in TIME_WAIT by the previous run cannot be bound by
# a server that does not set SO_REUSEADDR.
PORT_BASE=${PORT_BASE:-$((20000 + RANDOM % 10000))}

say() { echo "phonebook.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

# --- What it needs --------------------------------------------------------------------------
[[ -f $REF_SERVER ]] || die "reference server.js not found (set REF_SERVER)"
command -v taskset >/dev/null || { apt-get update -qq && apt-get install -y --no-install-recommends util-linux; }
command -v node >/dev/null || { apt-get update -qq && apt-get install -y --no-install-recommends nodejs; }
have_wrk=0
if [[ ${SKIP_WRK:-0} != 1 ]]; then
    if ! command -v wrk >/dev/null; then
        say "installing wrk (optional cross-check)"
        { apt-get install -y --no-install-recommends wrk >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 && apt-get install -y --no-install-recommends wrk >/dev/null 2>&1; }; } ||
            say "wrk unavailable: skipping the cross-check"
    fi
    command -v wrk >/dev/null && have_wrk=1
fi
[[ $(nproc) -ge 2 ]] || say "warning: fewer than 2 cores; server and load will share a core"

# Thousands of connections: raise the open-files limit (inherited by the servers).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(( $(ulimit -n) >= IDLE + 2000 )) || say "warning: open-files limit $(ulimit -n) is low for $IDLE idle connections"

bin=$(cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')/release
if [[ -n ${PI_SERVER:-} ]]; then
    say "building pb-load (release); pi-server is $PI_SERVER"
    cargo build --release -q -p pb-tests
else
    say "building pb-load and pi-server (release)"
    cargo build --release -q -p pb-tests -p pi-server
    PI_SERVER=$bin/pi-server
fi
[[ -x $PI_SERVER && -x $bin/pb-load ]] || die "binaries missing in $bin"

pi_help=$("$PI_SERVER" --help 2>&1 || true)
pi_flags=(--rate-ip 0 --rate-key 0)
has_flag() { grep -q -- "--$1\b" <<<"$pi_help"; }
has_flag max-connections && pi_flags+=(--max-connections $((IDLE + 4096)))
has_flag idle-timeout && pi_flags+=(--idle-timeout 600)
has_flag log-level && pi_flags+=(--log-level warn)

work=$(mktemp -d /tmp/pb-bench.XXXXXX)
results=$work/results.jsonl
server_pid=
cleanup() {
    if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT
port=$PORT_BASE

# --- Helpers ----------------------------------------------------------------------------------
cpu_busy_pct() { # busy % of the whole machine over one second
    local a b
    read -r _ u1 n1 s1 i1 w1 q1 sq1 st1 _ < /proc/stat
    sleep 1
    read -r _ u2 n2 s2 i2 w2 q2 sq2 st2 _ < /proc/stat
    a=$(( (u2+n2+s2+q2+sq2+st2) - (u1+n1+s1+q1+sq1+st1) ))
    b=$(( a + (i2+w2) - (i1+w1) ))
    echo $(( b > 0 ? 100 * a / b : 0 ))
}
wait_quiet() {
    local waited=0 busy
    while :; do
        busy=$(cpu_busy_pct)
        (( busy <= 5 )) && return 0
        if (( waited >= QUIET_WAIT )); then
            say "machine still ${busy}% busy after ${waited}s: running anyway (see 'others CPU')"
            return 0
        fi
        (( waited == 0 )) && say "machine ${busy}% busy (other work): waiting up to ${QUIET_WAIT}s"
        waited=$((waited + 1))
    done
}
wait_up() {
    for _ in $(seq 200); do
        "$bin/pb-client" --url "http://127.0.0.1:$port" health >/dev/null 2>&1 && return 0
        kill -0 "$server_pid" 2>/dev/null || die "server exited; see $work/*.log"
        sleep 0.05
    done
    die "server did not answer on port $port"
}
start() { # reference|pi-server [capacity]
    port=$((port + 1))
    if [[ $1 == reference ]]; then
        PORT=$port HOST=127.0.0.1 RATE_LIMIT=0 taskset -c "$SERVER_CORE" node "$REF_SERVER" >"$work/ref-$port.log" 2>&1 &
    else
        taskset -c "$SERVER_CORE" "$PI_SERVER" --listen "127.0.0.1:$port" --capacity "$2" "${pi_flags[@]}" \
            >"$work/pi-$port.log" 2>&1 &
    fi
    server_pid=$!
    wait_up
}
stop() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
}
run() { # label server pb-load-args...
    local label=$1 server=$2 attempt=1 json verdict
    shift 2
    while :; do
        wait_quiet
        json=$(taskset -c "$LOAD_CORE" "$bin/pb-load" --url "http://127.0.0.1:$port" --target "$server" \
            --server-pid "$server_pid" --json "$@") || die "pb-load failed: $label $server"
        echo "{\"label\":\"$label\",\"server\":\"$server\",\"attempt\":$attempt,\"run\":$json}" >>"$results"
        verdict=$(node -e '
            const r = JSON.parse(process.argv[1]);
            if (r.requests === undefined) { console.log("ok prefill " + r.entries); process.exit(0); }
            const d = r.others_cpu_s / r.seconds > 0.10;
            console.log((d ? "disturbed" : "ok") + ` ${r.requests_per_s.toFixed(0)}/s p99 ${(r.latency.p99_us/1000).toFixed(2)} ms ` +
                `${(r.server_cpu_us_per_req||0).toFixed(2)} us/req server ${(100*r.server_util).toFixed(0)}% load ${(100*r.loadgen_util).toFixed(0)}% others ${r.others_cpu_s}s`);' "$json")
        say "$label $server: $verdict"
        [[ $verdict == disturbed* && $attempt -le $RETRIES ]] || break
        attempt=$((attempt + 1))
        say "repeating the disturbed run"
    done
}
note() { node -e 'console.log(JSON.stringify({label:"note",text:process.argv[1]}))' "$1" >>"$results"; }
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wrk_run() { # label server token
    local t0 t1 outp hz
    hz=$(getconf CLK_TCK)
    t0=$(proc_ticks "$server_pid")
    outp=$(ENTRIES=$ENTRIES TOKEN=$3 taskset -c "$LOAD_CORE" wrk -t1 -c64 -d"${DURATION}s" --latency \
        -s "$root/tests/bench/lookup.lua" "http://127.0.0.1:$port" 2>&1)
    t1=$(proc_ticks "$server_pid")
    node -e '
        const [label, server, text, ticks, hz] = process.argv.slice(1);
        const n = +(/(\d+) requests in/.exec(text) || [0, 0])[1];
        const rps = +(/Requests\/sec:\s+([\d.]+)/.exec(text) || [0, 0])[1];
        const p = (q) => (new RegExp("^\\s+" + q + "%\\s+(\\S+)", "m").exec(text) || [0, "n/a"])[1];
        const non2xx = +(/Non-2xx or 3xx responses: (\d+)/.exec(text) || [0, 0])[1];
        console.log(JSON.stringify({label, server, run: {requests: undefined, wrk_requests: n, requests_per_s: rps,
            p50: p(50), p99: p(99), non2xx, server_cpu_us_per_req: n ? (ticks / hz) * 1e6 / n : null}}));' \
        "$1" "$2" "$outp" "$((t1 - t0))" "$hz" >>"$results"
    say "$1 $2: $(grep -E 'Requests/sec|Non-2xx' <<<"$outp" | tr -s ' ' | tr '\n' ' ')"
}

# --- The runs ---------------------------------------------------------------------------------
node -e 'console.log(JSON.stringify({label:"meta", date:new Date().toISOString().slice(0,16).replace("T"," ")+" UTC",
    host:require("os").hostname(), commit:process.argv[1], cpu:process.argv[2], server_core:+process.argv[3],
    load_core:+process.argv[4], entries:+process.argv[5], duration:+process.argv[6], warmup:+process.argv[7],
    node:process.version, command:process.argv[8]}))' \
    "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') x $(nproc)" \
    "$SERVER_CORE" "$LOAD_CORE" "$ENTRIES" "$DURATION" "$WARMUP" \
    "ENTRIES=$ENTRIES DURATION=$DURATION bash tests/bench/phonebook.sh" >"$results"

say "bare Ed25519 verify loop on core $SERVER_CORE"
wait_quiet
vb=$(taskset -c "$SERVER_CORE" "$bin/pb-verify-bench" --seconds 3 --json)
echo "{\"label\":\"verify-bench\",\"server\":\"-\",\"run\":$vb}" >>"$results"

common=(--entries "$ENTRIES" --duration "$DURATION" --warmup "$WARMUP")
# Capacity for the prefill, the requesters and the fresh registrations of the register run.
pi_capacity=$((ENTRIES + 2000000))
for server in reference pi-server; do
    say "=== $server ==="
    start "$server" "$pi_capacity"
    run lookup-64 "$server" --scenario lookup --connections 64 "${common[@]}"
    run lookup-512 "$server" --scenario lookup --connections 512 "${common[@]}"
    run lookup-512-open "$server" --scenario lookup --connections 512 --rate "$OPEN_RATE" "${common[@]}"
    run health "$server" --scenario health --connections 64 --duration "$DURATION" --warmup "$WARMUP"
    run mix "$server" --scenario mix --connections 64 "${common[@]}"
    if [[ $server == pi-server ]]; then
        run lookup-batch "$server" --scenario lookup-batch --batch 32 --connections 64 "${common[@]}"
    fi
    run idle "$server" --scenario idle --idle "$IDLE" --connections 64 "${common[@]}"
    if [[ $have_wrk == 1 ]]; then
        token=
        if [[ $server == pi-server ]]; then
            token=$("$bin/pb-client" --url "http://127.0.0.1:$port" register --name "Wrk Asker@Gilgamesh" \
                --seed 7777777777777777777777777777777777777777777777777777777777777777 --port 9 |
                node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).token))')
        fi
        wait_quiet
        wrk_run wrk-lookup-64 "$server" "$token"
    fi
    # Last: it adds fresh names to the table.
    run register "$server" --scenario register --connections 64 --duration "$REG_DURATION" --warmup 1
    stop
done

if [[ ${SKIP_RSS:-0} != 1 ]]; then
    for n in $RSS_SIZES; do
        for server in reference pi-server; do
            say "=== RSS of $server with $n entries ==="
            start "$server" "$n"
            run "rss-$n" "$server" --scenario prefill --entries "$n" --prefill always --prefill-connections 64
            stop
        done
    done
fi
[[ $have_wrk == 1 ]] || note "wrk was not available: no cross-check."
note "pi-server binary: $PI_SERVER ($("$PI_SERVER" --version 2>&1 | head -1))${PI_SERVER_NOTE:+; $PI_SERVER_NOTE}."
note "pi-server flags: --capacity N ${pi_flags[*]} (plus --listen); reference: RATE_LIMIT=0 node server.js."

node "$root/tests/bench/report.js" "$results" >"$OUT"
cp "$results" "${OUT%.md}.jsonl"
cat "$OUT"
say "report written to $OUT (raw runs: ${OUT%.md}.jsonl)"

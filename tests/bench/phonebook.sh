#!/usr/bin/env bash
# Side-by-side benchmark of the phone book (issue 2, "Performance"): the reference Node server
# of the original plan and pi-server, back to back on the same load, the server pinned to one
# core and the load generator (pb-load, one thread) to the other; nginx answering a fixed
# GET /api/health beside them as the ceiling of one HTTP/1.1 request.
#
# Run with, from the workspace root, on a quiet machine (about 12 minutes):
#     bash tests/bench/phonebook.sh
# It prints a Markdown report and writes it to tests/bench/results-<date>.md.
#
# Knobs (environment): ENTRIES (100000) DURATION (10) WARMUP (2) REG_DURATION (5) IDLE (10000)
#   OPEN_RATE (requests/s of the open-loop row and target at 512 connections, 40000; added to
#     OPEN_RATES if missing) OPEN_RATES (open-loop sweep at 512 connections, "20000 40000 60000
#     80000"; a server's higher rates are skipped once it achieved < 90 % of the offered rate)
#   FRIENDS (friend keys per entry of the friends-only lookup runs, "16 64"; "" skips them)
#   FRIENDS_ENTRIES (entries of those runs, ENTRIES) SKIP_NGINX=1 NGINX (path of nginx)
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
OPEN_RATES=${OPEN_RATES:-"20000 40000 60000 80000"}
FRIENDS=${FRIENDS-"16 64"}
FRIENDS_ENTRIES=${FRIENDS_ENTRIES:-$ENTRIES}
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
have_nginx=0
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
if [[ ${SKIP_NGINX:-0} == 1 ]]; then
    nginx_why="SKIP_NGINX=1"
elif [[ -x $NGINX ]]; then
    have_nginx=1
elif [[ $(id -u) == 0 ]]; then
    say "installing nginx-light (the fixed-response ceiling)"
    { apt-get install -y --no-install-recommends nginx-light >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 && apt-get install -y --no-install-recommends nginx-light >/dev/null 2>&1; }; } || true
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    [[ -x $NGINX ]] && have_nginx=1 || nginx_why="nginx could not be installed (apt-get install nginx-light failed)"
else
    nginx_why="nginx is not installed and this is not root (install nginx-light, or set NGINX)"
fi
[[ $have_nginx == 1 ]] || say "skipping the nginx fixed-response ceiling: $nginx_why"
# The open-loop rates, ascending, with OPEN_RATE among them.
open_rates=$(printf '%s\n' $OPEN_RATES "$OPEN_RATE" | sort -n -u | tr '\n' ' ')
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
# Every load client registers from 127.0.0.1: lift the per-address quotas (issue 9).
has_flag max-records-per-address && pi_flags+=(--max-records-per-address 50000000
    --max-friend-keys-per-address 100000000 --max-friend-keys-per-key 100000000)

work=$(mktemp -d /tmp/pb-bench.XXXXXX)
results=$work/results.jsonl
server_pid=
measure_pid=
last_json=
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
nginx_conf() { # the fixed-response server: one worker, keep-alive for the whole run, no log
    mkdir -p "$work/nginx"
    cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile $((IDLE + 8192));
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events {
    worker_connections $((IDLE + 4096));
}
http {
    access_log off;
    keepalive_requests 1000000000;
    keepalive_timeout 600;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    server {
        listen 127.0.0.1:$port;
        location = /api/health {
            default_type application/json;
            return 200 '{"status":"ok"}';
        }
        location / {
            return 404;
        }
    }
}
CONF
}
start() { # reference|nginx|pi-server [capacity [more pi-server flags...]]
    local kind=$1
    shift
    port=$((port + 1))
    case $kind in
    reference)
        PORT=$port HOST=127.0.0.1 RATE_LIMIT=0 taskset -c "$SERVER_CORE" node "$REF_SERVER" >"$work/ref-$port.log" 2>&1 &
        ;;
    nginx)
        nginx_conf
        taskset -c "$SERVER_CORE" "$NGINX" -p "$work/nginx/" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" \
            -g 'daemon off;' >"$work/nginx-$port.log" 2>&1 &
        ;;
    *)
        local capacity=$1
        shift
        taskset -c "$SERVER_CORE" "$PI_SERVER" --listen "127.0.0.1:$port" --capacity "$capacity" "${pi_flags[@]}" "$@" \
            >"$work/pi-$port.log" 2>&1 &
        ;;
    esac
    server_pid=$!
    measure_pid=$server_pid
    wait_up
    if [[ $kind == nginx ]]; then
        # CPU is measured on the one worker, not the master (which only waits).
        measure_pid=$(cat "/proc/$server_pid/task/$server_pid/children" 2>/dev/null || pgrep -P "$server_pid")
        measure_pid=${measure_pid%% *}
        [[ -n $measure_pid && -d /proc/$measure_pid ]] || die "no nginx worker under master $server_pid"
    fi
}
stop() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
    measure_pid=
}
run() { # label server pb-load-args...
    local label=$1 server=$2 attempt=1 json verdict
    shift 2
    while :; do
        wait_quiet
        json=$(taskset -c "$LOAD_CORE" "$bin/pb-load" --url "http://127.0.0.1:$port" --target "$server" \
            --server-pid "$measure_pid" --json "$@") || die "pb-load failed: $label $server"
        last_json=$json
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
skip() { # label server why: a run not made, shown in the report
    node -e 'console.log(JSON.stringify({label:process.argv[1],server:process.argv[2],skipped:process.argv[3]}))' \
        "$1" "$2" "$3" >>"$results"
    say "$1 $2: skipped ($3)"
}
sweep() { # server scenario pb-load-args...: the open loop at 512 connections, rates ascending
    local server=$1 scenario=$2 r pct capped=
    shift 2
    for r in $open_rates; do
        if [[ -n $capped ]]; then
            skip "open-512-$r" "$server" "$capped"
            continue
        fi
        run "open-512-$r" "$server" --scenario "$scenario" --connections 512 --rate "$r" "$@"
        pct=$(node -e 'const r = JSON.parse(process.argv[1]); console.log(Math.floor(100 * r.requests_per_s / r.rate_target))' "$last_json")
        (( pct >= 90 )) || capped="it achieved only $pct % of $r/s"
    done
}
signature_counters() { # prints "checked batches" from pi-server's /metrics (loopback may read it)
    node -e '
        require("http").get(process.argv[1], (res) => {
            let s = "";
            res.on("data", (d) => (s += d)).on("end", () => {
                const g = (n) => (new RegExp("^" + n + " (\\d+)", "m").exec(s) || [0, "null"])[1];
                console.log(g("phonebook_signatures_checked_total") + " " + g("phonebook_signature_batches_total"));
            });
        }).on("error", () => console.log("null null"));' "http://127.0.0.1:$port/metrics"
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
    node:process.version, command:process.argv[8], open_rate:+process.argv[9],
    open_rates:process.argv[10].trim().split(/\s+/).map(Number), friends_entries:+process.argv[11],
    nginx:process.argv[12]}))' \
    "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') x $(nproc)" \
    "$SERVER_CORE" "$LOAD_CORE" "$ENTRIES" "$DURATION" "$WARMUP" \
    "ENTRIES=$ENTRIES DURATION=$DURATION OPEN_RATES=\"$OPEN_RATES\" FRIENDS=\"$FRIENDS\" bash tests/bench/phonebook.sh" \
    "$OPEN_RATE" "$open_rates" "$FRIENDS_ENTRIES" \
    "$([[ $have_nginx == 1 ]] && "$NGINX" -v 2>&1 | head -1 | sed 's/^nginx version: //' || echo "")" >"$results"

say "bare Ed25519 verify loop on core $SERVER_CORE"
wait_quiet
vb=$(taskset -c "$SERVER_CORE" "$bin/pb-verify-bench" --seconds 3 --json)
echo "{\"label\":\"verify-bench\",\"server\":\"-\",\"run\":$vb}" >>"$results"
say "bare Ed25519 batch verify loop (64 per batch) on core $SERVER_CORE"
wait_quiet
vb=$(taskset -c "$SERVER_CORE" "$bin/pb-verify-bench" --seconds 3 --batch 64 --json)
echo "{\"label\":\"verify-bench-batch\",\"server\":\"-\",\"run\":$vb}" >>"$results"

common=(--entries "$ENTRIES" --duration "$DURATION" --warmup "$WARMUP")
timing=(--duration "$DURATION" --warmup "$WARMUP")
if [[ $have_nginx == 1 ]]; then
    say "=== nginx fixed response (the ceiling of one HTTP/1.1 request per read) ==="
    start nginx
    run health nginx --scenario health --connections 64 "${timing[@]}"
    run health-512 nginx --scenario health --connections 512 "${timing[@]}"
    sweep nginx health "${timing[@]}"
    stop
fi
# Capacity for the prefill, the requesters and the fresh registrations of the register run.
pi_capacity=$((ENTRIES + 2000000))
for server in reference pi-server; do
    say "=== $server ==="
    start "$server" "$pi_capacity"
    run lookup-64 "$server" --scenario lookup --connections 64 "${common[@]}"
    run lookup-512 "$server" --scenario lookup --connections 512 "${common[@]}"
    sweep "$server" lookup "${common[@]}"
    run health "$server" --scenario health --connections 64 "${timing[@]}"
    run health-512 "$server" --scenario health --connections 512 "${timing[@]}"
    run mix "$server" --scenario mix --connections 64 "${common[@]}"
    if [[ $server == pi-server ]]; then
        run lookup-batch "$server" --scenario lookup-batch --batch 32 --connections 64 "${common[@]}"
    fi
    run idle "$server" --scenario idle --idle "$IDLE" --connections 64 "${common[@]}"
    if [[ $have_wrk == 1 ]]; then
        token=
        if [[ $server == pi-server ]]; then
            token=$(PB_SEED=7777777777777777777777777777777777777777777777777777777777777777 \
                "$bin/pb-client" --url "http://127.0.0.1:$port" register --name "Wrk Asker@Gilgamesh" --port 9 |
                node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).token))')
        fi
        wait_quiet
        wrk_run wrk-lookup-64 "$server" "$token"
    fi
    # Last: it adds fresh names to the table.
    [[ $server == pi-server ]] && read -r sig0 batch0 < <(signature_counters)
    run register "$server" --scenario register --connections 64 --duration "$REG_DURATION" --warmup 1
    if [[ $server == pi-server ]]; then
        read -r sig1 batch1 < <(signature_counters)
        node -e '
            const [c0, b0, c1, b1] = process.argv.slice(1).map((v) => (v === "null" ? null : +v));
            const ok = ![c0, b0, c1, b1].includes(null);
            console.log(JSON.stringify({label: "signature-batches", server: "pi-server", run: ok ?
                {checked: c1 - c0, batches: b1 - b0, mean_batch: b1 > b0 ? (c1 - c0) / (b1 - b0) : null} :
                {checked: null, batches: null, mean_batch: null}}));' "$sig0" "$batch0" "$sig1" "$batch1" >>"$results"
        say "signature batches over the register run: $((sig1 - sig0)) signatures in $((batch1 - batch0)) batches" || true
    fi
    stop
done

# Friends-only lookups (pi-server only: the reference has no visibility). Each entry lists N
# keys, the last one a requester's; a fresh server per N with a friend-key pool large enough
# for every entry (FRIENDS_ENTRIES x N keys: 6.4M for 100k x 64, above the 4M default).
for n in $FRIENDS; do
    say "=== pi-server friends-only lookups, $n friend keys per entry ==="
    fk=()
    has_flag friend-keys-total && fk=(--friend-keys-total $((FRIENDS_ENTRIES * n + 100000)))
    start pi-server $((FRIENDS_ENTRIES + 10000)) "${fk[@]}"
    fcommon=(--entries "$FRIENDS_ENTRIES" --connections 64 --friends "$n" "${timing[@]}")
    run "lookup-friends-$n" pi-server --scenario lookup "${fcommon[@]}"
    run "lookup-friends-$n-denied" pi-server --scenario lookup --not-friend "${fcommon[@]}"
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
[[ $have_nginx == 1 ]] && note "nginx ($NGINX): worker_processes 1 pinned to core $SERVER_CORE, access_log off, keepalive_requests 1000000000, keepalive_timeout 600, return 200 '{\"status\":\"ok\"}' (application/json) for GET /api/health; CPU measured on the worker process." ||
    note "nginx fixed-response ceiling skipped: $nginx_why."
[[ -n $FRIENDS ]] && note "friends-only runs: a fresh pi-server per N with --capacity $((FRIENDS_ENTRIES + 10000)) and --friend-keys-total FRIENDS_ENTRIES x N + 100000, $FRIENDS_ENTRIES entries, 64 connections."
note "pi-server binary: $PI_SERVER ($("$PI_SERVER" --version 2>&1 | head -1))${PI_SERVER_NOTE:+; $PI_SERVER_NOTE}."
note "pi-server flags: --capacity N ${pi_flags[*]} (plus --listen); reference: RATE_LIMIT=0 node server.js."

node "$root/tests/bench/report.js" "$results" >"$OUT"
cp "$results" "${OUT%.md}.jsonl"
cat "$OUT"
say "report written to $OUT (raw runs: ${OUT%.md}.jsonl)"

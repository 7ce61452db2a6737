#!/usr/bin/env bash
# Several phone books over Redis (issue 13): lookups/s, registrations/s and server CPU per
# request, side by side in one run, for
#   memory   one pi-server with its in-memory table (no Redis),
#   redis x1 one pi-server over Redis,
#   redis x2 two pi-servers over one Redis, the load split between them (one pb-load each),
#   node     the reference phone book of the plan (../shared/anchors/node-phonebook/server.js).
# The servers and redis-server share core SERVER_CORE, the load generators (pb-load) core
# LOAD_CORE. "CPU us/req" is the CPU of every server process (pi-servers, redis-server, node)
# during the timed phase, from /proc/PID/stat, divided by the requests answered: on 2 cores the
# request rates are bounded by the one server core, so compare CPU per request.
#
# Run with, from the workspace root, on a quiet machine (about 3 minutes):
#     bash tests/bench/redis.sh
# It prints a Markdown report and writes it to tests/bench/results-redis-<date>.md (raw runs
# beside it as .jsonl).
#
# Knobs (environment): ENTRIES (20000) DURATION (8) CONNECTIONS (64) APPENDFSYNC (always, as
#   recommended; everysec to see what fsync costs) SERVER_CORE (0) LOAD_CORE (1) OUT
#   REF_SERVER (path of server.js)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
ENTRIES=${ENTRIES:-20000}
DURATION=${DURATION:-8}
CONNECTIONS=${CONNECTIONS:-64}
APPENDFSYNC=${APPENDFSYNC:-always}
SERVER_CORE=${SERVER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
OUT=${OUT:-$root/tests/bench/results-redis-$(date -u +%Y-%m-%d).md}
REF_SERVER=${REF_SERVER:-}
for c in "$root/../shared/anchors/node-phonebook/server.js" /work/shared/anchors/node-phonebook/server.js; do
    [[ -z $REF_SERVER && -f $c ]] && REF_SERVER=$c
done
say() { echo "redis.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }
for t in taskset redis-server redis-cli python3 curl node; do
    command -v "$t" >/dev/null || die "$t is missing (apt-get install util-linux redis-server python3 curl nodejs)"
done
[[ -f $REF_SERVER ]] || die "reference server.js not found (set REF_SERVER)"

say "building pi-server and pb-load (release)"
cargo build --release -q -p pi-server -p pb-tests --bins
bin=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work=$(mktemp -d /tmp/pb-redis-bench.XXXXXX)
results=$work/results.jsonl
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
port=$((20000 + RANDOM % 20000))
next_port() { port=$((port + 1)); }  # not in a subshell: it must advance `port`

redis_pid=
redis_port=
start_redis() {
    next_port; redis_port=$port
    rm -rf "$work/redis"; mkdir -p "$work/redis"
    taskset -c "$SERVER_CORE" redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work/redis" \
        --appendonly yes --appendfsync "$APPENDFSYNC" --save '' >"$work/redis.log" 2>&1 &
    redis_pid=$!; pids+=("$redis_pid")
    for _ in $(seq 100); do redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && return 0; sleep 0.05; done
    die "redis-server did not start"
}
stop_all() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=(); redis_pid=
}
server_ports=(); server_pids=()
start_pi() { # [redis]
    # Room for every fresh name the register rows send (an in-memory row on a quiet core
    # sends about 25,000 a second for DURATION s; a full table would answer 503).
    next_port; local p=$port
    local extra=()
    [[ ${1:-} == redis ]] && extra=(--redis-url "redis://127.0.0.1:$redis_port/" --redis-prefix bench)
    taskset -c "$SERVER_CORE" "$bin/pi-server" --listen "127.0.0.1:$p" --udp-listen off --rate-ip 0 \
        --rate-key 0 --log-level warn --capacity $((ENTRIES * 3 + 500000)) \
        --max-records-per-address 50000000 "${extra[@]}" >>"$work/server.log" 2>&1 &
    local pid=$!; pids+=("$pid"); server_pids+=("$pid"); server_ports+=("$p")
    for _ in $(seq 200); do
        curl -sf -o /dev/null "http://127.0.0.1:$p/api/health" && return 0
        kill -0 "$pid" 2>/dev/null || die "pi-server exited: $(tail -5 "$work/server.log")"
        sleep 0.05
    done
    die "pi-server did not answer"
}
start_node() {
    next_port; local p=$port
    PORT=$p HOST=127.0.0.1 RATE_LIMIT=0 taskset -c "$SERVER_CORE" node "$REF_SERVER" >"$work/node.log" 2>&1 &
    local pid=$!; pids+=("$pid"); server_pids+=("$pid"); server_ports+=("$p")
    for _ in $(seq 200); do curl -sf -o /dev/null "http://127.0.0.1:$p/api/health" && return 0; sleep 0.05; done
    die "node did not answer"
}
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }

# run LABEL SCENARIO TARGET: one pb-load per server port, connections split, at the same time.
run() {
    local label=$1 scenario=$2 target=$3 n=${#server_ports[@]} i outs=() t0 t1 procs
    procs=("${server_pids[@]}"); [[ -n $redis_pid ]] && procs+=("$redis_pid")
    local conns=$((CONNECTIONS / n))
    # Prefill once, through the first server (the others read it from Redis).
    if [[ $scenario == lookup* ]]; then
        taskset -c "$LOAD_CORE" "$bin/pb-load" --url "http://127.0.0.1:${server_ports[0]}" --target "$target" \
            --scenario prefill --entries "$ENTRIES" --prefill auto --json >/dev/null
        for p in "${server_ports[@]:1}"; do
            for _ in $(seq 200); do
                [[ $(curl -s "http://127.0.0.1:$p/api/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["activeUsers"])') -ge $ENTRIES ]] && break
                sleep 0.05
            done
        done
    fi
    t0=$(ticks "${procs[@]}")
    local gens=()
    for i in $(seq 0 $((n - 1))); do
        taskset -c "$LOAD_CORE" "$bin/pb-load" --url "http://127.0.0.1:${server_ports[$i]}" --target "$target" \
            --scenario "$scenario" --entries "$ENTRIES" --prefill never --connections "$conns" \
            --requester-base $((i * 1000)) --duration "$DURATION" --warmup 0 --json >"$work/out.$i" &
        gens+=($!)
    done
    for g in "${gens[@]}"; do wait "$g" || die "pb-load failed ($label $scenario)"; done
    t1=$(ticks "${procs[@]}")
    python3 - "$label" "$scenario" "$((t1 - t0))" "$(getconf CLK_TCK)" "$work"/out.* >>"$results" <<'PY'
import json, sys
label, scenario, ticks, hz, *files = sys.argv[1:]
rs = [json.loads(open(f).read()) for f in files]
req = sum(r["requests"] for r in rs)
ok = sum(r["ok"] for r in rs)
secs = max(r["seconds"] for r in rs)
cpu = int(ticks) / int(hz)
print(json.dumps(dict(label=label, scenario=scenario, generators=len(rs), requests=req, ok=ok,
    unexpected=req - ok, requests_per_s=req / secs, cpu_s=cpu,
    # Whole-machine busy time less the generators, less the servers: other processes.
    others_cpu_s=max(0.0, max(r["machine_busy_s"] for r in rs) - sum(r["loadgen_cpu_s"] for r in rs) - cpu),
    cpu_us_per_req=cpu * 1e6 / req if req else None,
    p99_ms=max(r["latency"].get("p99_us", 0) for r in rs) / 1000 if all("latency" in r for r in rs) else None,
    status=[r["status"] for r in rs])))
PY
    rm -f "$work"/out.*
    say "$label $scenario: $(tail -1 "$results" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.0f/s, %.1f us CPU/req, unexpected %d" % (r["requests_per_s"], r["cpu_us_per_req"] or 0, r["unexpected"]))')"
}

for setup in memory "redis x1" "redis x2" node; do
    server_ports=(); server_pids=()
    case $setup in
        memory) start_pi ;;
        "redis x1") start_redis; start_pi redis ;;
        "redis x2") start_redis; start_pi redis; start_pi redis ;;
        node) start_node ;;
    esac
    target=pi-server; [[ $setup == node ]] && target=reference
    run "$setup" lookup "$target"
    run "$setup" register "$target"
    stop_all
done

python3 - "$results" "$OUT" "$ENTRIES" "$DURATION" "$CONNECTIONS" "$APPENDFSYNC" \
    "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') x $(nproc)" "$(redis-server --version | awk '{print $3}')" <<'PY'
import json, sys, datetime, shutil
path, out, entries, duration, conns, fsync, commit, cpu, rv = sys.argv[1:]
rows = [json.loads(l) for l in open(path)]
by = {(r["label"], r["scenario"]): r for r in rows}
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
L = [f"# Several phone books over Redis ({now})", "",
     f"Commit {commit}, {cpu}; servers and redis-server ({rv}, appendonly yes, appendfsync {fsync}) "
     f"on core 0, pb-load on core 1; {entries} prefilled players, {conns} connections in all "
     f"(split evenly between the instances), {duration} s per row. CPU = every server process "
     "(pi-servers, redis-server, node) during the row.", "",
     "| setup | scenario | requests/s | CPU us/request | unexpected answers | others CPU s |",
     "|---|---|---:|---:|---:|---:|"]
for r in rows:
    L.append(f"| {r['label']} | {r['scenario']} | {r['requests_per_s']:.0f} | "
             f"{(r['cpu_us_per_req'] or 0):.1f} | {r['unexpected']} | {r.get('others_cpu_s', 0):.1f} |")
L += ["", "Ratios against the in-memory pi-server (requests/s; CPU per request):", ""]
for s in ("lookup", "register"):
    base = by.get(("memory", s))
    for lab in ("redis x1", "redis x2", "node"):
        r = by.get((lab, s))
        if base and r and base["requests_per_s"] and base["cpu_us_per_req"]:
            L.append(f"- {s}, {lab}: x{r['requests_per_s'] / base['requests_per_s']:.2f} requests/s, "
                     f"x{r['cpu_us_per_req'] / base['cpu_us_per_req']:.2f} CPU per request")
L += ["", "`others CPU s`: CPU that other processes used during the row (a disturbed row shows it; "
      "rerun it on a quiet machine). The node reference does not check signatures or tokens (its lookups are unauthenticated, its "
      "registrations unsigned): it is the plan's baseline, not the same work."]
text = "\n".join(L) + "\n"
open(out, "w").write(text)
shutil.copy(path, out.rsplit(".", 1)[0] + ".jsonl")
print(text)
PY
say "report written to $OUT"

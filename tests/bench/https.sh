#!/usr/bin/env bash
# What HTTPS costs the phone book (issue 13): authenticated lookups over plain HTTP and over
# HTTPS (TLS 1.3, rustls/ring, an ECDSA P-256 certificate), on keep-alive connections and with a
# fresh connection per request (a full handshake each, and with session resumption), side by
# side in one run, the server pinned to one core and the client (tests/examples/https_load.rs)
# to the other. Prints a Markdown report with ratios and writes it to
# tests/bench/results-https-<date>.md (raw runs beside it as .jsonl).
#
# Run with, from the workspace root, on a quiet machine (about 2 minutes):
#     bash tests/bench/https.sh
#
# The table is prefilled once over plain HTTP (pb-load --scenario prefill) into a snapshot that
# every server of the run then loads, so all runs look up the same ENTRIES names with the same
# token. The client is a blocking thread-per-connection program (pb-load has no TLS): it, not
# the server, limits the rates of the fresh-connection rows; compare the server's CPU per
# request, measured from /proc/PID/stat around each run.
#
# Knobs (environment): ENTRIES (100000) DURATION (10) KEEPALIVE_CONNECTIONS (64)
#   FRESH_CONNECTIONS (16) SERVER_CORE (0) LOAD_CORE (1) QUIET_WAIT (60) OUT (report file)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
ENTRIES=${ENTRIES:-100000}
DURATION=${DURATION:-10}
KEEPALIVE_CONNECTIONS=${KEEPALIVE_CONNECTIONS:-64}
FRESH_CONNECTIONS=${FRESH_CONNECTIONS:-16}
SERVER_CORE=${SERVER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
QUIET_WAIT=${QUIET_WAIT:-60}
OUT=${OUT:-$root/tests/bench/results-https-$(date -u +%Y-%m-%d).md}
say() { echo "https.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

for t in taskset openssl python3 curl; do
    command -v "$t" >/dev/null || die "$t is missing (apt-get install util-linux openssl python3 curl)"
done
say "building pi-server, pb-load, pb-client and the https_load example (release)"
cargo build --release -q -p pi-server -p pb-tests --bins
cargo build --release -q -p pb-tests --example https_load
bin=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release
[[ -x $bin/pi-server && -x $bin/pb-load && -x $bin/examples/https_load ]] || die "binaries missing in $bin"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work=$(mktemp -d /tmp/pb-https-bench.XXXXXX)
results=$work/results.jsonl
server_pid=
cleanup() {
    if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
port=$((20000 + RANDOM % 20000))

# A CA and a certificate for localhost, ECDSA P-256 as Let's Encrypt issues by default for EC keys.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=bench CA" -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$work/leaf.key" -out "$work/leaf.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\n' > "$work/leaf.ext"
openssl x509 -req -in "$work/leaf.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
    -days 2 -extfile "$work/leaf.ext" -out "$work/leaf.pem" 2>/dev/null

flags=(--udp-listen off --rate-ip 0 --rate-key 0 --log-level warn --capacity $((ENTRIES + 1000))
    --max-records-per-address 50000000 --snapshot "$work/snap.bin" --snapshot-interval 3600)
start() { # http|https
    port=$((port + 1))
    local tls=()
    [[ $1 == https ]] && tls=(--tls-cert "$work/leaf.pem" --tls-key "$work/leaf.key")
    taskset -c "$SERVER_CORE" "$bin/pi-server" --listen "127.0.0.1:$port" "${flags[@]}" "${tls[@]}" \
        >>"$work/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 200); do
        curl -sf -o /dev/null --cacert "$work/ca.pem" "$1://localhost:$port/api/health" && return 0
        kill -0 "$server_pid" 2>/dev/null || die "pi-server exited: $(tail -5 "$work/server.log")"
        sleep 0.05
    done
    die "pi-server did not answer on $1://localhost:$port"
}
stop() { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
all_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
busy_pct() {
    local a b
    read -r _ u1 n1 s1 i1 w1 q1 sq1 st1 _ < /proc/stat; sleep 1
    read -r _ u2 n2 s2 i2 w2 q2 sq2 st2 _ < /proc/stat
    a=$(( (u2+n2+s2+q2+sq2+st2) - (u1+n1+s1+q1+sq1+st1) )); b=$(( a + (i2+w2) - (i1+w1) ))
    echo $(( b > 0 ? 100 * a / b : 0 ))
}
wait_quiet() {
    local waited=0 busy
    while busy=$(busy_pct); (( busy > 5 )); do
        (( waited >= QUIET_WAIT )) && { say "machine still ${busy}% busy: running anyway (see others CPU)"; return 0; }
        waited=$((waited + 1))
    done
}

say "prefilling $ENTRIES players over plain HTTP into a snapshot"
start http
taskset -c "$LOAD_CORE" "$bin/pb-load" --url "http://127.0.0.1:$port" --scenario prefill \
    --entries "$ENTRIES" --prefill always --json >/dev/null
token=$(PB_SEED=7777777777777777777777777777777777777777777777777777777777777777 \
    "$bin/pb-client" --url "http://127.0.0.1:$port" register --name "Tls Asker@Gilgamesh" --port 9 |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
stop

run() { # label transport connections extra-args...
    local label=$1 transport=$2 conns=$3 t0 t1 m0 m1 out hz
    shift 3
    hz=$(getconf CLK_TCK)
    wait_quiet
    t0=$(ticks "$server_pid"); m0=$(all_ticks)
    out=$(taskset -c "$LOAD_CORE" "$bin/examples/https_load" --url "$transport://localhost:$port" \
        --ca "$work/ca.pem" --token "$token" --entries "$ENTRIES" --connections "$conns" \
        --duration "$DURATION" "$@")
    t1=$(ticks "$server_pid"); m1=$(all_ticks)
    local resumed=null
    if [[ $transport == https ]]; then
        resumed=$(curl -s --cacert "$work/ca.pem" "https://localhost:$port/metrics" |
            awk '/^phonebook_tls_handshakes_resumed_total / {print $2}')
    fi
    python3 - "$label" "$transport" "$conns" "$out" "$((t1 - t0))" "$((m1 - m0))" "$hz" "${resumed:-null}" >>"$results" <<'PY'
import json, sys
label, transport, conns, out, st, mt, hz, resumed = sys.argv[1:]
r = json.loads(out)
server_s = int(st) / int(hz)
machine_s = int(mt) / int(hz)
r.update(label=label, transport=transport, connections=int(conns), server_cpu_s=server_s,
         server_cpu_us_per_req=(server_s * 1e6 / r["requests"]) if r["requests"] else None,
         server_util=server_s / r["seconds"],
         others_cpu_s=max(0.0, machine_s - server_s - r["client_cpu_s"]),
         resumed_total=None if resumed == "null" else int(resumed))
print(json.dumps(r))
PY
    say "$label: $(tail -1 "$results" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("%.0f/s p99 %.2f ms server %.1f us/req (%.0f%%) errors %d others %.1fs" % (r["requests_per_s"],
      r["p99_us"] / 1000, r["server_cpu_us_per_req"], 100 * r["server_util"], r["errors"], r["others_cpu_s"]))')"
}

for transport in http https; do
    say "=== $transport ==="
    start "$transport"
    run "$transport keep-alive" "$transport" "$KEEPALIVE_CONNECTIONS"
    run "$transport fresh connection" "$transport" "$FRESH_CONNECTIONS" --fresh
    if [[ $transport == https ]]; then
        run "https fresh connection, resumed session" https "$FRESH_CONNECTIONS" --fresh --resume
    fi
    stop
done

python3 - "$results" "$OUT" "$ENTRIES" "$DURATION" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') x $(nproc)" <<'PY'
import json, sys, datetime
path, out, entries, duration, commit, cpu = sys.argv[1:]
rows = [json.loads(l) for l in open(path)]
by = {r["label"]: r for r in rows}
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
L = [f"# HTTPS vs plain HTTP: lookups ({now})", "",
     f"Commit {commit}, {cpu}; server on core 0, client (tests/examples/https_load.rs) on core 1; "
     f"{entries} prefilled players, authenticated `GET /api/lookup/{{name}}`, {duration} s per row. "
     "TLS 1.3 (rustls 0.23, ring), ECDSA P-256 certificate, X25519.", "",
     "| run | connections | lookups/s | p50 ms | p99 ms | server CPU us/lookup | server busy | errors | others CPU s |",
     "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
for r in rows:
    L.append(f"| {r['label']} | {r['connections']} | {r['requests_per_s']:.0f} | {r['p50_us']/1000:.2f} | "
             f"{r['p99_us']/1000:.2f} | {r['server_cpu_us_per_req']:.1f} | {100*r['server_util']:.0f}% | "
             f"{r['errors']} | {r['others_cpu_s']:.1f} |")
def ratio(a, b, key):
    if a in by and b in by and by[b][key]:
        return by[a][key] / by[b][key]
    return float("nan")
L += ["", "Ratios (HTTPS / plain HTTP):", ""]
L.append(f"- keep-alive: server CPU per lookup x{ratio('https keep-alive', 'http keep-alive', 'server_cpu_us_per_req'):.2f}, "
         f"lookups/s x{ratio('https keep-alive', 'http keep-alive', 'requests_per_s'):.2f}")
L.append(f"- fresh connection (full handshake): server CPU per lookup x{ratio('https fresh connection', 'http fresh connection', 'server_cpu_us_per_req'):.2f}, "
         f"lookups/s x{ratio('https fresh connection', 'http fresh connection', 'requests_per_s'):.2f}")
L.append(f"- fresh connection, resumed session: server CPU per lookup x{ratio('https fresh connection, resumed session', 'http fresh connection', 'server_cpu_us_per_req'):.2f}, "
         f"lookups/s x{ratio('https fresh connection, resumed session', 'http fresh connection', 'requests_per_s'):.2f}")
k = by.get("https keep-alive"); f = by.get("https fresh connection")
if k and f:
    L.append(f"- one full handshake costs the server about {f['server_cpu_us_per_req'] - k['server_cpu_us_per_req']:.0f} us "
             f"(fresh minus keep-alive HTTPS); a core does about {1e6 / f['server_cpu_us_per_req']:.0f} fresh HTTPS lookups/s")
res = by.get("https fresh connection, resumed session")
if res and res.get("resumed_total") is not None:
    L.append(f"- resumed handshakes counted by the server (`phonebook_tls_handshakes_resumed_total`) after the resumed row: {res['resumed_total']}")
L += ["", "The client is one blocking thread per connection on one core: it limits the fresh-connection "
      "rates (its own handshake work, certificate verification included, is larger than the server's); "
      "the server's CPU per lookup is the figure to compare. `others CPU s` is CPU used by other "
      "processes during the row (a disturbed row shows it)."]
text = "\n".join(L) + "\n"
open(out, "w").write(text)
import shutil; shutil.copy(path, out.rsplit(".", 1)[0] + ".jsonl")
print(text)
PY
say "report written to $OUT"

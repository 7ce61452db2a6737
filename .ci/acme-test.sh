#!/bin/bash
# ACME against a real ACME server (issue 13): Debian's pebble issues pi-server's certificate over
# TLS-ALPN-01, validated on pi-server's own HTTPS port. Checks, in order:
#   1. pi-server (acme-domain, pebble as acme-directory, pebble's HTTPS CA as acme-ca-root) gets
#      a certificate and serves it: curl verifies it against the root pebble issued from;
#   2. a lookup over HTTPS with the `peer` CLI (--phonebook-ca = that root): one peer registers
#      (`peer serve`), another looks it up (`peer lookup`);
#   3. a forced renewal (SIGHUP) swaps the served certificate without a restart;
#   4. pebble down at renewal: the old certificate stays served, the failure shows in /metrics;
#   5. a restart with pebble still down serves the stored certificate at once.
# pebble-challtestsrv is the DNS server pebble asks (every name -> 127.0.0.1); the peer CLI
# finds the domain through a private /etc/hosts (a mount namespace, `unshare -m`), so nothing
# on the machine changes. All ports are picked free at start. Needs root (packages, unshare).
# Fails, saying why, when pebble cannot be installed or does not start. About 1 minute after
# the build.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS=(pebble openssl curl procps util-linux coreutils python3 grep)
.ci/apt-install.sh acme-test "${PKGS[@]}"
for t in pebble pebble-challtestsrv openssl curl unshare python3; do
    if ! command -v "$t" >/dev/null; then
        echo "acme-test: FAIL: $t is missing (install: ${PKGS[*]}; needs root)"
        exit 1
    fi
done
if [ "$(id -u)" != 0 ]; then
    echo "acme-test: FAIL: needs root (unshare -m for a private /etc/hosts)"
    exit 1
fi

T0=$(date +%s)
cargo build -q -p pi-server -p peer --bin pi-server --bin peer
TARGET=${CARGO_TARGET_DIR:-target}
PI=$(realpath "$TARGET/debug/pi-server")
PEER=$(realpath "$TARGET/debug/peer")
T_BUILD=$(date +%s)

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() {
    echo "acme-test: FAIL: $*"
    for f in "$WORK"/*.log; do
        [ -f "$f" ] || continue
        echo "--- $(basename "$f") (last 40 lines)"
        tail -n 40 "$f"
    done
    exit 1
}
free_port() { # $1: tcp or udp
    python3 -c "import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_STREAM if sys.argv[1]=='tcp' else socket.SOCK_DGRAM); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])" "$1"
}
# Polls "$@" every 0.2 s until it succeeds; $1 is the limit in seconds.
wait_for() {
    local limit=$1; shift
    local end=$(( $(date +%s) + limit ))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$end" ] || return 1
        sleep 0.2
    done
}

DOMAIN=pb.acme-test.example
PEBBLE_PORT=$(free_port tcp)
PEBBLE_MGMT=$(free_port tcp)
DNS_PORT=$(free_port udp)
CHALL_MGMT=$(free_port tcp)
PB_PORT=$(free_port tcp)

# pebble's own HTTPS (its API) needs a certificate: a throwaway CA made here.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=acme-test pebble CA" -keyout "$WORK/api-ca.key" -out "$WORK/api-ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$WORK/api.key" -out "$WORK/api.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$WORK/api.ext"
openssl x509 -req -in "$WORK/api.csr" -CA "$WORK/api-ca.pem" -CAkey "$WORK/api-ca.key" \
    -CAcreateserial -days 2 -extfile "$WORK/api.ext" -out "$WORK/api.pem" 2>/dev/null
cat > "$WORK/pebble.json" <<EOF
{
  "pebble": {
    "listenAddress": "127.0.0.1:$PEBBLE_PORT",
    "managementListenAddress": "127.0.0.1:$PEBBLE_MGMT",
    "certificate": "$WORK/api.pem",
    "privateKey": "$WORK/api.key",
    "httpPort": 5002,
    "tlsPort": $PB_PORT,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false
  }
}
EOF

pebble-challtestsrv -dns01 "127.0.0.1:$DNS_PORT" -defaultIPv4 127.0.0.1 -defaultIPv6 "" \
    -http01 "" -https01 "" -tlsalpn01 "" -management "127.0.0.1:$CHALL_MGMT" \
    > "$WORK/challtestsrv.log" 2>&1 &
PIDS+=($!)
start_pebble() {
    # PEBBLE_VA_NOSLEEP: validate at once (pebble otherwise waits up to 15 s per attempt).
    # Pebble still rejects 5 % of nonces (badNonce), which the client must retry.
    PEBBLE_VA_NOSLEEP=1 pebble -config "$WORK/pebble.json" -dnsserver "127.0.0.1:$DNS_PORT" \
        -strict false >> "$WORK/pebble.log" 2>&1 &
    PEBBLE_PID=$!
    PIDS+=("$PEBBLE_PID")
    wait_for 30 curl -sf --cacert "$WORK/api-ca.pem" "https://localhost:$PEBBLE_PORT/dir" ||
        fail "pebble did not start (its directory https://localhost:$PEBBLE_PORT/dir does not answer within 30 s)"
}
start_pebble
echo "acme-test: pebble on :$PEBBLE_PORT, its DNS (challtestsrv) on :$DNS_PORT, pi-server will be :$PB_PORT"

start_pi() {
    "$PI" --listen "127.0.0.1:$PB_PORT" --udp-listen off --acme-domain "$DOMAIN" \
        --acme-contact admin@acme-test.example --acme-directory "https://localhost:$PEBBLE_PORT/dir" \
        --acme-ca-root "$WORK/api-ca.pem" --acme-dir "$WORK/acme" >> "$WORK/pi-server.log" 2>&1 &
    PI_PID=$!
    PIDS+=("$PI_PID")
}
# The served certificate's SHA-256 fingerprint, trusting nothing (curl checks trust below).
served_fp() {
    openssl s_client -connect "127.0.0.1:$PB_PORT" -servername "$DOMAIN" -alpn http/1.1 \
        </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256 2>/dev/null | cut -d= -f2
}
has_fp() { [ -n "$(served_fp)" ]; }
metrics() { curl -s --cacert "$WORK/root.pem" --resolve "$DOMAIN:$PB_PORT:127.0.0.1" "https://$DOMAIN:$PB_PORT/metrics"; }

# 1. A certificate is obtained and verifies against pebble's root.
T_ISSUE0=$(date +%s)
start_pi
wait_for 60 test -s "$WORK/acme/certificate.pem" || fail "no certificate within 60 s"
wait_for 10 has_fp || fail "pi-server serves no certificate"
T_ISSUE=$(( $(date +%s) - T_ISSUE0 ))
curl -sf --cacert "$WORK/api-ca.pem" "https://localhost:$PEBBLE_MGMT/roots/0" > "$WORK/root.pem" ||
    fail "cannot fetch pebble's root"
health=$(curl -sf --cacert "$WORK/root.pem" --resolve "$DOMAIN:$PB_PORT:127.0.0.1" \
    "https://$DOMAIN:$PB_PORT/api/health") || fail "HTTPS health check against pebble's root failed"
echo "acme-test: certificate issued in ${T_ISSUE}s; health over verified HTTPS: $health"
FP1=$(served_fp)

# 2. A lookup over HTTPS with the peer CLI, the domain resolved by a private /etc/hosts.
printf '127.0.0.1 localhost %s\n' "$DOMAIN" > "$WORK/hosts"
mkdir -p "$WORK/files" "$WORK/alice" "$WORK/bob"
echo "hello over https" > "$WORK/files/a.txt"
in_ns() { unshare -m sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$WORK/hosts" "$@"; }
# For a background job: the job's process becomes unshare, then sh, then the program (one PID
# for the cleanup to kill).
in_ns_bg() { exec unshare -m sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$WORK/hosts" "$@"; }
URL="https://$DOMAIN:$PB_PORT"
PEER_PHONEBOOK_CA="$WORK/root.pem" in_ns_bg "$PEER" serve "$WORK/files" --visibility public --phonebook "$URL" \
    --name "Alice Smith@Gilgamesh" --identity "$WORK/alice/id.key" --pins "$WORK/alice/pins.txt" \
    --listen 127.0.0.1:0 --no-portmap > "$WORK/peer-serve.log" 2>&1 &
PIDS+=($!)
lookup() {
    PEER_PHONEBOOK_CA="$WORK/root.pem" in_ns "$PEER" lookup "Alice Smith@Gilgamesh" \
        --phonebook "$URL" --identity "$WORK/bob/id.key" --pins "$WORK/bob/pins.txt" \
        --listen 127.0.0.1:0 --no-portmap > "$WORK/peer-lookup.log" 2>&1
}
wait_for 30 lookup || fail "peer lookup over HTTPS failed (peer-lookup.log)"
grep -q "^Alice Smith@Gilgamesh " "$WORK/peer-lookup.log" || fail "peer lookup printed no record"
echo "acme-test: peer lookup over HTTPS found $(head -1 "$WORK/peer-lookup.log" | cut -d' ' -f1-2)"

# 3. A forced renewal (SIGHUP) swaps the certificate without a restart.
kill -HUP "$PI_PID"
swapped() { local fp; fp=$(served_fp); [ -n "$fp" ] && [ "$fp" != "$FP1" ]; }
wait_for 60 swapped || fail "SIGHUP did not swap the certificate within 60 s"
FP2=$(served_fp)
wait_for 10 lookup || fail "peer lookup after the renewal failed"
echo "acme-test: renewal swapped the certificate (${FP1:0:17}... -> ${FP2:0:17}...), lookup still works"

# 4. pebble down at renewal: the old certificate stays, the failure is in /metrics.
kill "$PEBBLE_PID"; wait "$PEBBLE_PID" 2>/dev/null || true
kill -HUP "$PI_PID"
failing() { metrics | grep -q '^phonebook_acme_failures_in_a_row [1-9]'; }
wait_for 60 failing || fail "a renewal with pebble down did not show in /metrics"
[ "$(served_fp)" = "$FP2" ] || fail "the certificate changed while pebble was down"
grep -q "renewal for $DOMAIN failed" "$WORK/pi-server.log" || fail "no warning logged for the failed renewal"
echo "acme-test: pebble down: still serving the old certificate; $(metrics | grep -E '^phonebook_(acme_failures_in_a_row|tls_certificate_expiry_days) ' | tr '\n' ' ')"

# 5. A restart with pebble down serves the stored certificate at once.
kill "$PI_PID"; wait "$PI_PID" 2>/dev/null || true
start_pi
wait_for 10 has_fp || fail "restarted pi-server serves no certificate"
[ "$(served_fp)" = "$FP2" ] || fail "restarted pi-server does not serve the stored certificate"
echo "acme-test: restart with pebble down serves the stored certificate"

echo "acme-test: PASS (build $(( T_BUILD - T0 ))s, test $(( $(date +%s) - T_BUILD ))s)"

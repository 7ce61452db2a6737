#!/usr/bin/env bash
# One peer to one peer, 1 GiB on loopback: peer protocol vs a bare quinn stream (same run,
# alternating; with two more bare runs whose receiver also SHA-1s, and also writes the file),
# then nginx over HTTPS to curl on the same file. Sides pinned to one core each.
# Usage: tests/bench/peer-loopback.sh [SIZE_MIB] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/bench/peer-common.sh
SIZE=${1:-1024}
RUNS=${2:-3}
DIR=/dev/shm
cargo build --profile bench-fast -p peer --example bench_loopback --example bench_codec
busy_check
if [ "${PEER_BENCH_NGINX_ONLY:-0}" != 1 ]; then
    taskset -c 0 target/bench-fast/examples/bench_loopback --size-mib "$SIZE" --runs "$RUNS" --dir "$DIR"
    echo
    target/bench-fast/examples/bench_codec
fi

# nginx over HTTPS to curl, same file, same pinning.
if ! command -v nginx >/dev/null || ! command -v curl >/dev/null || ! command -v openssl >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y -qq nginx-light curl openssl >/dev/null 2>&1 || apt-get install -y -qq nginx curl openssl >/dev/null
    else
        echo "nginx comparison skipped: nginx/curl/openssl missing and not root to install them"; exit 0
    fi
fi
WORK=$(mktemp -d)
chmod 755 "$WORK"  # nginx workers run as an unprivileged user
trap 'kill $(cat "$WORK/nginx.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$WORK"' EXIT
openssl req -x509 -newkey ed25519 -nodes -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 1 -subj /CN=localhost 2>/dev/null
ln -s "$DIR/peer-bench-$SIZE.bin" "$WORK/file.bin"
cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/error.log;
events { worker_connections 64; }
http {
    access_log off;
    sendfile on;
    server {
        listen 127.0.0.1:18443 ssl;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        ssl_protocols TLSv1.3;
        root $WORK;
    }
}
CONF
taskset -c 1 nginx -c "$WORK/nginx.conf" -e "$WORK/error.log"
for i in $(seq 1 50); do curl -sk -o /dev/null https://127.0.0.1:18443/ 2>/dev/null && break; sleep 0.1; done
NGINX_PIDS=$(pgrep nginx | tr '\n' ' ')
for run in $(seq 1 "$RUNS"); do
    before=$(machine_busy_seconds); n0=$(pids_cpu_seconds $NGINX_PIDS)
    out=$(taskset -c 0 curl -fsk -o /dev/null -w '%{speed_download} %{time_total}' https://127.0.0.1:18443/file.bin)
    after=$(machine_busy_seconds); n1=$(pids_cpu_seconds $NGINX_PIDS)
    set -- $out
    echo "run $((run-1)): nginx HTTPS -> curl to /dev/null $(echo "scale=1; $1/1000000" | bc) MB/s ($2 s; machine busy $(echo "$after - $before" | bc) CPU s, of which nginx $(echo "$n1 - $n0" | bc) s; the rest is curl and other processes)"
    rm -f "$DIR/peer-bench-curl.bin"
    out=$(taskset -c 0 curl -fsk -o "$DIR/peer-bench-curl.bin" -w '%{speed_download} %{time_total}' https://127.0.0.1:18443/file.bin)
    set -- $out
    echo "run $((run-1)): nginx HTTPS -> curl to a file   $(echo "scale=1; $1/1000000" | bc) MB/s ($2 s; no hash check)"
    rm -f "$DIR/peer-bench-curl.bin"
    # What a verified download from a central server costs: written and SHA-1 hashed as it
    # arrives (tee and sha1sum beside curl, all on the downloader's core).
    t0=$(date +%s.%N)
    sum=$(taskset -c 0 sh -c "curl -fsk https://127.0.0.1:18443/file.bin | tee '$DIR/peer-bench-curl.bin' | sha1sum")
    t1=$(date +%s.%N)
    want=$(cat "$DIR/peer-bench-$SIZE.sha1" 2>/dev/null || sha1sum "$DIR/peer-bench-$SIZE.bin" | tee "$DIR/peer-bench-$SIZE.sha1")
    [ "${sum%% *}" = "${want%% *}" ] || { echo "nginx -> curl: hash mismatch"; exit 1; }
    echo "run $((run-1)): nginx HTTPS -> curl to a file + SHA-1 $(echo "scale=1; $SIZE * 1048576 / ($t1 - $t0) / 1000000" | bc) MB/s ($(echo "$t1 - $t0" | bc) s; hash checked)"
    rm -f "$DIR/peer-bench-curl.bin"
done
rm -f "$DIR/peer-bench-$SIZE.sha1"

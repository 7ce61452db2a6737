#!/bin/bash
# Several phone books over one real Redis (issue 13). Installs redis-server, then runs:
#   1. pi-server's Redis integration tests (pi-server/tests/it/redis.rs: two instances, replay
#      and key conflict across instances, a token from one instance at another, kill -9 of an
#      instance and of Redis under load, a bad URL), which start their own redis-server;
#      PB_REQUIRE_REDIS=1 makes them fail instead of skipping if it were missing;
#   2. tests/tests/instances.rs: a punch request and relay sessions that reach the instance the
#      target does not keep alive with or listen on (Redis pub/sub between instances);
#   3. the whole protocol suite of pi-server (tests/it) against Redis: PB_TEST_REDIS_URL gives
#      every test server a fresh key prefix on one redis-server started here.
# The system's redis service is never started: this starts its own on a free loopback port
# with a temporary directory and kills it at the end. About 1 minute after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS=(redis-server python3)
.ci/apt-install.sh redis-test "${PKGS[@]}"
for t in redis-server redis-cli python3; do
    if ! command -v "$t" >/dev/null; then
        echo "redis-test: FAIL: $t is missing (install: ${PKGS[*]})"
        exit 1
    fi
done
T0=$(date +%s)
cargo test -q -p pi-server --test it --no-run
cargo test -q -p pb-tests --test instances --no-run
T_BUILD=$(date +%s)

WORK=$(mktemp -d)
PID=""
cleanup() {
    [ -z "$PID" ] || kill "$PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "== redis-test: integration tests (they start their own redis-server)"
PB_REQUIRE_REDIS=1 cargo test -q -p pi-server --test it redis:: -- --test-threads 2

echo "== redis-test: two instances find each other's peers (punch and relay over pub/sub)"
PB_REQUIRE_REDIS=1 cargo test -q -p pb-tests --test instances

echo "== redis-test: the protocol suite against Redis"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --dir "$WORK" --appendonly yes --save '' \
    >"$WORK/redis.log" 2>&1 &
PID=$!
for _ in $(seq 100); do
    redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
done
redis-cli -p "$PORT" ping | grep -q PONG || { echo "redis-test: FAIL: redis-server did not start"; cat "$WORK/redis.log"; exit 1; }
PB_REQUIRE_REDIS=1 PB_TEST_REDIS_URL="redis://127.0.0.1:$PORT/" cargo test -q -p pi-server --test it
KEYS=$(redis-cli -p "$PORT" dbsize)
[ "$KEYS" -gt 0 ] || { echo "redis-test: FAIL: the suite wrote nothing to Redis"; exit 1; }
T_END=$(date +%s)
echo "redis-test: PASS (build $((T_BUILD - T0)) s, tests $((T_END - T_BUILD)) s, $KEYS keys written by the suite)"

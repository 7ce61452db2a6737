#!/bin/bash
# Checks systemd/pi-server.service offline: `systemd-analyze verify` must print nothing (it exits 0
# even on typos, so any output is a failure) and `systemd-analyze security` must score <= 2.0.
# Needs: systemd (for systemd-analyze, >= 250 for --offline), installed when run as root; root is
# not needed otherwise. About 2 s.
set -euo pipefail
cd "$(dirname "$0")/.."
THRESHOLD=${THRESHOLD:-2.0}
# systemd 252 (Debian 12) takes the threshold in tenths (0-100); newer ones also accept "2.0".
threshold_tenths=$(awk -v t="$THRESHOLD" 'BEGIN { printf "%d", t * 10 + 0.5 }')

.ci/apt-install.sh systemd-test systemd coreutils mawk grep sed
if ! command -v systemd-analyze >/dev/null; then
    echo "systemd-test: SKIP: systemd-analyze is missing and cannot be installed (not root)"
    exit 0
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# An offline root holding the unit, its environment file and an executable at the ExecStart path
# (verify checks that it exists). Use the real binary when one was built.
install -D -m 0644 systemd/pi-server.service "$root/etc/systemd/system/pi-server.service"
install -D -m 0644 systemd/pi-server.env "$root/etc/pi-server/pi-server.env"
bin=""
for b in target/aarch64-unknown-linux-musl/release/pi-server target/release/pi-server target/debug/pi-server; do
    [ -x "$b" ] && { bin=$b; break; }
done
if [ -n "$bin" ]; then
    install -D -m 0755 "$bin" "$root/usr/local/bin/pi-server"
else
    install -D -m 0755 /dev/null "$root/usr/local/bin/pi-server"
fi
# Units the service refers to (After=/Wants=) must exist in the root too, or verify complains.
# The host's own units serve (sysinit.target, basic.target, ...).
mkdir -p "$root/usr/lib/systemd"
cp -a "$(readlink -f /usr/lib/systemd/system)" "$root/usr/lib/systemd/system"

fail=0
echo "== systemd-analyze verify ($(systemd-analyze --version | head -1))"
out=$(systemd-analyze verify --root="$root" /etc/systemd/system/pi-server.service 2>&1) || fail=1
if [ -n "$out" ]; then
    printf '%s\n' "$out"
    echo "systemd-test: FAIL: systemd-analyze verify printed the lines above"
    fail=1
else
    echo "verify: clean"
fi

echo "== systemd-analyze security --offline=yes --threshold=$THRESHOLD"
sec=$(systemd-analyze security --offline=yes --root="$root" --threshold="$threshold_tenths" \
      --no-pager pi-server.service 2>&1) && rc=0 || rc=$?
printf '%s\n' "$sec" | grep -E '^(✗|→ )|Overall exposure' || printf '%s\n' "$sec"
score=$(printf '%s\n' "$sec" | sed -n 's/.*Overall exposure level for pi-server.service: \([0-9.]*\).*/\1/p')
echo "security score: ${score:-unknown} (threshold $THRESHOLD)"
if [ "$rc" != 0 ] || [ -z "$score" ] || ! awk -v s="$score" -v t="$THRESHOLD" 'BEGIN { exit !(s <= t) }'; then
    echo "systemd-test: FAIL: security exposure above $THRESHOLD (exit $rc)"
    fail=1
fi

if [ "$fail" = 0 ]; then
    echo "systemd-test: 2 passed, 0 failed"
else
    echo "systemd-test: FAIL"
fi
exit "$fail"

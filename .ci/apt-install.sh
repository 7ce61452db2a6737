#!/bin/bash
# Installs an explicit package list with apt, unconditionally (apt is idempotent):
#   .ci/apt-install.sh WHO PACKAGE...
# WHO names the caller in messages. Every script of CI calls this with the complete list of the
# packages whose programs it runs, never only when `command -v` misses a tool: a tool that is
# present may come from a package that a later install removes (a newer qemu-utils from backports
# is removed by Debian 12's qemu-system-arm, for instance).
# - --no-install-recommends: what a script needs is in its list; --no-upgrade: a package that is
#   already installed stays at its version (only what a new package depends on is upgraded).
# - apt-get update once per run (APT_UPDATED=1 in the environment skips it).
# - Broken packages (`apt-get check` fails) are repaired first with `apt-get install -f`.
# - What apt would remove is printed before it does so; the install's output is printed on error.
# - Afterwards every listed package must be installed, or this fails naming the ones that are not.
# Not root, or no apt-get: installs nothing and reports which listed packages are missing
# (exit 0: the caller decides whether it can run without them).
set -euo pipefail
who=$1; shift
[ $# -gt 0 ] || exit 0
missing() {
    local p out=""
    for p in "$@"; do
        dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q ' installed$' || out="$out $p"
    done
    printf '%s' "$out"
}
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    m=$(command -v dpkg-query >/dev/null && missing "$@" || echo " (unknown: no dpkg)")
    [ -z "$m" ] || echo "$who: not root or no apt-get, not installing; missing packages:$m"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
run() { # run CMD...: quietly, printing the output if it fails
    if ! "$@" >"$log" 2>&1; then
        echo "$who: FAIL: $* exited non-zero:"; tail -n 40 "$log"; exit 1
    fi
}
if [ "${APT_UPDATED:-0}" != 1 ]; then
    run apt-get update -q
fi
# An interrupted dpkg run or broken dependencies make every later install fail: repair first.
run dpkg --configure -a
if ! apt-get check -q >"$log" 2>&1; then
    echo "$who: apt reports broken packages, running apt-get install -f first:"; tail -n 10 "$log"
    run apt-get install -y -q -f --no-install-recommends
fi
opts=(-y -q --no-install-recommends --no-upgrade)
run apt-get install -s "${opts[@]}" "$@"
new=$(grep -c '^Inst ' "$log" || true)
grep '^Remv ' "$log" | sed "s/^Remv /$who: note: apt removes /; s/\$/ (it conflicts with the list)/" || true
if [ "$new" -gt 0 ]; then
    t=$(date +%s)
    run apt-get install "${opts[@]}" "$@"
    echo "$who: installed $new packages in $(( $(date +%s) - t )) s"
fi
m=$(missing "$@")
[ -z "$m" ] || { echo "$who: FAIL: not installed after apt-get install:$m"; exit 1; }
echo "$who: packages ok ($# listed: $*)"

#!/bin/bash
# Cross-compiles for the Raspberry Pi without Docker (.cargo/config.toml) and runs the test suites
# of phonebook-proto, pi-server and peer under qemu-user, once as a Cortex-A72 (Pi 4) and once as a
# Cortex-A76 (Pi 5), so that an instruction one of them lacks is caught. Also builds the static
# musl pi-server that the SD-card image ships and runs it under both CPU models.
# Installs what it needs when run as root (CI: fresh Debian 12). See cross/README.md.
# CROSS_TEST_PROFILE=release|dev (default dev: see the timing note in cross/README.md).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
PROFILE=${CROSS_TEST_PROFILE:-dev}
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }

# Cross gcc (linker and C compiler for ring), aarch64 glibc, qemu-user and binfmt (tests that
# start their own binary), file (checks the static binary), procps (kill(1), which tests use).
.ci/apt-install.sh cross-test gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static \
    binfmt-support file mount coreutils grep procps
[ "$(id -u)" != 0 ] || export APT_UPDATED=1
for t in aarch64-linux-gnu-gcc /usr/aarch64-linux-gnu/include/stdio.h qemu-aarch64-static file; do
    [ -e "$t" ] || command -v "$t" >/dev/null \
        || { echo "cross-test: FAIL: $t is missing (run as root to install it)"; exit 1; }
done
step "rustup target add aarch64-unknown-linux-gnu aarch64-unknown-linux-musl"
if ! out=$(rustup target add aarch64-unknown-linux-gnu aarch64-unknown-linux-musl 2>&1); then
    printf '%s\n' "$out"; echo "cross-test: FAIL: rustup could not add the aarch64 targets"; exit 1
fi

# Tests that re-run their own binary as a child process (e.g. pi-server's kill -9 snapshot test)
# start an aarch64 executable directly: that needs binfmt_misc for aarch64 (qemu-user-static's
# entry, flag F) and QEMU_LD_PREFIX so that emulated gnu binaries find their loader and libc.
export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    if [ "$(id -u)" = 0 ]; then
        [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || true
        update-binfmts --enable qemu-aarch64 || true
    fi
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] \
        || echo "cross-test: note: no binfmt_misc for aarch64 (not root?): tests that spawn their own binary will fail"
fi

fail=0; pass=0
step "cargo build --release --target aarch64-unknown-linux-musl -p pi-server"
cargo build --locked --release --target aarch64-unknown-linux-musl -p pi-server
BIN=$TARGET_DIR/aarch64-unknown-linux-musl/release/pi-server
file -L "$BIN"
if file -L "$BIN" | grep -q 'ARM aarch64.*statically linked'; then pass=$((pass + 1)); else echo "FAIL: not a static aarch64 binary"; fail=$((fail + 1)); fi
ls -l "$BIN"

step "cargo test --no-run --target aarch64-unknown-linux-gnu ($PROFILE)"
PKGS=(-p pi-server -p phonebook-proto -p peer)
cargo test --locked --profile "$PROFILE" --target aarch64-unknown-linux-gnu "${PKGS[@]}" --no-run

times=""
for cpu in cortex-a72 cortex-a76; do
    if [ -x "$BIN" ] && grep -q -- '--print-config' <(QEMU_CPU=$cpu qemu-aarch64-static "$BIN" --help 2>&1 || true); then
        if QEMU_CPU=$cpu qemu-aarch64-static "$BIN" --print-config >/dev/null; then
            echo "ok: static pi-server --print-config runs on $cpu"; pass=$((pass + 1))
        else
            echo "FAIL: static pi-server --print-config on $cpu"; fail=$((fail + 1))
        fi
    else
        echo "skip: pi-server has no --print-config yet, not run on $cpu"
    fi
    step "cargo test under qemu-user, QEMU_CPU=$cpu"
    ts=$(date +%s)
    # PB_SLOW_TESTS=0: tests that move hundreds of MiB skip themselves under emulation.
    # PB_TIMEOUT_SCALE=10: tests with a deliberate timeout give emulation room.
    # PB_NO_NETNS_TESTS: the miniupnpd lab (network namespaces, lease timers of seconds) runs
    # natively in the test step; under emulation its timers would be the thing tested.
    if QEMU_CPU=$cpu PB_SLOW_TESTS=0 PB_TIMEOUT_SCALE=10 PB_NO_NETNS_TESTS=1 cargo test --locked --profile "$PROFILE" \
            --target aarch64-unknown-linux-gnu "${PKGS[@]}"; then
        pass=$((pass + 1))
    else
        echo "FAIL: tests under QEMU_CPU=$cpu"; fail=$((fail + 1))
    fi
    times="$times $cpu $(( $(date +%s) - ts )) s;"
done
echo "test run times:$times total $(( $(date +%s) - t0 )) s"
echo "cross-test: $pass passed, $fail failed"
[ "$fail" = 0 ]

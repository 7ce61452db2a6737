#!/bin/bash
# Builds the SD-card image (image/build.sh) and boots it in qemu-system-aarch64 (virt machine,
# Cortex-A76, the image's own kernel and initrd read out of its root file system), then checks
# from the host, through user-mode port forwarding to 127.0.0.1:
#   /api/health answers; the boot-partition phonebook.conf took effect (port, ttl, capacity);
#   a signed register + lookup round trip (pb-client); pi-server runs as a dynamic user with
#   seccomp, no_new_privs and no capabilities; first boot (hostname, SSH key, host keys, root
#   grown, root locked); the registrations survive a service restart and a reboot (snapshot);
#   and once more on a 16 KiB-page kernel (Debian trixie linux-image-arm64-16k): /api/health.
# Needs root (mmdebstrap, binfmt); installs its packages (.ci/apt-install.sh). About 15-19 minutes
# on 2 cores (1,105 s in a fresh run: README.md, CI).
# IMAGE_TEST_REBOOT=0 skips the reboot (saves about 1.5 minutes; the restart still tests the snapshot).
# IMAGE_TEST_REUSE=1 reuses image/out and image/work from an earlier build (development only).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
T=$REPO/image/work/test
IMG=$REPO/image/out/pi-server-phonebook.img
pass=0; fail=0; skip=0
ok()   { pass=$((pass + 1)); echo "ok   - $*"; }
bad()  { fail=$((fail + 1)); echo "FAIL - $*"; }
skip() { skip=$((skip + 1)); echo "skip - $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }

if [ "$(id -u)" != 0 ]; then
    echo "image-test: SKIP: needs root (mmdebstrap --mode=root, chroot, binfmt_misc)"
    echo "image-test: 0 passed, 0 failed, 1 skipped"
    exit 0
fi
# Everything this script and image/build.sh run (build.sh installs its own list as well):
# qemu-system-arm (the boot; no qemu-img, no ipxe-qemu ROMs needed), openssh-client, curl,
# mtools/e2fsprogs/fdisk (edit and read the image without mounting it), python3, the cross gcc.
.ci/apt-install.sh image-test qemu-system-arm openssh-client curl mtools e2fsprogs fdisk python3 \
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross procps coreutils
export APT_UPDATED=1
for t in qemu-system-aarch64 ssh ssh-keygen curl mcopy mtype debugfs sfdisk python3 aarch64-linux-gnu-gcc; do
    command -v "$t" >/dev/null || { echo "image-test: FAIL: $t is missing after installing"; exit 1; }
done

# --- Build --------------------------------------------------------------------------------------
if [ "${IMAGE_TEST_REUSE:-0}" = 1 ] && [ -f "$IMG" ] && [ -f image/work/kernel-16k/vmlinuz ]; then
    step "reusing $IMG"
else
    if ! out=$(rustup target add aarch64-unknown-linux-musl 2>&1); then
        printf '%s\n' "$out"; echo "image-test: FAIL: rustup could not add aarch64-unknown-linux-musl"; exit 1
    fi
    step "cargo build pi-server (release, aarch64-unknown-linux-musl)"
    cargo build --release --locked --target aarch64-unknown-linux-musl -p pi-server
    step "image/build.sh"
    tb=$(date +%s)
    image/build.sh --bin "$TARGET_DIR/aarch64-unknown-linux-musl/release/pi-server" --no-xz --test-kernel-16k
    echo "image build: $(( $(date +%s) - tb )) s"
fi
PBC=${PB_CLIENT:-}   # PB_CLIENT=path uses a pb-client built elsewhere
if [ -z "$PBC" ] && cargo metadata --no-deps --format-version 1 2>/dev/null | grep -q '"name":"pb-client"'; then
    step "cargo build pb-client (host)"
    cargo build --locked -p pb-tests --bin pb-client
    PBC=$TARGET_DIR/debug/pb-client
fi

# --- A test copy of the image, edited like a hobbyist would ---------------------------------------
rm -rf "$T" && mkdir -p "$T"
cp --sparse=always "$IMG" "$T/disk.img"
BOOT_OFF=$(( $(sfdisk -J "$T/disk.img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["partitiontable"]["partitions"][0]["start"])') * 512 ))
ROOT_OFF=$(( $(sfdisk -J "$T/disk.img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["partitiontable"]["partitions"][1]["start"])') * 512 ))
ROOT_MIB=$(( $(sfdisk -J "$T/disk.img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["partitiontable"]["partitions"][1]["size"])') / 2048 ))
FAT="$T/disk.img@@$BOOT_OFF"
GUEST_PORT=8123
TTL=1234
CAPACITY=5000
# CRLF on purpose: written on Windows.
printf '# edited by image-test\r\nlisten = [::]:%s\r\nttl = %s\r\ncapacity = %s\r\n' \
    "$GUEST_PORT" "$TTL" "$CAPACITY" > "$T/phonebook.conf"
printf 'pbtest\r\n' > "$T/hostname.txt"
ssh-keygen -q -t ed25519 -N '' -C image-test -f "$T/id_ed25519"
sed 's/$/\r/' "$T/id_ed25519.pub" > "$T/authorized_keys.txt"
mcopy -o -i "$FAT" "$T/phonebook.conf" "$T/hostname.txt" "$T/authorized_keys.txt" ::/
CMDLINE=$(mtype -i "$FAT" ::cmdline.txt | tr -d '\r' | tr ' ' '\n' | grep -v '^console=' | grep -v '^$' | tr '\n' ' ')
CMDLINE="$CMDLINE console=ttyAMA0"
echo "kernel command line: $CMDLINE"

# The image's own kernel and initrd, read out of its root file system (no mounts).
KVER=$(debugfs -R 'ls -p /boot' "$T/disk.img?offset=$ROOT_OFF" 2>/dev/null | tr '/' '\n' | sed -n 's/^vmlinuz-//p' | head -n 1)
debugfs -R "dump /boot/vmlinuz-$KVER $T/vmlinuz" "$T/disk.img?offset=$ROOT_OFF" 2>/dev/null
debugfs -R "dump /boot/initrd.img-$KVER $T/initrd.img" "$T/disk.img?offset=$ROOT_OFF" 2>/dev/null
[ -s "$T/vmlinuz" ] && [ -s "$T/initrd.img" ] || { echo "image-test: no kernel/initrd in the image"; exit 1; }
echo "kernel: $KVER"

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HP=$(freeport); SP=$(freeport)
URL=http://127.0.0.1:$HP
QPID=""
SSH=(ssh -q -i "$T/id_ed25519" -p "$SP" -o BatchMode=yes -o StrictHostKeyChecking=no
     -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5 admin@127.0.0.1)
stop_qemu() {
    [ -n "$QPID" ] || return 0
    if qemu_alive; then
        "${SSH[@]}" sudo systemctl poweroff >/dev/null 2>&1 || true
        for _ in $(seq 60); do qemu_alive || break; sleep 1; done
        kill "$QPID" 2>/dev/null || true
    fi
    wait "$QPID" 2>/dev/null || true
    QPID=""
}
trap stop_qemu EXIT

# boot NAME KERNEL INITRD: a fresh copy of disk.img (sparse, grown to 4 GiB: first boot grows the
# root), raw, so that no qemu-img is needed. The kernel is booted directly: the NIC needs no option
# ROM (romfile= empty; the ROMs are in ipxe-qemu, which is not installed).
boot() {
    local name=$1 kernel=$2 initrd=$3
    QNAME=$name
    rm -f "$T/$name.img"
    cp --sparse=always "$T/disk.img" "$T/$name.img"
    truncate -s 4G "$T/$name.img"
    qemu-system-aarch64 -M virt -cpu cortex-a76 -smp 2 -m 1024 \
        -kernel "$kernel" -initrd "$initrd" -append "$CMDLINE" \
        -drive "if=none,id=hd,format=raw,file=$T/$name.img" -device virtio-blk-pci,drive=hd \
        -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$HP-:$GUEST_PORT,hostfwd=tcp:127.0.0.1:$SP-:22" \
        -device virtio-net-pci,netdev=n0,romfile= -device virtio-rng-pci \
        -display none -monitor none -serial "file:$T/console-$name.log" \
        </dev/null >"$T/qemu-$name.log" 2>&1 &
    QPID=$!
    BOOT_T=$(date +%s)
}
# qemu_alive: qemu still runs (a dead child stays a zombie until waited for, so kill -0 is not enough).
qemu_alive() { [ -n "$QPID" ] && [ -n "$(ps -o stat= -p "$QPID" 2>/dev/null | grep -v '^Z')" ]; }
# qemu_died: say how qemu ended, with its own output and the console's last lines.
qemu_died() {
    local rc=0
    wait "$QPID" 2>/dev/null || rc=$?
    QPID=""
    echo "qemu exited with status $rc, $(( $(date +%s) - BOOT_T )) s after it started; its output:"
    sed 's/^/    /' "$T/qemu-$QNAME.log"
    console_tail "$QNAME"
}
# wait_health SECONDS: 0 when /api/health answers 200; 2 when qemu died (reported); 1 when time is up.
wait_health() {
    local deadline=$(( $(date +%s) + $1 ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        qemu_alive || { qemu_died; return 2; }
        if HEALTH=$(curl -fsS --max-time 3 "$URL/api/health" 2>/dev/null); then
            return 0
        fi
        sleep 2
    done
    return 1
}
wait_ssh() {
    local deadline=$(( $(date +%s) + $1 ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        qemu_alive || return 1
        "${SSH[@]}" true 2>/dev/null && return 0
        sleep 2
    done
    return 1
}
json() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$HEALTH" "$1"; }
console_tail() { echo "--- last lines of $T/console-$1.log"; tail -n 40 "$T/console-$1.log" | tr -d '\r'; echo "---"; }

# --- Boot 1: 4 KiB pages ------------------------------------------------------------------------
step "boot 1: $KVER, cortex-a76"
boot 4k "$T/vmlinuz" "$T/initrd.img"
wait_health 420 && rc=0 || rc=$?
if [ "$rc" = 0 ]; then
    BOOT4K=$(( $(date +%s) - BOOT_T ))
    ok "/api/health answers ($BOOT4K s after qemu started): $HEALTH"
elif [ "$rc" = 2 ]; then
    bad "qemu exited before /api/health answered (see above)"
    echo "image-test: $pass passed, $fail failed, $skip skipped"; exit 1
else
    bad "/api/health did not answer within 420 s (qemu still runs)"; console_tail 4k
    wait_ssh 5 && "${SSH[@]}" 'sudo journalctl -b -u pi-server -u pi-firstboot --no-pager | tail -n 30' || true
    echo "image-test: $pass passed, $fail failed, $skip skipped"; exit 1
fi
check "phonebook.conf on the boot partition took effect (port $GUEST_PORT, ttl $TTL, capacity $CAPACITY)" \
    test "$(json ttl) $(json capacity)" = "$TTL $CAPACITY"

NAME="Alice Smith@Gilgamesh"
SEED_A=$(printf '11%.0s' $(seq 32))
SEED_B=$(printf '22%.0s' $(seq 32))
if [ -n "$PBC" ]; then
    check "signed register (pb-client)" "$PBC" --url "$URL" register --name "$NAME" --seed "$SEED_A" --port 5000
    check "signed lookup (pb-client)" "$PBC" --url "$URL" lookup --name "$NAME" --seed "$SEED_B"
else
    skip "register/lookup round trip: pb-client (package pb-tests) is not in this tree yet"
fi

if wait_ssh 60; then
    ok "ssh as admin with the key from authorized_keys.txt (host keys made at first boot)"
    show=$("${SSH[@]}" systemctl show -p User,MainPID,ActiveState,DynamicUser pi-server)
    echo "$show" | sed 's/^/    /'
    PID=$(echo "$show" | sed -n 's/^MainPID=//p')
    status=$("${SSH[@]}" sudo cat "/proc/$PID/status")
    echo "$status" | grep -E '^(Uid|Gid|NoNewPrivs|Seccomp|CapEff|CapBnd):' | sed 's/^/    /'
    uid=$(echo "$status" | awk '/^Uid:/ { print $2 }')
    check "pi-server runs as a dynamic user (uid $uid in 61184-65519)" test "$uid" -ge 61184 -a "$uid" -le 65519
    check "DynamicUser=yes, active" grep -qz 'ActiveState=active.*' <<<"$show"
    check "seccomp filter applied (Seccomp: 2)" grep -q '^Seccomp:[[:space:]]*2$' <<<"$status"
    check "no_new_privs (NoNewPrivs: 1)" grep -q '^NoNewPrivs:[[:space:]]*1$' <<<"$status"
    check "no capabilities (CapEff/CapBnd 0)" test "$(grep -cE '^Cap(Eff|Bnd):[[:space:]]*0+$' <<<"$status")" = 2
    live=$("${SSH[@]}" systemd-analyze security pi-server.service 2>/dev/null | sed -n 's/.*Overall exposure level for pi-server.service: \([0-9.]*\).*/\1/p')
    check "systemd-analyze security in the guest: ${live:-?} (<= 2.0)" awk -v s="${live:-99}" 'BEGIN { exit !(s <= 2.0) }'
    check "hostname from hostname.txt" test "$("${SSH[@]}" hostname)" = pbtest
    check "root password locked" grep -q '^root L' <<<"$("${SSH[@]}" sudo passwd -S root)"
    check "admin password locked" grep -q '^admin L' <<<"$("${SSH[@]}" sudo passwd -S admin)"
    size=$("${SSH[@]}" df -m --output=size / | tail -n 1 | tr -d ' ')
    check "root file system grown at first boot ($ROOT_MIB MiB partition -> $size MiB)" test "$size" -gt $(( ROOT_MIB + 1024 ))
    check "root checked at boot (systemd-fsck-root ran, root mounted ro first)" "${SSH[@]}" systemctl is-active -q systemd-fsck-root
    check "root writable after boot" "${SSH[@]}" 'findmnt -no OPTIONS / | grep -q "^rw"'
    check "root mounted noatime" grep -q noatime <<<"$("${SSH[@]}" findmnt -no OPTIONS /)"
    check "journal in RAM only" "${SSH[@]}" 'test -d /run/log/journal && ! test -d /var/log/journal'
    check "systemd-timesyncd enabled" "${SSH[@]}" systemctl is-enabled -q systemd-timesyncd
    check "4 KiB pages" test "$("${SSH[@]}" getconf PAGESIZE)" = 4096

    step "restart pi-server (SIGTERM writes the snapshot)"
    "${SSH[@]}" sudo systemctl restart pi-server
    if [ -n "$PBC" ]; then
        check "snapshot written to /var/lib/pi-server" "${SSH[@]}" sudo test -s /var/lib/pi-server/snapshot
    fi
    if wait_health 60; then ok "health after restart: $HEALTH"; else bad "no health after restart"; fi
    if [ -n "$PBC" ]; then
        check "registration kept across a restart (activeUsers >= 1)" test "$(json activeUsers)" -ge 1
        check "lookup after restart" "$PBC" --url "$URL" lookup --name "$NAME" --seed "$SEED_B"
    fi
    if [ "${IMAGE_TEST_REBOOT:-1}" = 1 ]; then
        step "reboot"
        tr=$(date +%s)
        "${SSH[@]}" sudo systemctl reboot >/dev/null 2>&1 || true
        sleep 5
        while curl -fsS --max-time 2 "$URL/api/health" >/dev/null 2>&1; do sleep 1; done
        if wait_health 300; then
            ok "health after reboot ($(( $(date +%s) - tr )) s): $HEALTH"
            if [ -n "$PBC" ]; then
                check "registration kept across a reboot (activeUsers >= 1)" test "$(json activeUsers)" -ge 1
                check "lookup after reboot" "$PBC" --url "$URL" lookup --name "$NAME" --seed "$SEED_B"
            fi
        else
            bad "no health after reboot"; [ -z "$QPID" ] || console_tail 4k
        fi
    else
        skip "reboot (IMAGE_TEST_REBOOT=0)"
    fi
else
    bad "ssh login as admin"; console_tail 4k
fi
stop_qemu

# --- Boot 2: 16 KiB pages -----------------------------------------------------------------------
K16=$REPO/image/work/kernel-16k
step "boot 2: $(cat "$K16/version"), cortex-a76"
boot 16k "$K16/vmlinuz" "$K16/initrd.img"
wait_health 480 && rc=0 || rc=$?
if [ "$rc" = 0 ]; then
    BOOT16K=$(( $(date +%s) - BOOT_T ))
    ok "/api/health answers on the 16 KiB-page kernel ($BOOT16K s after qemu started)"
    if wait_ssh 30; then
        check "16 KiB pages" test "$("${SSH[@]}" getconf PAGESIZE)" = 16384
    else
        bad "ssh on the 16 KiB-page kernel"
    fi
elif [ "$rc" = 2 ]; then
    bad "qemu exited before /api/health answered on the 16 KiB-page kernel (see above)"
else
    bad "/api/health did not answer on the 16 KiB-page kernel within 480 s"; console_tail 16k
fi
stop_qemu

echo "boot to health: 4 KiB ${BOOT4K:-?} s, 16 KiB ${BOOT16K:-?} s; total $(( $(date +%s) - t0 )) s"
echo "image-test: $pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]

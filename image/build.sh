#!/bin/bash
# Builds a flashable SD-card image for a Raspberry Pi 3/4 (Debian trixie, arm64) running pi-server:
#   image/out/pi-server-phonebook.img, .img.xz and .sha256
# Needs root (mmdebstrap --mode=root, chroot, binfmt), no loop devices, no mounts, no Docker.
# Usage: image/build.sh [--bin PATH] [--no-xz] [--test-kernel-16k]
#   --bin PATH          the static aarch64 pi-server to ship (default: built here with cargo)
#   --no-xz             skip the .img.xz (saves about a minute; CI uses it)
#   --test-kernel-16k   also leave a 16 KiB-page kernel + initrd (trixie linux-image-arm64-16k)
#                       in image/work/kernel-16k/ for .ci/image-test.sh; not part of the image
# Environment: MIRROR (default http://deb.debian.org/debian), SUITE (default trixie),
#              OUT (default image/out), WORK (default image/work)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
SUITE=${SUITE:-trixie}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
OUT=${OUT:-$HERE/out}
WORK=${WORK:-$HERE/work}
NAME=pi-server-phonebook
BIN=""
XZ=1
K16=0
REUSE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) BIN=$2; shift 2 ;;
        --no-xz) XZ=0; shift ;;
        --test-kernel-16k) K16=1; shift ;;
        --reuse-rootfs) REUSE=1; shift ;;   # development: skip mmdebstrap, re-run customize.sh
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "build.sh: needs root (mmdebstrap --mode=root, chroot)" >&2; exit 1; }

t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }

# Host tools (Debian 12 or later), the complete list, installed every time (apt is idempotent):
# mmdebstrap with arch-test (foreign architectures) and the archive keyring; qemu-user-static and
# binfmt-support (arm64 programs in the chroot); dpkg-dev (dpkg-architecture, eatmydata hook);
# dosfstools, mtools, fdisk, e2fsprogs (the partitions); xz-utils, file, kmod (depmod).
"$REPO/.ci/apt-install.sh" build.sh mmdebstrap arch-test debian-archive-keyring gpg \
    qemu-user-static binfmt-support dpkg-dev dosfstools mtools fdisk e2fsprogs xz-utils file kmod \
    mount util-linux coreutils python3
for t in mmdebstrap arch-test qemu-aarch64-static update-binfmts dpkg-architecture mkfs.vfat mcopy \
         sfdisk mkfs.ext4 xz file depmod; do
    command -v "$t" >/dev/null || { echo "build.sh: $t is missing" >&2; exit 1; }
done

# Reusable downloads: the arm64 packages (and the 16 KiB-page test kernel) are kept in
# $CACHE/debs/SUITE-arm64 with a SHA256SUMS of their own. A rerun copies the entries whose sums
# check into the new root's apt cache (apt downloads only what is missing or changed); a missing
# or damaged cache only means downloading again. The cache is rewritten at the end with exactly
# the packages this build used. FFXIV_P2P_CI_CACHE="" disables it; rm -rf the directory clears it.
CACHE=${FFXIV_P2P_CI_CACHE-/var/cache/ffxiv-p2p-ci}
DEB_CACHE=${CACHE:+$CACHE/debs/$SUITE-arm64}

# binfmt for arm64 (the chroot runs arm64 programs through qemu-aarch64-static, flag F).
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    update-binfmts --enable qemu-aarch64
fi

# The static pi-server.
if [ -z "$BIN" ]; then
    step "building pi-server (release, aarch64-unknown-linux-musl)"
    (cd "$REPO" && cargo build --release --locked --target aarch64-unknown-linux-musl -p pi-server)
    BIN=${CARGO_TARGET_DIR:-$REPO/target}/aarch64-unknown-linux-musl/release/pi-server
fi
file -L "$BIN" | grep -q 'ARM aarch64.*statically linked' || { file -L "$BIN"; echo "build.sh: $BIN is not a static aarch64 binary" >&2; exit 1; }

ROOTFS=$WORK/rootfs
export IMAGE_DIR=$HERE BIN WORK K16 DEB_CACHE
if [ "$REUSE" = 1 ] && [ -d "$ROOTFS/usr" ]; then
    step "reusing $ROOTFS"
    [ "$K16" = 0 ] || rm -rf "$WORK/kernel-16k"
    "$HERE/customize.sh" "$ROOTFS"
    rm -f "$ROOTFS"/var/cache/apt/archives/*.deb   # mmdebstrap's cleanup does this otherwise
else
rm -rf "$WORK" && mkdir -p "$WORK" "$OUT"

# Packages: a systemd system with networkd/resolved (mDNS), timesyncd, ssh, and the Pi boot chain.
PKGS=systemd,systemd-sysv,systemd-timesyncd,systemd-resolved,udev,kmod,dbus,passwd,sudo,
PKGS+=openssh-server,e2fsprogs,dosfstools,fdisk,iproute2,iputils-ping,less,
PKGS+=linux-image-arm64,initramfs-tools,zstd,raspi-firmware
step "mmdebstrap $SUITE arm64 -> $ROOTFS${DEB_CACHE:+ (package cache $DEB_CACHE)}"
# INITRD=No: no initramfs while packages install; the customize hook builds one (MODULES=list).
INITRD=No mmdebstrap --arch=arm64 --mode=root --format=directory --variant=apt \
    --components=main,non-free-firmware \
    --hook-dir=/usr/share/mmdebstrap/hooks/eatmydata \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --include="$PKGS" \
    --skip=essential/unlink \
    --setup-hook='"$IMAGE_DIR/deb-cache.sh" in "$1"' \
    --customize-hook='"$IMAGE_DIR/customize.sh" "$1"' \
    --customize-hook='"$IMAGE_DIR/deb-cache.sh" out "$1"' \
    "$SUITE" "$ROOTFS" "$MIRROR"
fi
mkdir -p "$OUT"

step "boot partition contents"
BOOTFS=$WORK/bootfs
# customize.sh moved /boot/firmware's contents (kernel, initrd, device trees, Pi firmware) here.
for f in "$HERE"/bootfs/*; do
    sed 's/\r*$/\r/' "$f" > "$BOOTFS/$(basename "$f")"   # CRLF: Notepad-friendly
done

step "assembling $NAME.img"
BOOT_MIB=256
ROOT_USED_MIB=$(du -sm --apparent-size "$ROOTFS" | cut -f1)
ROOT_MIB=$(( (ROOT_USED_MIB * 13 / 10 + 256 + 63) / 64 * 64 ))
START_MIB=4
IMG=$OUT/$NAME.img
rm -f "$IMG" "$IMG.xz" "$OUT/$NAME.sha256"
mkfs.vfat -F 32 -s 1 -n RASPIFIRM -i 50425446 -C "$WORK/boot.part" $(( BOOT_MIB * 1024 )) >/dev/null
mcopy -s -m -i "$WORK/boot.part" "$BOOTFS"/* ::/
# Root: no orphan_file so that older e2fsck (Debian 12) can check the card too.
mkfs.ext4 -q -L RASPIROOT -U 5049524f-4f54-4653-8000-706973727672 -O ^orphan_file \
    -E root_owner=0:0 -d "$ROOTFS" "$WORK/root.part" "${ROOT_MIB}M"
truncate -s $(( (START_MIB + BOOT_MIB + ROOT_MIB) * 1024 * 1024 )) "$IMG"
sfdisk -q "$IMG" <<SFDISK
label: dos
label-id: 0x5049504e
start=${START_MIB}MiB, size=${BOOT_MIB}MiB, type=c, bootable
start=$(( START_MIB + BOOT_MIB ))MiB, type=83
SFDISK
dd if="$WORK/boot.part" of="$IMG" bs=1M seek=$START_MIB conv=notrunc,sparse status=none
dd if="$WORK/root.part" of="$IMG" bs=1M seek=$(( START_MIB + BOOT_MIB )) conv=notrunc,sparse status=none
rm -f "$WORK/boot.part" "$WORK/root.part"

if [ "$XZ" = 1 ]; then
    step "compressing"
    xz -T0 -6 -k -f "$IMG"
fi
(cd "$OUT" && sha256sum "$NAME.img" $( [ "$XZ" = 1 ] && echo "$NAME.img.xz" ) > "$NAME.sha256")
step "done"
ls -l "$OUT"
echo "image: $(du -h --apparent-size "$IMG" | cut -f1) (.img), $( [ "$XZ" = 1 ] && du -h "$IMG.xz" | cut -f1 || echo no) (.img.xz); built in $(( $(date +%s) - t0 )) s"

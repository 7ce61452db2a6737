#!/bin/bash
# mmdebstrap customize hook of image/build.sh: $1 is the arm64 root file system (a directory).
# Runs on the host; arm64 programs run in the chroot through binfmt + qemu-aarch64-static.
set -euo pipefail
R=$1
: "${IMAGE_DIR:?}" "${BIN:?}" "${WORK:?}" "${K16:=0}"
REPO=$(dirname "$IMAGE_DIR")
# /proc in the chroot (mmdebstrap mounts it for its hooks; --reuse-rootfs runs need it too):
# raspi-firmware's hooks use ischroot, which needs /proc to tell a chroot from the real thing.
if ! mountpoint -q "$R/proc"; then
    mount -t proc proc "$R/proc"
    trap 'umount "$R/proc"' EXIT
fi
in_root() { chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }

# build.sh --reuse-rootfs: the boot partition's files were moved out by an earlier run.
if [ -d "$WORK/bootfs" ] && [ -z "$(ls -A "$R/boot/firmware")" ]; then
    cp -r "$WORK/bootfs/." "$R/boot/firmware/"
fi
rm -rf "$WORK/bootfs"

# Image files (units, network, journald, sshd, initramfs module list, first-boot script).
cp -a "$IMAGE_DIR/rootfs/." "$R/"
chown -R 0:0 "$R/etc" "$R/usr/local"
chmod 0440 "$R/etc/sudoers.d/admin"

# pi-server, its unit and its (documented, all commented-out) environment file.
install -m 0755 "$BIN" "$R/usr/local/bin/pi-server"
install -m 0644 "$REPO/systemd/pi-server.service" "$R/etc/systemd/system/pi-server.service"
install -D -m 0644 "$REPO/systemd/pi-server.env" "$R/etc/pi-server/pi-server.env"

# Users: root locked, "admin" with no password (SSH key from the boot partition) and sudo.
in_root id admin >/dev/null 2>&1 || in_root useradd -m -s /bin/bash -G sudo admin
in_root passwd -l root >/dev/null
in_root passwd -l admin >/dev/null

# Identity made at first boot: machine-id (systemd), SSH host keys (pi-firstboot), hostname.
: > "$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id" "$R"/etc/ssh/ssh_host_*
echo phonebook > "$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tphonebook\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$R/etc/hosts"

# Mounts: noatime everywhere, /tmp in RAM (default), the boot partition world-readable
# (pi-server's dynamic user reads phonebook.conf) but writable by root only.
cat > "$R/etc/fstab" <<'FSTAB'
# <file system>   <mount point>   <type> <options>                                    <dump> <pass>
LABEL=RASPIROOT   /               ext4   rw,noatime,commit=60,errors=remount-ro       0      1
LABEL=RASPIFIRM   /boot/firmware  vfat   rw,noatime,fmask=0133,dmask=0022,flush       0      2
FSTAB

# Journal in RAM only (journald.conf.d/volatile.conf): without /var/log/journal it never writes
# to the card.
rm -rf "$R/var/log/journal"

# Services.
in_root systemctl enable pi-server.service pi-firstboot.service systemd-networkd.service \
    systemd-resolved.service systemd-timesyncd.service ssh.service >/dev/null 2>&1
in_root systemctl disable apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer >/dev/null 2>&1 || true
ln -sf /run/systemd/resolve/stub-resolv.conf "$R/etc/resolv.conf"

# raspi-firmware writes config.txt and cmdline.txt on the boot partition from these: the root by
# label (the hook would otherwise ask the build host), serial console on the GPIO header and HDMI,
# no CMA reservation (headless; a wrong cma= can keep a Pi 4 from booting).
sed -i '/^ROOTPART=\|^CONSOLES=\|^CMA=/d' "$R/etc/default/raspi-firmware"
printf 'ROOTPART=LABEL=RASPIROOT\nCONSOLES="ttyS1,115200 tty0"\nCMA=0\n' >> "$R/etc/default/raspi-firmware"
# "ro" after the hook's "rw" (the last one wins): the initramfs mounts the root read-only, so
# systemd-fsck-root checks it (after a power loss) before systemd-remount-fs makes it writable.
echo ro > "$R/etc/default/raspi-extra-cmdline"

# One initramfs, with the module list only (see etc/initramfs-tools/conf.d/pi-server-image.conf).
KVER=$(ls "$R/usr/lib/modules" | sort -V | tail -n 1)

# Test-only 16 KiB-page kernel (not part of the image): unpack the package without running its
# hooks (they would put it on the boot partition) and build its initramfs alongside the image's
# own (mkinitramfs under emulation uses one core; the machine has two).
if [ "$K16" = 1 ]; then
    dir=$WORK/kernel-16k
    mkdir -p "$dir" "$R/tmp/k16"
    pkg=$(in_root apt-cache depends linux-image-arm64-16k | sed -n 's/.*Depends: \(linux-image-[0-9].*-16k\)$/\1/p' | head -n 1)
    echo "customize: test kernel $pkg"; t=$(date +%s)
    # Reuse the package from the cache (deb-cache.sh put it into the apt cache), else download it.
    deb=$(in_root sh -c "cd /tmp/k16 && apt-get download --print-uris $pkg" | awk '{ print $2 }')
    [ -n "$deb" ] || { echo "customize: apt-get download --print-uris $pkg printed nothing" >&2; exit 1; }
    [ ! -f "$R/var/cache/apt/archives/$deb" ] || cp "$R/var/cache/apt/archives/$deb" "$R/tmp/k16/"
    [ -f "$R/tmp/k16/$deb" ] && echo "customize: $deb from the package cache" \
        || in_root sh -c "cd /tmp/k16 && apt-get download -q $pkg" >/dev/null
    cp "$R/tmp/k16/$deb" "$R/var/cache/apt/archives/" && echo "$deb" >> "$WORK/deb-cache-extra"
    dpkg-deb -x "$R"/tmp/k16/*.deb "$R/tmp/k16/x"
    K16VER=$(ls "$R/tmp/k16/x/usr/lib/modules")
    mv "$R/tmp/k16/x/usr/lib/modules/$K16VER" "$R/usr/lib/modules/"
    depmod -b "$R" "$K16VER"    # the host's depmod reads arm64 modules too, and fast
    echo "customize: downloaded and unpacked in $(( $(date +%s) - t )) s"
    in_root mkinitramfs -o "/tmp/k16/initrd.img" "$K16VER" &
    k16pid=$!
fi

echo "customize: kernel $KVER, building its initramfs (MODULES=list)"
t=$(date +%s)
if [ -e "$R/boot/initrd.img-$KVER" ]; then
    in_root update-initramfs -u -k "$KVER"
else
    in_root update-initramfs -c -k "$KVER"
fi
echo "customize: initramfs built in $(( $(date +%s) - t )) s"

if [ "$K16" = 1 ]; then
    wait "$k16pid"
    echo "customize: 16k initramfs done $(( $(date +%s) - t )) s after the start of both"
    cp "$R/tmp/k16/x/boot/vmlinuz-$K16VER" "$dir/vmlinuz"
    cp "$R/tmp/k16/initrd.img" "$dir/initrd.img"
    echo "$K16VER" > "$dir/version"
    rm -rf "$R/usr/lib/modules/$K16VER" "$R/tmp/k16"
fi

# The boot partition's contents go to a FAT file system of their own (build.sh).
mkdir -p "$WORK/bootfs"
cp -r "$R/boot/firmware/." "$WORK/bootfs/"
find "$R/boot/firmware" -mindepth 1 -delete

# Smaller image: no apt lists, caches, docs' localisations.
rm -rf "$R"/var/lib/apt/lists/* "$R"/var/cache/apt/*.bin "$R"/var/cache/debconf/*-old \
       "$R"/var/log/*.log "$R"/var/log/apt/*

#!/bin/bash
# Puts pi-server into an official Raspberry Pi OS Lite (64-bit) image, for the Raspberry Pi 5
# (whose SD card and Ethernet Debian's own kernels do not drive yet) or any Pi that image supports.
# No root, no mounts, no loop devices: the partitions are cut out with dd, edited with debugfs -w
# (ext4 root) and mcopy (FAT boot), and put back.
#
#   image/customize-rpi-os.sh RPI-OS.img[.xz] PI-SERVER-BINARY OUTPUT.img
#
# What it adds (the same service as image/build.sh):
#   /usr/local/bin/pi-server, /etc/systemd/system/pi-server.service (enabled),
#   /etc/pi-server/pi-server.env, a drop-in that reads /boot/firmware/phonebook.conf,
#   and phonebook.conf on the FAT boot partition (CRLF, editable from any PC).
# Hostname, user, SSH key and Wi-Fi: set them in Raspberry Pi Imager ("Use custom" image, then
# "Edit settings") as for any Raspberry Pi OS image; the image then does its own first boot.
# Needs: e2fsprogs (debugfs), mtools, fdisk (sfdisk), xz-utils, python3.
set -euo pipefail
[ $# = 3 ] || { sed -n '2,10p' "$0"; exit 2; }
SRC=$1; BIN=$2; OUTIMG=$3
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
file -L "$BIN" | grep -q 'ARM aarch64.*statically linked' \
    || { echo "$BIN: not a static aarch64 binary (build the musl target)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

case "$SRC" in
    *.xz) xz -dc "$SRC" > "$OUTIMG" ;;
    *) cp --sparse=always "$SRC" "$OUTIMG" ;;
esac
part() { sfdisk -J "$OUTIMG" | python3 -c "import json,sys; p=json.load(sys.stdin)['partitiontable']['partitions'][$1]; print(p['start'], p['size'])"; }
read -r bstart bsize < <(part 0)
read -r rstart rsize < <(part 1)

# Root file system (ext4): cut out, edit, put back.
dd if="$OUTIMG" of="$tmp/root.part" bs=512 skip="$rstart" count="$rsize" conv=sparse status=none
de() { debugfs -w -R "$1" "$tmp/root.part" 2>&1 | grep -v '^debugfs ' || true; }
put() { # put SRC DEST MODE: write a file owned by root
    ! exists "$2" || de "rm $2" >/dev/null
    de "write $1 $2" >/dev/null
    de "set_inode_field $2 uid 0"; de "set_inode_field $2 gid 0"
    de "set_inode_field $2 mode 0100$3"
}
exists() { debugfs -R "stat $1" "$tmp/root.part" 2>&1 | grep -q '^Inode:'; }
# debugfs 1.47.0 corrupts the file system on "mkdir" of an existing directory: ask first.
mkd() { exists "$1" || de "mkdir $1" >/dev/null; }
mkd /usr/local/bin
mkd /etc/pi-server
mkd /etc/systemd/system/pi-server.service.d
mkd /etc/systemd/system/multi-user.target.wants
put "$BIN" /usr/local/bin/pi-server 755
put "$REPO/systemd/pi-server.service" /etc/systemd/system/pi-server.service 644
put "$REPO/systemd/pi-server.env" /etc/pi-server/pi-server.env 644
cat > "$tmp/image.conf" <<'CONF'
# Settings from phonebook.conf on the FAT boot partition (see image/README.md).
[Unit]
RequiresMountsFor=/boot/firmware

[Service]
Environment=PI_SERVER_CONFIG=/boot/firmware/phonebook.conf
CONF
put "$tmp/image.conf" /etc/systemd/system/pi-server.service.d/image.conf 644
! exists /etc/systemd/system/multi-user.target.wants/pi-server.service \
    || de "rm /etc/systemd/system/multi-user.target.wants/pi-server.service" >/dev/null
de "symlink /etc/systemd/system/multi-user.target.wants/pi-server.service /etc/systemd/system/pi-server.service"
e2fsck -fn "$tmp/root.part" >/dev/null 2>&1 || { echo "e2fsck found problems after editing" >&2; exit 1; }
dd if="$tmp/root.part" of="$OUTIMG" bs=512 seek="$rstart" conv=notrunc,sparse status=none

# Boot partition (FAT): phonebook.conf with CRLF line endings.
sed 's/\r*$/\r/' "$HERE/bootfs/phonebook.conf" > "$tmp/phonebook.conf"
sed 's/\r*$/\r/' > "$tmp/README-phonebook.txt" <<'TXT'
FFXIV P2P phone book (pi-server) on Raspberry Pi OS
===================================================

phonebook.conf   Settings of the phone book (port, TTL, ...). Edit it from any computer; it is
                 read at every start of the service. Check it from a browser:
                 http://<hostname>.local:3000/api/health
Log in with the user and SSH key you set in Raspberry Pi Imager; `journalctl -u pi-server`
shows the service's log.
TXT
mcopy -o -i "$OUTIMG@@$(( bstart * 512 ))" "$tmp/phonebook.conf" "$tmp/README-phonebook.txt" ::/

sha256sum "$OUTIMG" > "$OUTIMG.sha256"
echo "wrote $OUTIMG (flash it with Raspberry Pi Imager, \"Use custom\")"

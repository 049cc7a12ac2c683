#!/bin/bash
# Builds the test guest image: a small Debian 12 qcow2 that boots with normal firmware (SeaBIOS
# + syslinux, or OVMF + systemd-boot, from its own disk), runs cloud-init from a NoCloud or
# ConfigDrive seed, qemu-guest-agent on org.qemu.guest_agent.0, powers off on the ACPI power
# button (systemd-logind), gets DHCP on any NIC without a seed, and has openssh-server.
# Root has an empty password on the serial console (ttyS0, 115200).
#
# Everything comes from Debian packages: no loop devices, no mounts (mmdebstrap into a
# directory, mkfs.ext4 -d, a FAT ESP by mtools, sfdisk + dd into a raw file, qemu-img convert).
#
# The image is cached by a hash of these scripts as CACHEDIR/guest-HASH.qcow2: a second run
# reuses it; images of other hashes unused for 14 days are removed. Never boot the cached file
# itself: give each VM a copy-on-write overlay (qemu-img create -f qcow2 -F qcow2 -b IMAGE).
#
# usage: tests/guest-image/build.sh [-c CACHEDIR] [-f]
#   -c  cache directory (default $HOSTAGENT_GUEST_IMAGE_CACHE or /var/cache/hostagent-guest-image)
#   -f  rebuild even when the cached image exists
# Prints the image's path as the last line of stdout; progress and figures go to stderr.
# Environment: MIRROR (default: the host's /etc/apt/sources.list.d/debian.sources, else
# http://deb.debian.org/debian).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cachedir=${HOSTAGENT_GUEST_IMAGE_CACHE:-/var/cache/hostagent-guest-image}
force=
while getopts c:f o; do
	case $o in
	c) cachedir=$OPTARG ;;
	f) force=1 ;;
	*) echo "usage: $0 [-c CACHEDIR] [-f]" >&2; exit 2 ;;
	esac
done
say() { echo "guest-image: $*" >&2; }

"$here/host-tools.sh"
[ "$(id -u)" = 0 ] || { say "mmdebstrap --mode=root needs root"; exit 1; }

hash=$(cat "$here/build.sh" "$here/prune-modules.sh" "$here/guest-hook.sh" | sha256sum |
	cut -c1-16)
image=$cachedir/guest-$hash.qcow2
mkdir -p "$cachedir"
exec 9>"$cachedir/.lock"
flock 9 # a concurrent run builds the same image: wait for it and reuse the result
find "$cachedir" -maxdepth 1 -name 'guest-*.qcow2' ! -name "guest-$hash.qcow2" -mtime +14 \
	-delete 2>/dev/null || true
if [ -z "$force" ] && [ -s "$image" ]; then
	touch "$image"
	say "cached $image ($(du -m "$image" | cut -f1) MiB)"
	echo "$image"
	exit 0
fi

mirror=${MIRROR:-}
if [ -z "$mirror" ]; then
	if [ -r /etc/apt/sources.list.d/debian.sources ]; then
		mirror=/etc/apt/sources.list.d/debian.sources
	else
		mirror=http://deb.debian.org/debian
	fi
fi
work=$(mktemp -d "$cachedir/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
t0=$SECONDS

# 1. The root filesystem, as a directory.
rootfs=$work/rootfs
PKGS=linux-image-cloud-amd64,initramfs-tools,systemd-sysv,udev,dbus,qemu-guest-agent
PKGS+=,iproute2,iputils-ping,kmod,e2fsprogs,cloud-init,cloud-guest-utils,openssh-server
say "building the root filesystem from $mirror"
# merged-usr hook: otherwise apt satisfies usrmerge|usr-is-merged with usrmerge and full perl.
# MODULES=list + the listed drivers: a 6 MB initrd that still sees the seed's CD-ROM before
# cloud-init's generator looks for it. 99-default-dhcp.network sorts after cloud-init's files.
# fstab pass 0 and no e2scrub: both cost seconds on every boot under TCG.
mmdebstrap --variant=essential --mode=root --format=directory --quiet \
	--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
	--aptopt='APT::Install-Recommends "false"' \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-include=/usr/share/locale/locale.alias' \
	--dpkgopt='path-exclude=/usr/share/info/*' \
	--dpkgopt='path-exclude=/usr/share/lintian/*' \
	--include="$PKGS" \
	--essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d"; printf "MODULES=list\n" > "$1/etc/initramfs-tools/conf.d/guest.conf"' \
	--customize-hook='echo guest > "$1/etc/hostname"; printf "127.0.0.1 localhost\n127.0.1.1 guest\n" > "$1/etc/hosts"' \
	--customize-hook='printf "LABEL=guestroot / ext4 defaults,errors=remount-ro 0 0\n" > "$1/etc/fstab"' \
	--customize-hook='printf "virtio_pci\nvirtio_blk\nvirtio_scsi\nsd_mod\nata_piix\nahci\nsr_mod\n" >> "$1/etc/initramfs-tools/modules"' \
	--customize-hook="$here/prune-modules.sh \"\$1\"" \
	--customize-hook='chroot "$1" update-initramfs -u -k all' \
	--customize-hook='mkdir -p "$1/etc/systemd/network"; printf "[Match]\nType=ether\nKind=!*\n\n[Network]\nDHCP=ipv4\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n" > "$1/etc/systemd/network/99-default-dhcp.network"' \
	--customize-hook='chroot "$1" systemctl enable systemd-networkd.service' \
	--customize-hook='chroot "$1" passwd -d root' \
	--customize-hook='chroot "$1" systemctl mask -q e2scrub_reap.service e2scrub_all.timer' \
	--customize-hook="$here/guest-hook.sh \"\$1\"" \
	--customize-hook='rm -f "$1/etc/machine-id" "$1/var/lib/dbus/machine-id"; : > "$1/etc/machine-id"' \
	--customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*.log "$1"/var/cache/debconf/*-old' \
	bookworm "$rootfs" "$mirror" >&2
t1=$SECONDS

# 2. The disk: p1 a FAT16 ESP (kernel, initrd, systemd-boot for UEFI, syslinux for BIOS), p2 the
# ext4 root. mkfs.vfat -h 2048 records the partition offset so syslinux can be installed on the
# partition image before it is copied into the disk.
cmdline="root=LABEL=guestroot ro console=tty0 console=ttyS0,115200 net.ifnames=0 quiet mitigations=off"
esp_mib=48 root_mib=1024
kver=$(basename "$(ls "$rootfs"/boot/vmlinuz-* | sort -V | tail -1)" | sed 's/^vmlinuz-//')
export MTOOLS_SKIP_CHECK=1
truncate -s ${esp_mib}M "$work/esp.img"
mkfs.vfat -F 16 -n GUESTESP -h 2048 "$work/esp.img" >/dev/null
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries ::/syslinux
mcopy -i "$work/esp.img" "$rootfs/boot/vmlinuz-$kver" ::/vmlinuz
mcopy -i "$work/esp.img" "$rootfs/boot/initrd.img-$kver" ::/initrd.img
mcopy -i "$work/esp.img" /usr/lib/systemd/boot/efi/systemd-bootx64.efi ::/EFI/BOOT/BOOTX64.EFI
printf 'timeout 0\ndefault debian.conf\n' >"$work/loader.conf"
printf 'title Debian guest\nlinux /vmlinuz\ninitrd /initrd.img\noptions %s\n' "$cmdline" \
	>"$work/debian.conf"
printf 'SERIAL 0 115200\nDEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  KERNEL /vmlinuz\n  APPEND initrd=/initrd.img %s\n' \
	"$cmdline" >"$work/syslinux.cfg"
mcopy -i "$work/esp.img" "$work/loader.conf" ::/loader/loader.conf
mcopy -i "$work/esp.img" "$work/debian.conf" ::/loader/entries/debian.conf
mcopy -i "$work/esp.img" "$work/syslinux.cfg" ::/syslinux/syslinux.cfg
syslinux --install --directory /syslinux "$work/esp.img"
# The kernel and initrd live on the ESP only.
rm -f "$rootfs/boot/vmlinuz-"* "$rootfs/boot/initrd.img-"*
mkfs.ext4 -q -L guestroot -E root_owner=0:0 -d "$rootfs" "$work/root.img" ${root_mib}M
total=$((1 + esp_mib + root_mib + 1))
truncate -s ${total}M "$work/disk.raw"
sfdisk -q "$work/disk.raw" <<SF
label: dos
start=2048, size=$((esp_mib * 2048)), type=ef, bootable
start=$(((1 + esp_mib) * 2048)), size=$((root_mib * 2048)), type=83
SF
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$work/disk.raw" bs=440 count=1 conv=notrunc status=none
dd if="$work/esp.img" of="$work/disk.raw" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$work/root.img" of="$work/disk.raw" bs=1M seek=$((1 + esp_mib)) conv=notrunc,sparse \
	status=none
qemu-img convert -f raw -O qcow2 -c "$work/disk.raw" "$work/guest.qcow2"
chmod 0644 "$work/guest.qcow2"
mv -f "$work/guest.qcow2" "$image"
t2=$SECONDS
say "built $image: $(du -m "$image" | cut -f1) MiB, kernel $kver, in $((t2 - t0)) s (rootfs $((t1 - t0)) s, disk $((t2 - t1)) s)"
echo "$image"

#!/bin/sh
# mmdebstrap customize hook: keep only the kernel modules a virtio test guest needs (and their
# dependencies), drop the udev hwdb. Without this the image carries ~90 MB of unused modules.
set -eu
R="$1"
KEEP="virtio virtio_ring virtio_pci virtio_pci_legacy_dev virtio_pci_modern_dev virtio_blk
	virtio_scsi virtio_net net_failover failover virtio_console virtio_balloon virtio_rng
	virtio_input sd_mod sr_mod cdrom scsi_mod scsi_common sg ata_piix ata_generic libata ahci
	libahci isofs vfat fat nls_cp437 nls_ascii nls_utf8 nls_iso8859_1 button evdev serio_raw
	qemu_fw_cfg autofs4 configfs fuse loop dm_mod efi_pstore binfmt_misc e1000 e1000e i6300esb"
keep=$(mktemp) keepabs=$(mktemp)
trap 'rm -f "$keep" "$keepabs"' EXIT
for KD in "$R"/usr/lib/modules/*; do
	K=$(basename "$KD")
	: >"$keep"
	for m in $KEEP; do
		# modprobe prints /lib/modules/... while the merged-/usr tree is /usr/lib/modules/...
		chroot "$R" modprobe -S "$K" --show-depends "$m" 2>/dev/null |
			awk '$1=="insmod"{sub("^/lib/","/usr/lib/",$2); print $2}' >>"$keep" || true
	done
	sort -u "$keep" | sed "s#^#$R#" >"$keepabs"
	[ -s "$keepabs" ] || { echo "prune-modules: no module of $K resolved" >&2; exit 1; }
	find "$KD/kernel" -name '*.ko*' | sort | comm -23 - "$keepabs" | xargs rm -f
	find "$KD/kernel" -type d -empty -delete
	echo "prune-modules: kept $(wc -l <"$keepabs") modules for $K"
	chroot "$R" depmod -a "$K"
done
rm -rf "$R"/usr/lib/udev/hwdb.d "$R"/usr/lib/udev/hwdb.bin "$R"/etc/udev/hwdb.bin

#!/bin/bash
# Installs the host tools that build the test guest image and boot-test it, only those missing
# (idempotent; apt lists are refreshed only when an install fails on stale ones). Not part of the
# image's cache key: the image does not depend on how its tools got installed.
set -euo pipefail
pkgs=(mmdebstrap qemu-utils e2fsprogs dosfstools mtools syslinux syslinux-common fdisk
	systemd-boot-efi xorriso iputils-ping iproute2)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
		missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
[ "$(id -u)" = 0 ] || { echo "host-tools: needs root to install ${missing[*]}" >&2; exit 1; }
echo "host-tools: installing ${missing[*]}" >&2
apt_install() {
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		"${missing[@]}" >&2
}
apt_install || { apt-get update -q >&2 && apt_install; }

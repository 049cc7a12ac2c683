#!/bin/sh
# Builds the hostagent container image localhost/hostagent:VERSION from Debian packages
# (mmdebstrap, no registry needed) plus the binaries of a build directory, and imports it into
# podman. The agent and libvirt containers of the DaemonSet both run this image.
#
#   deploy/image/build-image.sh [-b BUILDDIR] [-t VERSION] [-c CACHEDIR]
#
# The package rootfs (the slow part, about a minute) is cached as CACHEDIR/rootfs-HASH.tar,
# HASH covering the package list, the suite, the mirror and the libvirt config files; a
# re-run only appends the binaries and re-imports (a few seconds).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
builddir=.
version=""
cachedir=${HOSTAGENT_IMAGE_CACHE:-/var/cache/hostagent-image}
suite=bookworm
mirror=${HOSTAGENT_IMAGE_MIRROR:-http://deb.debian.org/debian}

while getopts b:t:c:h opt; do
	case $opt in
	b) builddir=$OPTARG ;;
	t) version=$OPTARG ;;
	c) cachedir=$OPTARG ;;
	*) sed -n '2,10p' "$0"; exit 2 ;;
	esac
done
builddir=$(cd "$builddir" && pwd)

if [ -z "$version" ]; then
	version=$(sed -n 's/^#define PACKAGE_VERSION "\(.*\)"$/\1/p' "$builddir/config.h" 2>/dev/null || true)
	[ -n "$version" ] || version=dev
fi

# Runtime of hostagent and its tools, the libvirt daemon and QEMU. No Recommends: the list is
# the whole image.
packages="libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
qemu-system-x86 qemu-utils ipxe-qemu seabios
libvirt0 libkmod2 libnl-3-200 libnl-route-3-200 libsystemd0 libjansson4 libmicrohttpd12
libcurl3-gnutls libyaml-0-2 libxml2 iproute2 kmod ca-certificates procps dnsmasq-base xorriso acl"

bins=""
for b in hostagent hostctl hostexec; do
	[ -x "$builddir/$b" ] && bins="$bins $b"
done
[ -n "$bins" ] || { echo "build-image.sh: no hostagent/hostctl/hostexec in $builddir" >&2; exit 1; }
# A sanitizer build needs the sanitizer runtimes in the image too.
for b in $bins; do
	if ldd "$builddir/$b" 2>/dev/null | grep -q libasan; then
		packages="$packages libasan8 libubsan1"
		break
	fi
done
packages=$(printf '%s\n' $packages | sort -u | tr '\n' ' ')
# The user QEMU runs as (qemu.conf user/group, the agent's qemu_user): a fixed uid/gid so the
# disks it owns on host paths keep their owner across image versions. Not Debian's
# libvirt-qemu, whose uid is allocated at install time (64055 on Ubuntu hosts).
qemu_user=hostagent-qemu
qemu_uid=64107

hash=$(printf '%s|%s|%s|%s|%s\n' "$packages" "$suite" "$mirror" "$qemu_user:$qemu_uid" \
	"$(cat "$here/qemu.conf" "$here/libvirtd.conf" "$here/virtlogd.conf" \
		"$here/entry-agent.sh" "$here/entry-libvirt.sh" | sha256sum)" |
	sha256sum | cut -c1-16)
rootfs=$cachedir/rootfs-$hash.tar
mkdir -p "$cachedir"
# Each tarball is ~330 MB: one not used for 14 days (its mtime is refreshed on every use) goes.
find "$cachedir" -maxdepth 1 -name 'rootfs-*.tar' ! -name "rootfs-$hash.tar" -mtime +14 -delete 2>/dev/null || true
[ -f "$rootfs" ] && touch "$rootfs"

start=$(date +%s)
if [ ! -f "$rootfs" ] || [ ! -s "$rootfs" ]; then
	rm -rf "$rootfs" "$rootfs.tmp"
	echo "build-image.sh: building rootfs $rootfs" >&2
	# The config files and entry points go in through a hook so they are part of the cache.
	mmdebstrap --variant=minbase --mode=root --format=tar --quiet \
		--aptopt='APT::Install-Recommends "false"' \
		--dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		--include="$(echo $packages | tr ' ' ',')" \
		--customize-hook="chroot \"\$1\" groupadd -r -g $qemu_uid $qemu_user" \
		--customize-hook="chroot \"\$1\" useradd -r -u $qemu_uid -g $qemu_uid -M -d /nonexistent -s /usr/sbin/nologin -c 'QEMU of hostagent' $qemu_user" \
		--customize-hook="install -m 0644 '$here/qemu.conf' \"\$1/etc/libvirt/qemu.conf\"" \
		--customize-hook="install -m 0644 '$here/libvirtd.conf' \"\$1/etc/libvirt/libvirtd.conf\"" \
		--customize-hook="install -m 0644 '$here/virtlogd.conf' \"\$1/etc/libvirt/virtlogd.conf\"" \
		--customize-hook="install -m 0755 '$here/entry-agent.sh' \"\$1/usr/local/bin/entry-agent.sh\"" \
		--customize-hook="install -m 0755 '$here/entry-libvirt.sh' \"\$1/usr/local/bin/entry-libvirt.sh\"" \
		--customize-hook="rm -f \"\$1/etc/libvirt/qemu/networks/autostart/default.xml\"" \
		--customize-hook="rm -rf \"\$1/var/lib/apt/lists\"/* \"\$1/var/cache/apt\"/*.bin" \
		"$suite" "$rootfs.tmp" "$mirror"
	mv "$rootfs.tmp" "$rootfs"
fi
t_rootfs=$(date +%s)

# Append the binaries to a copy of the cached rootfs (an uncompressed tar: appending is cheap).
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/usr/local/sbin" "$work/usr/local/bin"
files=""
for b in $bins; do
	case $b in
	hostagent) f=usr/local/sbin/$b ;;
	*) f=usr/local/bin/$b ;;
	esac
	install -m 0755 "$builddir/$b" "$work/$f"
	files="$files ./$f"
done
cp "$rootfs" "$work/image.tar"
# Files only: the directories are in the rootfs already (a duplicate entry is refused).
tar -C "$work" --owner=0 --group=0 --no-recursion -rf "$work/image.tar" $files

podman import \
	--change 'ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'CMD=["/usr/local/bin/entry-agent.sh"]' \
	--message "hostagent $version (rootfs $hash;$bins)" \
	"$work/image.tar" "localhost/hostagent:$version" >/dev/null
end=$(date +%s)
echo "build-image.sh: localhost/hostagent:$version (rootfs $((t_rootfs - start)) s, import $((end - t_rootfs)) s,$bins)" >&2
echo "localhost/hostagent:$version"

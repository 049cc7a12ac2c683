#!/bin/sh
# Entry point of the "libvirt" container: virtlogd in the background, libvirtd in the
# foreground (its exit ends the container; the running VMs are not its children in any way
# that matters: QEMU daemonizes and lives in a host cgroup).
set -eu
mkdir -p /run/libvirt /var/lib/libvirt/qemu /var/log/libvirt/qemu /var/cache/libvirt/qemu
# Stale pid files on the host path are harmless (libvirtd locks them), but a leftover
# virtlogd socket from a killed container would make the next virtlogd refuse to start.
if ! /usr/sbin/virtlogd --version >/dev/null 2>&1; then
	echo "entry-libvirt: virtlogd missing" >&2
	exit 1
fi
/usr/sbin/virtlogd &
exec /usr/sbin/libvirtd "$@"

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

# QEMU runs as hostagent-qemu (qemu.conf user) and opens /dev/kvm itself. /dev is the host's
# (a hostPath): its kvm node is root:root 0600, or root:kvm 0660 with a host gid that means
# nothing in the image. One ACL entry for QEMU's uid gives it access without changing the
# node's owner, group or mode for anyone else (a chgrp to the image's gid would hand the node
# to whatever that gid is on the host). Set on every start: udev drops it when it recreates
# the node (kvm module reload). Without it libvirt finds KVM unusable for that user and
# refuses type="kvm" domains. Running QEMUs keep their open descriptor either way.
qemu_user=$(sed -n 's/^user *= *"\(.*\)"/\1/p' /etc/libvirt/qemu.conf)
if [ -c /dev/kvm ] && [ -n "$qemu_user" ] && [ "$qemu_user" != root ]; then
	setfacl -m "u:$(id -u "$qemu_user"):rw" /dev/kvm ||
		echo "entry-libvirt: cannot give $qemu_user access to /dev/kvm (setfacl): KVM guests will not start" >&2
fi

# LIBVIRT_VNC_PORTS=MIN-MAX: the ports libvirt gives VNC consoles (autoport), for a node
# firewall or when another libvirtd on the same host network hands out ports too (libvirt
# checks only its own allocations; two daemons sharing a range race for the same port).
# libvirt requires 5900 <= MIN <= MAX <= 65535.
if [ -n "${LIBVIRT_VNC_PORTS:-}" ]; then
	min=${LIBVIRT_VNC_PORTS%-*}
	max=${LIBVIRT_VNC_PORTS#*-}
	case "$min$max" in
	*[!0-9]* | "")
		echo "entry-libvirt: LIBVIRT_VNC_PORTS=$LIBVIRT_VNC_PORTS: expected MIN-MAX" >&2
		exit 1
		;;
	esac
	if [ "$min" -lt 5900 ] || [ "$max" -gt 65535 ] || [ "$min" -gt "$max" ]; then
		echo "entry-libvirt: LIBVIRT_VNC_PORTS=$LIBVIRT_VNC_PORTS: need 5900 <= MIN <= MAX <= 65535" >&2
		exit 1
	fi
	conf=/etc/libvirt/qemu.conf
	sed -i '/^remote_display_port_m\(in\|ax\) *=/d' $conf
	printf 'remote_display_port_min = %s\nremote_display_port_max = %s\n' "$min" "$max" >>$conf
fi

# Run libvirtd in the host's cgroup namespace. The pod gets a private cgroup namespace from the
# runtime, but /sys/fs/cgroup is the host's hierarchy (a hostPath mount): in the private
# namespace /proc/<pid>/cgroup shows paths relative to the container's cgroup, e.g.
# "/../../machine/qemu-1-vm", which do not resolve under the host mount. A restarted libvirtd
# then fails to find a running QEMU's cgroup on reconnect and kills the QEMU (seen with
# libvirt 9.0). In the host's namespace the paths are absolute and agree with the mount, and
# libvirt's "/machine" partition is the host's. The reference is kthreadd (pid 2, always in
# the initial cgroup namespace; visible because the pod has hostPID): pid 1 may be unreadable
# (a non-dumpable init).
host_ns=/proc/2/ns/cgroup
if [ "$(cat /proc/2/comm 2>/dev/null)" = kthreadd ] &&
	[ "$(readlink $host_ns)" != "$(readlink /proc/self/ns/cgroup)" ]; then
	exec /usr/bin/nsenter --cgroup=$host_ns -- /usr/sbin/libvirtd "$@"
fi
echo "entry-libvirt: staying in this cgroup namespace (no hostPID, or it is the host's)" >&2
exec /usr/sbin/libvirtd "$@"

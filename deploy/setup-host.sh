#!/bin/bash
# Prepares a Debian 12 machine to build, run and test hostagent. Idempotent.
# Installs the build and runtime packages and starts virtlogd/libvirtd when they are absent
# (these machines have no systemd as PID 1; see ../shared/ENVIRONMENT.md).
set -euo pipefail

PKGS=(
	build-essential autoconf automake libtool pkg-config
	libvirt-dev libkmod-dev libnl-3-dev libnl-route-3-dev libsystemd-dev libjansson-dev
	libmicrohttpd-dev libcurl4-gnutls-dev libgnutls28-dev nettle-dev libyaml-dev libxml2-dev libcmocka-dev
	qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients
	iproute2 curl python3 clang-format dnsmasq-base xorriso openssh-client libcrypt-dev
	${HOSTAGENT_EXTRA_PKGS:-}
)

if [ "$(id -u)" != 0 ]; then
	echo "setup-host.sh: run as root" >&2
	exit 1
fi

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup-host.sh: installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--force-confnew \
		--no-install-recommends "${missing[@]}" >/tmp/hostagent-apt.log 2>&1 ||
		{ tail -n 30 /tmp/hostagent-apt.log; exit 1; }
fi

# This host's daemons, not those in containers (a hostagent pod shares the host PID namespace).
host_pgrep() { pgrep --ns $$ --nslist pid,mnt -x "$@"; }
host_pkill() { pkill --ns $$ --nslist pid,mnt -x "$@"; }

# QEMU started by libvirtd runs as root so it can open /dev/kvm (root:root 0600 here).
if ! grep -q '^user = "root"' /etc/libvirt/qemu.conf; then
	printf 'user = "root"\ngroup = "root"\n' >>/etc/libvirt/qemu.conf
	if host_pkill libvirtd 2>/dev/null; then
		for _ in $(seq 50); do host_pgrep libvirtd >/dev/null || break; sleep 0.1; done
	fi
fi

start_libvirtd() {
	mkdir -p /var/log/libvirt /run/libvirt
	host_pgrep virtlogd >/dev/null || virtlogd -d
	for _ in $(seq 100); do
		virsh -c qemu:///system version >/dev/null 2>&1 && return 0
		host_pgrep libvirtd >/dev/null || libvirtd -d
		sleep 0.2
	done
	echo "setup-host.sh: libvirtd did not come up" >&2
	return 1
}
if [ -d /run/systemd/system ]; then
	systemctl start libvirtd
else
	start_libvirtd
fi

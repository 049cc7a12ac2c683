#!/bin/sh
# Prepares this machine to build and run the hostagent image with podman. Idempotent.
# Why (ENVIRONMENT.md): crun refuses the hybrid cgroup layout, so runc is the runtime; podman's
# default ulimits exceed the hard nofile limit (no CAP_SYS_RESOURCE), so they are lowered.
set -eu

[ "$(id -u)" = 0 ] || { echo "setup-podman.sh: must run as root" >&2; exit 1; }

missing=""
for p in podman runc mmdebstrap; do
	command -v "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		podman runc mmdebstrap uidmap fuse-overlayfs >/dev/null
fi

conf=/etc/containers/containers.conf
want='# Written by hostagent deploy/image/setup-podman.sh
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"'
mkdir -p /etc/containers
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$want" ]; then
	if [ -f "$conf" ] && ! grep -q 'hostagent deploy/image/setup-podman.sh' "$conf"; then
		cp "$conf" "$conf.orig"
	fi
	printf '%s\n' "$want" >"$conf.tmp"
	mv "$conf.tmp" "$conf"
fi
podman info --format '{{.Host.OCIRuntime.Name}}' >/dev/null

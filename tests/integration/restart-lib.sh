# The hostagent pod run by podman for the restart test and the restart benchmark: sourced after
# lib.sh. The image is built from the build tree (deploy/image/build-image.sh, cached rootfs),
# the pod's containers are started by deploy/k8s/run-pod.py from the DaemonSet manifest, with
# the manifest's node paths mapped to directories under $T so the host's own libvirtd
# (/run/libvirt, /var/lib/libvirt, /etc/libvirt/qemu) is not touched.
#
#   pod_setup            podman, the image, per-test host paths; sets POD, H, SOCK, VIRSH_URI
#   pod ACTION [CTR...]  run-pod.py ACTION (start, kill, stop, restart) for this pod
#   pod_wait_ready S     waits for the agent's admin socket and /readyz 200
#   vm_create SID        creates and starts a 128 MiB diskless guest through the API
#   qemu_pid SID         the QEMU pid libvirt recorded for SID
#
# The pod's libvirtd shares the host PID namespace: a bare `pkill -x libvirtd` would kill it,
# so tests stop the host's with lib.sh host_pkill (own PID and mount namespace only).

src=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
RUNPOD=$src/deploy/k8s/run-pod.py
POD=hatest-$$
H=$T/node
SOCK=$H/run/hostagent/admin.sock
VIRSH_URI="qemu+unix:///system?socket=$H/run/libvirt/libvirt-sock"
POD_ENV=()
# The pod's libvirtd shares the host network with the host's libvirtd, which tests running in
# parallel use: each daemon checks only its own VNC allocations, so the pod gets a range of its
# own (the host's allocates from 5900 up).
POD_VNC_PORTS=6900-6999
POD_SIDS=()

pod_setup() {
	need_root
	[ -e /dev/kvm ] || skip "no /dev/kvm"
	[ -f /proc/2/comm ] || skip "no host pid namespace"
	if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v mmdebstrap >/dev/null ||
		! grep -q 'runtime = "runc"' /etc/containers/containers.conf 2>/dev/null; then
		"$src/deploy/image/setup-podman.sh" || hard "deploy/image/setup-podman.sh failed"
	fi
	python3 -c 'import yaml' 2>/dev/null ||
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-yaml >/dev/null ||
		hard "python3-yaml missing"
	local t0=$SECONDS
	IMAGE=$("$src/deploy/image/build-image.sh" -b "$top_builddir" -t "check-$POD" 2>"$T/build-image.log") ||
		{ cat "$T/build-image.log" >&2; hard "image build failed"; }
	on_exit "podman rmi -f $IMAGE"
	echo "# image $IMAGE built in $((SECONDS - t0)) s: $(tail -n1 "$T/build-image.log")"
	# QEMU runs as an unprivileged user in the image (qemu.conf user): it must traverse $T to
	# the node paths below it (its per-domain directories, disks), as it does / on a node.
	chmod 0755 "$T"
	MAPS=()
	local p
	for p in /run/libvirt /var/lib/libvirt /etc/libvirt/qemu /var/log/libvirt /opt/cloud/workspace \
		/var/lib/hostagent /run/hostagent; do
		mkdir -p "$H$p"
		MAPS+=(--map "$p=$H$p")
	done
	# A free port for the API (host network), and the node's cgroups cleaned whatever happens.
	PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	POD_ENV+=(--env "HOSTAGENT_PORT=$PORT" --env HOSTAGENT_LISTEN_ADDRESS=127.0.0.1
		--env HOSTAGENT_LOG_LEVEL=debug --env "LIBVIRT_VNC_PORTS=$POD_VNC_PORTS")
	on_exit pod_cleanup
}

pod() {
	python3 "$RUNPOD" --image "$IMAGE" --prefix "$POD" --state-dir "$T/podstate" \
		"${MAPS[@]}" "${POD_ENV[@]}" "$@"
}

pod_logs() { # the last lines of both containers' logs, for failures
	local c
	for c in agent libvirt; do
		echo "--- $POD-$c" >&2
		podman logs --tail 30 "$POD-$c" >&2 2>&1
	done
}

pod_wait_ready() {
	wait_for "$1" test -S "$SOCK" || { pod_logs; fail "agent did not create $SOCK"; }
	wait_for "$1" agent_ready || { pod_logs; fail "agent not ready: $(api GET /readyz)"; }
}

qemu_pid() { cat "$H/run/libvirt/qemu/$1.pid" 2>/dev/null; }
virsh_() { virsh -q -c "$VIRSH_URI" "$@"; }

vm_create() {
	local sid=$1 uuid
	uuid=$(uuid)
	POD_SIDS+=("$sid")
	expect_api 200 POST "/servers/$sid/create" \
		"{\"desc\": {\"uuid\": \"$uuid\", \"name\": \"$sid\", \"cpu\": 1, \"mem\": 128}}" >/dev/null
	# The pod's libvirtd has its own VNC port range (POD_VNC_PORTS): no collision with the host's.
	expect_api 200 POST "/servers/$sid/start" '{}' >/dev/null
}

# Everything this pod left on the node, whatever state the test failed in: guests (through
# the pod's libvirtd if it answers, else their QEMU pids), containers, cgroups.
pod_cleanup() {
	local s p
	if podman container exists "$POD-libvirt" && virsh_ version >/dev/null 2>&1; then
		for s in "${POD_SIDS[@]}"; do
			virsh_ destroy "$s" >/dev/null 2>&1
			virsh_ undefine "$s" >/dev/null 2>&1
		done
	fi
	for s in "${POD_SIDS[@]}"; do
		p=$(qemu_pid "$s")
		[ -n "$p" ] && grep -qs "$s" "/proc/$p/cmdline" && kill -9 "$p"
	done
	pod kill >/dev/null 2>&1
	sleep 0.3
	# The pod's cgroup (run-pod.py --cgroup-parent) and the guests' in every hierarchy.
	local d
	for s in "${POD_SIDS[@]}" "$POD"; do
		find /sys/fs/cgroup -depth -type d \( -path "*pod-$POD*" -o -path "*$s*" \) 2>/dev/null |
			while read -r d; do rmdir "$d" 2>/dev/null; done
	done
	return 0
}

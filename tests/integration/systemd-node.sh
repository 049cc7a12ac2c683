#!/bin/bash
# Issue 6 acceptance on a systemd node: in a systemd container (node-lib.sh, ENVIRONMENT.md)
# libvirtd, virtlogd and hostagent all run in the cgroup of one service, hostagent-pod.service,
# standing in for the pod. Guests are created and started through the agent; libvirt registers
# each QEMU with systemd-machined (machine.slice, checked in /proc/<pid>/cgroup) and the agent's
# placement check finds nothing to move. `systemctl kill --signal=KILL` of the service kills
# every process of the pod; the guests keep running with the same pids, and the restarted
# service's agent is ready, reports them running and can stop and start one.
# Time: ~30 s warm; +70 s once for the node image.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/node-lib.sh"
need_root
[ -e /dev/kvm ] || skip "no /dev/kvm"
[ -x "$HOSTAGENT" ] || hard "$HOSTAGENT not built"

pkgs="systemd systemd-sysv dbus systemd-container procps libvirt0 libkmod2 libnl-3-200
libnl-route-3-200 libsystemd0 libjansson4 libmicrohttpd12 libcurl3-gnutls libyaml-0-2 libxml2
libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 ipxe-qemu seabios
acl"
ldd "$HOSTAGENT" | grep -q libasan && pkgs="$pkgs libasan8 libubsan1"
t0=$SECONDS
node_image $pkgs || exit 99
echo "# node image $NODE_IMAGE ready in $((SECONDS - t0)) s"

node=hatest-$$-sdnode
on_exit "podman rm -f -t 0 $node"
# The admin socket's directory is shared with the host, so lib.sh's api() works from here.
mkdir -p "$T/run-hostagent"
SOCK=$T/run-hostagent/admin.sock
node_start "$node" -v "$T/run-hostagent:/run/hostagent" || exit 99
n() { podman exec "$node" "$@"; }
fail_diag() {
	echo "--- journal of hostagent-pod.service in $node"
	n journalctl -u hostagent-pod -n 60 --no-pager -o short-precise
	echo "--- processes"
	n ps -eo pid,ppid,etimes,cgroup:60,args --sort=pid | grep -v ' \[' | tail -n 30
}

podman cp "$HOSTAGENT" "$node:/usr/local/sbin/hostagent" || hard "podman cp hostagent"
podman cp "$top_srcdir/deploy/image/qemu.conf" "$node:/etc/libvirt/qemu.conf" || hard "podman cp qemu.conf"
podman exec -i "$node" bash -s <<'IN' || hard "node setup"
set -e
# The image's QEMU user (deploy/image/build-image.sh; qemu.conf user/group, qemu_user).
groupadd -r -g 64107 hostagent-qemu
useradd -r -u 64107 -g 64107 -M -d /nonexistent -s /usr/sbin/nologin hostagent-qemu
# The distribution's libvirt units would start a second libvirtd outside the "pod".
systemctl mask --now libvirtd.service libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket \
	virtlogd.service virtlogd.socket virtlogd-admin.socket virtlockd.socket virtlockd-admin.socket \
	libvirt-guests.service >/dev/null 2>&1
mkdir -p /etc/yunion
cat >/etc/yunion/host.conf <<EOF
listen_address: 127.0.0.1
port: 8885
libvirt_uri: qemu:///system
enforce_placement: true
shutdown_timeout: 20
log_level: debug
qemu_user: hostagent-qemu
EOF
cat >/usr/local/bin/pod.sh <<'EOF'
#!/bin/sh
# The "pod": virtlogd and libvirtd beside the agent, all in this service's cgroup.
mkdir -p /run/libvirt /var/lib/libvirt/qemu /var/log/libvirt/qemu /run/hostagent
# As entry-libvirt.sh: QEMU's uid may open /dev/kvm.
setfacl -m u:64107:rw /dev/kvm
/usr/sbin/virtlogd &
/usr/sbin/libvirtd &
exec /usr/local/sbin/hostagent --config=/etc/yunion/host.conf
EOF
chmod +x /usr/local/bin/pod.sh
cat >/etc/systemd/system/hostagent-pod.service <<'EOF'
[Unit]
Description=stands in for the hostagent pod (agent and libvirt containers)
[Service]
ExecStart=/usr/local/bin/pod.sh
KillMode=control-group
EOF
systemctl daemon-reload
systemctl start hostagent-pod.service
IN
pod_ready() {
	wait_for 60 test -S "$SOCK" || fail "agent did not create its admin socket: $(n journalctl -u hostagent-pod -n 30 --no-pager)"
	wait_for 60 agent_ready || fail "agent not ready: $(api GET /readyz) $(n journalctl -u hostagent-pod -n 30 --no-pager)"
}
pod_ready
ok "systemd node up, pod service running, agent ready"

SIDS=()
declare -A PID
for i in 1 2; do
	s=hasd$$v$i
	SIDS+=("$s")
	expect_api 200 POST "/servers/$s/create" \
		"{\"desc\": {\"uuid\": \"$(uuid)\", \"name\": \"$s\", \"cpu\": 1, \"mem\": 128}}" >/dev/null
	expect_api 200 POST "/servers/$s/start" '{}' >/dev/null
	PID[$s]=$(n cat "/run/libvirt/qemu/$s.pid")
	[ -n "${PID[$s]}" ] || fail "no QEMU pid for $s"
done

# check STEP: every guest's QEMU alive with its pid, in machine.slice, and the agent agrees.
check() {
	local s cg
	for s in "${SIDS[@]}"; do
		n test -d "/proc/${PID[$s]}" || fail "$1: QEMU of $s (pid ${PID[$s]}) is gone"
		cg=$(n cat "/proc/${PID[$s]}/cgroup")
		grep -q '^0::\(.*/\)\?machine.slice/machine-qemu[^/]*\.scope' <<<"$cg" || fail "$1: QEMU of $s not in machine.slice: $cg"
		grep -q 'hostagent-pod' <<<"$cg" && fail "$1: QEMU of $s in the pod service's cgroup: $cg"
		# qemu.conf of the image: QEMU runs as hostagent-qemu, not root.
		expect_eq "$(n awk '/^Uid:/ {print $2}' "/proc/${PID[$s]}/status")" 64107 "$1: uid of $s's QEMU"
		expect_eq "$(n virsh -q -c qemu:///system domstate "$s" | head -n1)" running "$1: virsh domstate $s"
		expect_eq "$(api GET "/servers/$s/status" | json 'j["status"]')" running "$1: agent status of $s"
		expect_eq "$(api GET "/servers/$s/status" | json 'j["qemu_pid"]')" "${PID[$s]}" "$1: agent's pid of $s"
	done
	v=$(api GET /metrics | awk '/^hostagent_placement_violations[ {]/ {print $NF; exit}')
	[ "${v:-0}" = 0 ] || fail "$1: hostagent_placement_violations=$v"
	ok "$1: QEMUs in machine.slice, same pids, running, agent agrees"
}
check "started"

n systemctl kill --signal=KILL hostagent-pod.service
wait_for 10 sh -c "[ \"\$(podman exec $node systemctl show -p ActiveState --value hostagent-pod.service)\" != active ]" ||
	fail "pod service still active after the kill"
left=$(n systemctl show -p ControlGroup --value hostagent-pod.service)
[ -z "$left" ] || [ -z "$(n cat "/sys/fs/cgroup$left/cgroup.procs" 2>/dev/null)" ] ||
	fail "processes left in the pod service's cgroup"
for s in "${SIDS[@]}"; do n test -d "/proc/${PID[$s]}" || fail "QEMU of $s died with the pod service"; done
ok "every process of the pod service killed, guests alive"

n systemctl reset-failed hostagent-pod.service >/dev/null 2>&1
rm -f "$SOCK"
n systemctl start hostagent-pod.service || fail "pod service does not start again"
pod_ready
check "pod service restarted"

s=${SIDS[0]}
expect_api 200 POST "/servers/$s/stop" '{"is_force": true}' >/dev/null
expect_eq "$(n virsh -q -c qemu:///system domstate "$s" | head -n1)" "shut off" "$s stopped"
expect_api 200 POST "/servers/$s/start" '{}' >/dev/null
PID[$s]=$(n cat "/run/libvirt/qemu/$s.pid")
check "stop/start of $s after the restart"
for s in "${SIDS[@]}"; do expect_api 200 DELETE "/servers/$s" >/dev/null; done
echo "PASS ($((SECONDS - t0)) s)"

#!/bin/bash
# Quick start on a fresh Debian 12 machine (root): installs what is needed, builds, starts the
# agent on its embedded default configuration (API on 127.0.0.1:8885, admin socket
# /run/hostagent/admin.sock) and has it create and start the demo guest demo-vm, which boots a
# small Debian 12 (the test guest image of tests/guest-image, built once and cached under
# /var/cache/hostagent-guest-image). Where KVM cannot run a guest OS (a quick probe boots the
# image under KVM for a few seconds: nested software hypervisors like kvm_pvm abort it), the
# agent runs with virt_type qemu (TCG) and says so.
# Idempotent: a running quick-start agent is replaced by the new build; the demo VM is reused
# when it already runs the current image.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/setup-host.sh
deploy/build.sh

echo "== the guest image (built once from Debian packages, then cached)"
IMAGE=$(tests/guest-image/build.sh | tail -n1)
IMAGES=/opt/cloud/workspace/disks/images
mkdir -p "$IMAGES"
BASE=$IMAGES/$(basename "$IMAGE")
[ -s "$BASE" ] || ln "$IMAGE" "$BASE" 2>/dev/null || cp "$IMAGE" "$BASE"

# Can KVM run this guest? kvm_pvm (a software nested hypervisor) has /dev/kvm and starts QEMU,
# but stops the guest at its first instruction it cannot emulate: syslinux dies within a second.
kvm_runs_guests() {
	[ -w /dev/kvm ] || return 1
	local log pid i bad=1
	log=$(mktemp)
	qemu-system-x86_64 -machine pc,accel=kvm -m 256 -nodefaults -display none -no-user-config \
		-snapshot -drive "file=$BASE,format=qcow2,if=virtio" -serial none -monitor none \
		>"$log" 2>&1 &
	pid=$!
	# 8 s of a healthy boot, or the first error (within about a second here).
	for i in $(seq 40); do
		grep -q "KVM internal error\|Could not access KVM\|failed to initialize" "$log" && break
		kill -0 $pid 2>/dev/null || break
		sleep 0.2
	done
	[ "$i" = 40 ] && kill -0 $pid 2>/dev/null && bad=0
	kill $pid 2>/dev/null || true
	wait $pid 2>/dev/null || true
	rm -f "$log"
	[ $bad = 0 ]
}
VIRT_TYPE=kvm
if ! kvm_runs_guests; then
	VIRT_TYPE=qemu
	echo "== KVM cannot run a guest OS on this host (no usable /dev/kvm, or a nested hypervisor"
	echo "   that aborts guests): guests run under QEMU's TCG emulator (virt_type: qemu), slowly"
fi

PIDFILE=/run/hostagent-quickstart.pid
LOG=/var/log/hostagent-quickstart.log
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
	echo "== stopping the previous quick-start agent (its guests keep running)"
	kill -TERM "$(cat "$PIDFILE")"
	for _ in $(seq 100); do kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break; sleep 0.1; done
fi
echo "== starting hostagent $(./hostagent --version | cut -d' ' -f2) (log: $LOG)"
setsid ./hostagent --listen-address 127.0.0.1 --virt-type "$VIRT_TYPE" >>"$LOG" 2>&1 </dev/null &
echo $! >"$PIDFILE"
for _ in $(seq 100); do ./hostctl status >/dev/null 2>&1 && break; sleep 0.2; done
./hostctl status || { tail -n 20 "$LOG"; exit 1; }

# An older demo-vm (a blank disk, or an older image) is replaced.
if virsh -c qemu:///system dominfo demo-vm >/dev/null 2>&1 &&
	! virsh -c qemu:///system dumpxml --inactive demo-vm | grep -q "type='$VIRT_TYPE'" ||
	! qemu-img info -U /opt/cloud/workspace/disks/demo-vm-sys 2>/dev/null | grep -q "$BASE"; then
	./hostctl vm delete demo-vm >/dev/null 2>&1 || true
fi
echo "== creating and starting the demo guest 'demo-vm' (Debian 12, 2 vCPUs, 512 MiB, $VIRT_TYPE)"
DESC=$(mktemp)
sed "s#@IMAGE@#$BASE#" deploy/examples/demo-vm.json >"$DESC"
virsh -c qemu:///system dominfo demo-vm >/dev/null 2>&1 || ./hostctl vm create demo-vm "$DESC"
rm -f "$DESC"
./hostctl vm start demo-vm
./hostctl vm status demo-vm
virsh -c qemu:///system dominfo demo-vm | grep -E '^(Name|State|CPU\(s\)|Max memory)'

cat <<MSG

The agent runs in the background (pid $(cat "$PIDFILE")) with the demo guest. Look around:
  ./hostctl vm list                            guests and their state
  ./hostctl vm status demo-vm                  what libvirt says right now
  ./hostctl vm monitor demo-vm 'info status'   QEMU monitor passthrough
  ./hostctl metrics | grep hostagent_guests    Prometheus metrics
  curl -s -H "X-Auth-Token: \$(cat /var/lib/hostagent/api-token)" http://127.0.0.1:8885/servers
  virsh -c qemu:///system list                 libvirt's view
  virsh -c qemu:///system vncdisplay demo-vm   the guest's VNC display
  virsh -c qemu:///system console demo-vm      its serial console: log in as root, no
                                               password (Ctrl-] leaves); it boots in about
                                               20 s under TCG, a few seconds under KVM
Clean up:
  ./hostctl vm delete demo-vm && kill \$(cat $PIDFILE)
MSG

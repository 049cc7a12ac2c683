#!/bin/bash
# Quick start on a fresh Debian 12 machine (root): installs what is needed, builds, starts the
# agent on its embedded default configuration (API on 127.0.0.1:8885, admin socket
# /run/hostagent/admin.sock) and has it create and start a small demo KVM guest.
# Idempotent: a running quick-start agent is replaced by the new build; the demo VM is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/setup-host.sh
deploy/build.sh

PIDFILE=/run/hostagent-quickstart.pid
LOG=/var/log/hostagent-quickstart.log
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
	echo "== stopping the previous quick-start agent (its guests keep running)"
	kill -TERM "$(cat "$PIDFILE")"
	for _ in $(seq 100); do kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break; sleep 0.1; done
fi
echo "== starting hostagent $(./hostagent --version | cut -d' ' -f2) (log: $LOG)"
setsid ./hostagent --listen-address 127.0.0.1 >>"$LOG" 2>&1 </dev/null &
echo $! >"$PIDFILE"
for _ in $(seq 100); do ./hostctl status >/dev/null 2>&1 && break; sleep 0.2; done
./hostctl status || { tail -n 20 "$LOG"; exit 1; }

echo "== creating and starting the demo guest 'demo-vm' (1 vCPU, 128 MiB, 64 MiB qcow2 disk)"
./hostctl vm create demo-vm deploy/examples/demo-vm.json
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
Clean up:
  ./hostctl vm delete demo-vm && kill \$(cat $PIDFILE)
MSG

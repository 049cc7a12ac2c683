#!/bin/bash
# libvirtd restarted while guests run: the agent notices, says it is not ready and invents no
# guest state while libvirtd is away, reconnects, and every guest keeps its QEMU process.
. "$(dirname "$0")/lib.sh"
need_root
[ -e /dev/kvm ] || skip "no /dev/kvm"
libvirtd_lock exclusive
libvirtd_up || hard "libvirtd does not start"
on_exit "libvirtd_up"

start_agent
uuid() { python3 -c 'import uuid; print(uuid.uuid4())'; }
SIDS=()
for i in 1 2; do
	s=harst-$$-$i
	SIDS+=("$s")
	on_exit "virsh -c qemu:///system destroy $s; virsh -c qemu:///system undefine $s"
	expect_api 200 POST "/servers/$s/create" "{\"desc\": {\"uuid\": \"$(uuid)\", \"name\": \"restart $i\", \"cpu\": 1, \"mem\": 128}}" >/dev/null
	expect_api 200 POST "/servers/$s/start" '{}' >/dev/null
done
declare -A PID
for s in "${SIDS[@]}"; do PID[$s]=$(cat /run/libvirt/qemu/$s.pid); done

libvirtd_down
wait_for 20 sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' --unix-socket $SOCK http://localhost/readyz)\" = 503 ]" ||
	fail "agent still ready with libvirtd gone"
expect_contains "$(api GET /readyz)" "libvirt: not connected" "readiness reason"
# No invented state: a status question gets 503, not a cached answer.
expect_api 503 GET "/servers/${SIDS[0]}/status" >/dev/null
for s in "${SIDS[@]}"; do kill -0 "${PID[$s]}" || fail "QEMU of $s died with libvirtd"; done
ok "libvirtd down: not ready, no invented state, guests alive"

libvirtd_up || hard "libvirtd does not come back"
wait_for 30 agent_ready || fail "agent did not reconnect: $(api GET /readyz)"
for s in "${SIDS[@]}"; do
	expect_eq "$(api GET "/servers/$s/status" | json 'j["status"]')" running "status of $s after reconnect"
	expect_eq "$(api GET "/servers/$s/status" | json 'j["qemu_pid"]')" "${PID[$s]}" "QEMU pid of $s"
	expect_eq "$(virsh -c qemu:///system domstate "$s" | head -n1)" running "virsh state of $s"
done
reconnects=$(api GET /metrics | awk '/^hostagent_libvirt_reconnects_total/ {print $2}')
[ "${reconnects:-0}" -ge 1 ] || fail "reconnect not counted (hostagent_libvirt_reconnects_total=$reconnects)"
ok "reconnected: same QEMU pids, state correct"

# Control still works after the reconnect.
expect_api 200 POST "/servers/${SIDS[0]}/stop" '{"is_force": true}' >/dev/null
expect_eq "$(virsh -c qemu:///system domstate "${SIDS[0]}" | head -n1)" "shut off" "stop after reconnect"
expect_api 200 POST "/servers/${SIDS[0]}/start" '{}' >/dev/null
for s in "${SIDS[@]}"; do expect_api 200 DELETE "/servers/$s" >/dev/null; done
ok "control after reconnect"

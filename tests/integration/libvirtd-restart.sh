#!/bin/bash
# libvirtd restarted while guests run: the agent notices, says it is not ready and invents no
# guest state while libvirtd is away (status, list and the guest metrics answer 503 / nothing),
# reconnects, rebuilds its guest view from a full listing (a QEMU killed while libvirtd was away
# shows as stopped, though no event told the agent), and every other guest keeps its QEMU.
. "$(dirname "$0")/lib.sh"
need_root
[ -e /dev/kvm ] || skip "no /dev/kvm"
libvirtd_lock exclusive
libvirtd_up || hard "libvirtd does not start"
on_exit "libvirtd_up"

start_agent
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
for s in "${SIDS[@]}"; do
	expect_api 503 GET "/servers/$s/status" >/dev/null
	kill -0 "${PID[$s]}" || fail "QEMU of $s died with libvirtd"
done
expect_api 503 GET /servers >/dev/null
case "$(api GET /metrics)" in *'hostagent_guests{'*) fail "guest metrics served while libvirtd is away";; esac
# Behind everyone's back: the second guest's QEMU dies while libvirtd is away. No event will
# tell the agent; only the full listing after the reconnect can.
kill -9 "${PID[${SIDS[1]}]}"
wait_for 10 sh -c "! kill -0 ${PID[${SIDS[1]}]}" || hard "QEMU of ${SIDS[1]} does not die"
ok "libvirtd down: not ready, no invented state (status, list, metrics), guests alive"

libvirtd_up || hard "libvirtd does not come back"
# Until the view is rebuilt, 503; from the first 200 on, the truth (never the old view).
end=$((SECONDS + 30))
while :; do
	out=$(api GET "/servers/${SIDS[1]}/status")
	case $(last_code) in
	503) ;;
	200) expect_eq "$(echo "$out" | json 'j["status"]')" ready "first status of ${SIDS[1]} after reconnect"; break ;;
	*) fail "status of ${SIDS[1]} while reconnecting: HTTP $(last_code): $out" ;;
	esac
	[ $SECONDS -lt $end ] || fail "status still 503 30 s after libvirtd came back"
	sleep 0.05
done
wait_for 30 agent_ready || fail "agent did not reconnect: $(api GET /readyz)"
s=${SIDS[0]}
expect_eq "$(api GET "/servers/$s/status" | json 'j["status"]')" running "status of $s after reconnect"
expect_eq "$(api GET "/servers/$s/status" | json 'j["qemu_pid"]')" "${PID[$s]}" "QEMU pid of $s"
expect_eq "$(virsh -c qemu:///system domstate "$s" | head -n1)" running "virsh state of $s"
expect_eq "$(virsh -c qemu:///system domstate "${SIDS[1]}" | head -n1)" "shut off" "virsh state of ${SIDS[1]}"
list=$(expect_api 200 GET /servers)
expect_eq "$(echo "$list" | json "[x['status'] for x in j['servers'] if x['id']=='$s'][0]")" running "list status of $s"
expect_eq "$(echo "$list" | json "[x['status'] for x in j['servers'] if x['id']=='${SIDS[1]}'][0]")" ready "list status of ${SIDS[1]}"
expect_eq "$(echo "$list" | json "'qemu_pid' in [x for x in j['servers'] if x['id']=='${SIDS[1]}'][0]")" false "no qemu_pid for ${SIDS[1]}"
expect_eq "$(api GET /metrics | awk '$1 == "hostagent_guest_view_drift_total" {print $2}')" 0 "a rebuild is no drift"
reconnects=$(api GET /metrics | awk '/^hostagent_libvirt_reconnects_total/ {print $2}')
[ "${reconnects:-0}" -ge 1 ] || fail "reconnect not counted (hostagent_libvirt_reconnects_total=$reconnects)"
ok "reconnected: view rebuilt, same QEMU pid, the dead one stopped"

# Control still works after the reconnect.
expect_api 200 POST "/servers/${SIDS[0]}/stop" '{"is_force": true}' >/dev/null
expect_eq "$(virsh -c qemu:///system domstate "${SIDS[0]}" | head -n1)" "shut off" "stop after reconnect"
expect_api 200 POST "/servers/${SIDS[0]}/start" '{}' >/dev/null
for s in "${SIDS[@]}"; do expect_api 200 DELETE "/servers/$s" >/dev/null; done
ok "control after reconnect"

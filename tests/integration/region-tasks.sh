#!/bin/bash
# The server routes as the region calls them (CONTRACT.md 1.2, 1.5, 1.6, 5 B-C), against a
# real Keystone, the real libvirtd with a KVM guest and the checking fake region: a disk the
# disk routes made is accepted by create (another guest's is not), nothing is pushed while a
# create runs, a start posts __qemu_version/__vnc_port metadata, monitor answers "results",
# status pushes carry host_id, upload-status posts every listed guest in one call then calls
# back, and the purge delete (stop, sync, status with X-Task-Id, sync without the disk,
# DELETE) completes with every callback checked: status is called back (notfound for a guest
# the host does not have), DELETE answers delay_clean and keeps the disk files. Errors come in
# Cloudpods' top-level {code, class, details}; NIC, VLAN and metadata refusals name the field.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/keystone-lib.sh"
need_libvirtd kvm

region_start
region_conf "$T/host.conf" "$API_PORT" <<YAML
ping_region_interval: 30
YAML
mkdir -p "$T/disks"
region_agent_start

fail_diag() { echo "fake region records:"; tail -n 20 "$FR_RECORD"; }

region_agent_wait_auth
wait_for 90 fr_has 0 'r["kind"] == "online" and r["status"] == 200' || fail "host never went online"
HID=$(fr_state | json 'list(j["hosts"])[0]')
op_token

# task METHOD PATH BODY [IMMEDIATE]: runs the call with a fresh task id, checks the immediate
# answer (default {"result": "ok"}) and prints the callback body the region received.
task() {
	local id=t-$RANDOM$RANDOM out rec want=${4:-'{"result": "ok"}'}
	out=$(expect_call 200 "$1" "$2" "$3" "$id")
	[ "$(echo "$out" | json 'json.dumps(j, sort_keys=True)')" = "$want" ] ||
		fail "immediate answer of $1 $2 with X-Task-Id: $out, expected $want"
	rec=$(fake_region_wait "$id" 120) || fail "no good callback for $1 $2: $rec"
	echo "$rec" | json 'json.dumps(j["body"], sort_keys=True)'
}
region_agent_ready

S=harta-$$
B=harta-$$-b
for s in $S $B; do on_exit "virsh -c qemu:///system destroy $s; virsh -c qemu:///system undefine $s"; done
U=$(uuid)
# The system disk as POST /disks/<storage>/create/<disk> leaves it: <root>/<disk_id>.
SYS=$S-sys
DATA=$S-data
qemu-img create -q -f qcow2 "$T/disks/$SYS" 32M || hard "qemu-img"
desc() { # desc WITH_DATA_DISK
	local data=""
	[ "$1" = yes ] && data=", {\"disk_id\": \"$DATA\", \"index\": 1, \"size\": 16}"
	echo "{\"desc\": {\"uuid\": \"$U\", \"name\": \"tasks $S\", \"cpu\": 1, \"mem\": 128, \"disks\": [{\"disk_id\": \"$SYS\", \"index\": 0, \"size\": 32, \"path\": \"$T/disks/$SYS\"}$data]}}"
}

# ---- create: a disk made by the disk routes is this guest's; nothing pushed meanwhile ----
L=$(fr_lines)
body=$(task POST "/servers/$S/create" "$(desc yes)")
expect_eq "$(echo "$body" | json 'j.get("result")')" ok "create callback"
[ -f "$T/disks/$DATA" ] || fail "data disk not created"
sleep 2
fr_has "$L" 'r["kind"] == "server-status" and r["sid"] == "'"$S"'"' &&
	fail "status pushed for $S during its create: $(fr_recs "$L" 'r["kind"] == "server-status"')"
# Another guest naming the same disk file is refused, and the file stays.
out=$(expect_call 409 POST "/servers/$B/create" "{\"desc\": {\"uuid\": \"$(uuid)\", \"name\": \"b\", \"cpu\": 1, \"mem\": 128, \"disks\": [{\"disk_id\": \"$SYS\", \"index\": 0, \"size\": 32}]}}")
expect_eq "$(echo "$out" | json 'j["class"]')" ConflictError "class of the refusal"
expect_eq "$(echo "$out" | json 'j["code"]')" 409 "code of the refusal"
expect_contains "$(echo "$out" | json 'j["details"]')" "disks[0].path" "refusal names the disk"
[ -e "$T/servers/$B" ] && fail "workspace left for the refused guest"
[ -f "$T/disks/$SYS" ] || fail "disk of $S touched"
ok "create takes the disk the disk routes made, refuses it to another guest, pushes nothing"

# ---- start: metadata for the region's VNC parsing; monitor results; pushes carry host_id ----
L=$(fr_lines)
body=$(task POST "/servers/$S/start" '{}')
expect_eq "$(echo "$body" | json 'j["is_running"]')" true "start callback"
expect_eq "$(vstate $S)" running "virsh after start"
wait_for 20 fr_has "$L" 'r["kind"] == "server-metadata" and r["sid"] == "'"$S"'" and r["status"] == 200' ||
	fail "no metadata posted after the start"
md=$(fr_state | json 'json.dumps(j["metadata"]["'"$S"'"])')
want_port=$(virsh -c qemu:///system dumpxml "$S" | sed -n "s/.*<graphics type='vnc' port='\([0-9]*\)'.*/\1/p")
expect_eq "$(echo "$md" | json 'j["__vnc_port"]')" "$want_port" "__vnc_port"
qv=$(virsh -c qemu:///system version | sed -n 's/.*hypervisor: QEMU \([0-9.]*\).*/\1/p')
expect_eq "$(echo "$md" | json 'j["__qemu_version"]')" "$qv" "__qemu_version"
wait_for 20 fr_has "$L" 'r["kind"] == "server-status" and r["sid"] == "'"$S"'" and r["status"] == 200 and r["body"]["server"] == {"status": "running", "power_states": "on", "host_id": "'"$HID"'"}' ||
	fail "no running status with host_id for $S"
out=$(expect_call 200 POST "/servers/$S/monitor" '{"cmd": "info status"}')
expect_contains "$(echo "$out" | json 'j["results"]')" running "monitor results"
ok "start posts __qemu_version $qv and __vnc_port $want_port; monitor answers results"

# ---- upload-status: one post with every listed guest that is here, then the callback ----
L=$(fr_lines)
id=t-up-$RANDOM
out=$(expect_call 200 POST /servers/upload-status "{\"guest_ids\": [\"$S\", \"gone-$$\"]}" "$id")
expect_eq "$(echo "$out" | json 'j["result"]')" ok "immediate answer of upload-status"
rec=$(fake_region_wait "$id" 60) || fail "no upload-status callback: $rec"
expect_eq "$(echo "$rec" | json 'json.dumps(j["body"])')" "{}" "upload-status callback body"
up=$(fr_recs "$L" 'r["kind"] == "upload-status"')
[ "$(echo "$up" | wc -l)" = 1 ] || fail "expected one upload-status post, got: $up"
expect_eq "$(echo "$up" | json 'json.dumps(j["body"], sort_keys=True)')" \
	"{\"servers\": {\"guests\": {\"$S\": {\"host_id\": \"$HID\", \"power_states\": \"on\", \"status\": \"running\"}}}}" \
	"upload-status body"
expect_eq "$(echo "$up" | json 'j["status"]')" 200 "region accepted the upload"
python3 - "$FR_RECORD" "$id" <<'PY' || fail "the callback came before the upload"
import json, sys
kinds = [json.loads(l) for l in open(sys.argv[1])]
up = max(i for i, r in enumerate(kinds) if r["kind"] == "upload-status")
cb = min(i for i, r in enumerate(kinds) if r.get("task_id") == sys.argv[2])
sys.exit(0 if up < cb else 1)
PY
out=$(expect_call 400 POST /servers/upload-status '{"guest_ids": "x"}')
expect_eq "$(echo "$out" | json 'j["class"]')" InputParameterError "bad upload-status body"
ok "upload-status: one POST /servers/upload-status with the guest, then the callback"

# ---- purge delete as the region runs it (CONTRACT.md 1.5) ----
body=$(task POST "/servers/$S/stop" '{"timeout": 0, "is_force": true}')
expect_eq "$(vstate $S)" "shut off" "virsh after stop"
body=$(task POST "/servers/$S/sync" "$(desc yes)")
expect_eq "$(echo "$body" | json 'j["result"]')" ok "sync callback"
body=$(task GET "/servers/$S/status" '')
expect_eq "$body" "{\"block_jobs_count\": 0, \"host_id\": \"$HID\", \"power_states\": \"off\", \"status\": \"ready\"}" \
	"status callback"
body=$(task POST "/servers/$S/sync" "$(desc no)")
expect_eq "$(echo "$body" | json 'j["result"]')" ok "sync without the data disk"
virsh -c qemu:///system dumpxml "$S" | grep -q "$DATA" && fail "data disk still in the domain after the sync"
# (POST /disks/<storage>/delete/<disk> is the disk routes' part.)
body=$(task DELETE "/servers/$S" '' '{"delay_clean": true}')
expect_eq "$(echo "$body" | json 'j["result"]')" ok "delete callback"
virsh -c qemu:///system dominfo "$S" >/dev/null 2>&1 && fail "domain left after delete"
[ -e "$T/servers/$S" ] && fail "workspace left after delete"
[ -f "$T/disks/$SYS" ] || fail "delete removed the system disk (the region's)"
[ -f "$T/disks/$DATA" ] || fail "delete removed the detached data disk (the region's)"
# A guest the host does not have: notfound through the callback, not a refusal.
body=$(task GET "/servers/$S/status" '')
expect_eq "$body" "{\"block_jobs_count\": 0, \"host_id\": \"$HID\", \"power_states\": \"off\", \"status\": \"notfound\"}" \
	"status callback of a deleted guest"
out=$(expect_call 404 GET "/servers/$S/status")
expect_eq "$(echo "$out" | json 'sorted(j)')" "['class', 'code', 'details']" "error body keys"
expect_eq "$(echo "$out" | json 'j["class"]')" NotFoundError "class of a sync not-found"
ok "purge delete: stop, sync, status called back, sync without the disk, DELETE delay_clean; disks kept"

# ---- descriptor refusals name the field ----
refused() { # EXPECTED-SUBSTRING JSON
	local out
	out=$(expect_call 400 POST "/servers/$B/create" "$2")
	expect_eq "$(echo "$out" | json 'j["class"]')" InputParameterError "class for $1"
	expect_contains "$(echo "$out" | json 'j["details"]')" "$1" "refusal message"
	[ -e "$T/servers/$B" ] && fail "workspace left for a refused descriptor"
	virsh -c qemu:///system dominfo "$B" >/dev/null 2>&1 && fail "domain defined for a refused descriptor"
}
V=$(uuid)
refused "nics[0].bridge: missing, and no host network of this host is on wire \"wire-x\"" \
	"{\"desc\": {\"uuid\": \"$V\", \"name\": \"b\", \"cpu\": 1, \"mem\": 128, \"nics\": [{\"mac\": \"00:22:aa:00:00:01\", \"wire_id\": \"wire-x\"}]}}"
refused "nics[0].vlan: VLAN 5 cannot be tagged on br-t$$, a Linux bridge" \
	"{\"desc\": {\"uuid\": \"$V\", \"name\": \"b\", \"cpu\": 1, \"mem\": 128, \"nics\": [{\"mac\": \"00:22:aa:00:00:01\", \"bridge\": \"br-t$$\", \"vlan\": 5}]}}"
python3 -c "
import json
print(json.dumps({'desc': {'uuid': '$V', 'name': 'b', 'cpu': 1, 'mem': 128,
      'metadata': {'__qemu_cmdline': 'q' * (256 * 1024 + 1)}}}))" >"$T/big.json"
refused "metadata.__qemu_cmdline: too long (262145 bytes, max 262144)" "@$T/big.json"
# As real guests carry it: 900 KiB of metadata in a few values is accepted (and defined).
python3 -c "
import json
print(json.dumps({'desc': {'uuid': '$V', 'name': 'b', 'cpu': 1, 'mem': 128,
      'metadata': {'__qemu_cmdline': 'q' * (250 * 1024), 'user_data': 'u' * (250 * 1024),
                   'login_key': 'k' * (200 * 1024), '__os_profile__': 'p' * (200 * 1024)}}}))" >"$T/real.json"
expect_call 200 POST "/servers/$B/create" "@$T/real.json" >/dev/null
expect_call 200 DELETE "/servers/$B" >/dev/null
ok "bridge-less NIC, tagged VLAN on a Linux bridge and oversized metadata refused naming the field; 900 KiB metadata accepted"

bad=$(fr_recs 0 'r["problems"]')
[ -z "$bad" ] || fail "the fake region saw bad requests: $bad"
ign=$(fr_recs 0 'r["ignored"] and r["kind"] != "task"')
[ -z "$ign" ] || fail "fields the region ignores were sent: $ign"
kill -0 "$AGENT_PID" || fail "agent died"
ok "every request the region received was valid"
region_agent_stop
grep -q "Sanitizer\|runtime error" "$T/agent.log" && fail "sanitizer report in the agent log"
ok "clean exit"

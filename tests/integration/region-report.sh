#!/bin/bash
# The agent reports itself and its guests to the region (agent/report.c, agent/outbox.c)
# against a real Keystone, the real libvirtd with a small KVM guest, and the checking, stateful
# fake region (tests/integration/fake-region.py): registration retried through a region
# outage (readiness says why), the host record created with the right fields, a restart
# updates the same record (PUT, no second create), the heartbeat arrives, guest state changes
# are posted, and during an outage (also across an agent restart) they wait in the outbox and
# are delivered after it, latest wins; SIGTERM posts offline, exits 0 and leaves the guest
# running.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/keystone-lib.sh"
need_root
[ -e /dev/kvm ] || skip "no /dev/kvm"
libvirtd_lock shared
libvirtd_up || hard "libvirtd does not start"

KS_PORT=$(ks_free_port)
export KS_PORT
FR_PORT=$(ks_free_port)
FR=http://127.0.0.1:$FR_PORT
API_PORT=$(ks_free_port)
API=http://127.0.0.1:$API_PORT
keystone_start "$FR"
fake_region_start "$FR_PORT"

region_conf "$T/host.conf" "$API_PORT" <<YAML
ping_region_interval: 5
shutdown_timeout: 10
YAML

AGENT_PID=
start() {
	"$HOSTAGENT" --config "$T/host.conf" --log-level debug >>"$T/agent.log" 2>&1 9>&- &
	AGENT_PID=$!
}
# stop_agent: SIGTERM, expects exit code 0.
stop_agent() {
	kill -TERM "$AGENT_PID"
	local rc=0
	wait "$AGENT_PID" || rc=$?
	AGENT_PID=
	expect_eq "$rc" 0 "agent exit code after SIGTERM"
}
on_exit '[ -n "$AGENT_PID" ] && kill -TERM $AGENT_PID && wait $AGENT_PID'
ready_code() { curl -s -o "$T/ready" -w '%{http_code}' "$API/readyz"; }
outage() { curl -sf -X POST "$FR/__outage?seconds=$1" >/dev/null || hard "fake region control"; }
state() { curl -sf "$FR/__state"; }
lines() { wc -l <"$FR_RECORD"; }
# recs FROM EXPR: the records after line FROM for which EXPR (python, record r) holds, one
# JSON object per line.
recs() {
	python3 - "$FR_RECORD" "$1" "$2" <<'PY'
import json, sys
for i, line in enumerate(open(sys.argv[1])):
    r = json.loads(line)
    if i >= int(sys.argv[2]) and eval(sys.argv[3]):
        print(json.dumps(r))
PY
}
has() { [ -n "$(recs "$1" "$2")" ]; }
no_problems() {
	local bad
	bad=$(recs 0 'r["problems"]')
	[ -z "$bad" ] || fail "the fake region saw bad requests: $bad"
}

# 1. Region down at start: the agent stays up, is not ready and says why; registers after.
outage 600
start
wait_for 30 curl -sf "$API/ping" || fail "agent does not answer /ping"
wait_for 60 grep -q "Authenticated to keystone" "$T/agent.log" || fail "agent did not authenticate"
wait_for 20 has 0 'r["kind"] == "host-list" and r["status"] == 503' || fail "no registration attempt"
expect_eq "$(ready_code)" 503 "readyz while the region is down"
expect_contains "$(cat "$T/ready")" "region: not registered" "readiness reason"
expect_contains "$(cat "$T/ready")" "HTTP 503" "readiness reason carries the last error"
wait_for 10 grep -q "Region registration failed" "$T/agent.log" || fail "no retry logged"
kill -0 "$AGENT_PID" || fail "agent exited while the region was down"
ok "region down at start: agent up, not ready with the reason"
outage 0
wait_for 90 has 0 'r["kind"] == "online" and r["status"] == 200' || fail "host never went online"
wait_for 30 sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' $API/readyz)\" = 200 ]" ||
	fail "agent not ready after registration: $(curl -s $API/readyz)"
HID=$(state | json 'list(j["hosts"])[0]')
expect_eq "$(state | json 'len(j["hosts"])')" 1 "one host record"
expect_eq "$(cat "$T/state/host-id")" "$HID" "host id persisted in state_dir"
rec=$(recs 0 'r["kind"] == "host-create" and r["status"] == 200' | head -n1)
[ -n "$rec" ] || fail "no host create"
expect_eq "$(echo "$rec" | json 'j["path"]')" /zones/zone1/hosts "create path"
expect_eq "$(echo "$rec" | json 'j["body"]["host"]["host_type"]')" kvm "host_type"
expect_eq "$(echo "$rec" | json 'j["body"]["host"]["manager_uri"].endswith(":'"$API_PORT"'")')" true "manager_uri"
expect_eq "$(echo "$rec" | json 'j["body"]["host"]["cpu_count"]')" "$(nproc)" "cpu_count"
MAC=$(echo "$rec" | json 'j["body"]["host"]["access_mac"]')
has 0 'r["kind"] == "host-list" and r["path"] == "/hosts?any_mac='"$MAC"'" and r["status"] == 200' ||
	fail "no lookup by any_mac"
has 0 'r["kind"] == "add-netif" and r["status"] == 200 and r["body"]["host"]["mac"] == "'"$MAC"'"' ||
	fail "access NIC not added"
has 0 'r["kind"] == "add-netif" and (r["body"]["host"]["ifname"] == "lo" or r["body"]["host"]["ifname"].startswith(("vnet", "tap")))' &&
	fail "loopback or tap NIC reported"
expect_eq "$(state | json 'j["hosts"]["'"$HID"'"]["host_status"]')" online "host status in the region"
no_problems
ok "registered: host created under zone1 with checked fields, NICs added, online, id persisted"

# 2. Heartbeat (ping_region_interval 5 s +-10%).
L=$(lines)
wait_for 20 has "$L" 'r["kind"] == "ping" and r["status"] == 200 and r["host_id"] == "'"$HID"'"' ||
	fail "no heartbeat"
rec=$(recs "$L" 'r["kind"] == "ping"' | head -n1)
expect_eq "$(echo "$rec" | json 'isinstance(j["body"]["host"]["storage_stats"], list)')" true "ping storage_stats"
wait_for 20 sh -c "[ \$(python3 -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) if json.loads(l)[\"kind\"] == \"ping\"))' $FR_RECORD) -ge 3 ]" ||
	fail "heartbeat not periodic"
expect_contains "$(curl -s -H "X-Auth-Token: $(ks_token "$KS_OP_USER" "$KS_OP_PASSWORD" system)" "$API/metrics")" \
	"hostagent_region_ping_failures_total" "ping failure metric"
ok "heartbeat every ~5 s with memory, cpu and storage stats"

# 3. Guest start/stop produce status posts.
TOKEN=$(ks_token "$KS_OP_USER" "$KS_OP_PASSWORD" system)
call() { # METHOD PATH [BODY]: expects 200
	local code
	code=$(curl -s -o "$T/body" -w '%{http_code}' -X "$1" -H "X-Auth-Token: $TOKEN" --max-time 120 \
		${3:+-H 'Content-Type: application/json' --data-binary "$3"} "$API$2")
	[ "$code" = 200 ] || fail "$1 $2: HTTP $code: $(cat "$T/body")"
}
vstate() { virsh -c qemu:///system domstate "$1" 2>/dev/null | head -n1; }
S=harep-$$
on_exit "virsh -c qemu:///system destroy $S; virsh -c qemu:///system undefine $S"
U=$(python3 -c 'import uuid; print(uuid.uuid4())')
call POST "/servers/$S/create" "{\"desc\": {\"uuid\": \"$U\", \"name\": \"report $S\", \"cpu\": 1, \"mem\": 128, \"disks\": [{\"disk_id\": \"$S-sys\", \"index\": 0, \"size\": 32}]}}"
L=$(lines)
call POST "/servers/$S/start" '{}'
wait_for 30 has "$L" 'r["sid"] == "'"$S"'" and r["status"] == 200 and r["body"]["server"] == {"status": "running", "power_states": "on"}' ||
	fail "no running status for $S"
L=$(lines)
call POST "/servers/$S/stop" '{"is_force": true}'
wait_for 30 has "$L" 'r["sid"] == "'"$S"'" and r["status"] == 200 and r["body"]["server"] == {"status": "ready", "power_states": "off"}' ||
	fail "no ready status for $S"
call POST "/servers/$S/start" '{}'
wait_for 30 sh -c "[ \"\$(curl -sf $FR/__state | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"servers\"].get(\"$S\", {}).get(\"status\"))')\" = running ]" ||
	fail "region does not have $S running"
wait_for 10 sh -c "[ -z \"\$(ls $T/state/outbox)\" ]" || fail "outbox not emptied: $(ls "$T/state/outbox")"
no_problems
ok "guest start/stop posted to /servers/<sid>/status"

# 4. SIGTERM: offline posted, exit 0, guest still running; a restart updates the same record.
L=$(lines)
stop_agent
has "$L" 'r["kind"] == "offline" and r["status"] == 200 and r["host_id"] == "'"$HID"'"' || fail "no offline on SIGTERM"
expect_eq "$(state | json 'j["hosts"]["'"$HID"'"]["host_status"]')" offline "host offline in the region"
expect_eq "$(vstate $S)" running "guest after the agent's SIGTERM"
ok "SIGTERM: offline posted, exit 0, guest running"
L=$(lines)
start
wait_for 60 has "$L" 'r["kind"] == "online" and r["status"] == 200' || fail "not online after restart"
has "$L" 'r["kind"] == "host-update" and r["status"] == 200 and r["host_id"] == "'"$HID"'"' || fail "no PUT of the known host"
has "$L" 'r["kind"] == "host-create"' && fail "restart created a second host record"
expect_eq "$(state | json 'len(j["hosts"])')" 1 "still one host record"
# Adoption reports the guest once after registration.
wait_for 30 has "$L" 'r["sid"] == "'"$S"'" and r["status"] == 200 and r["body"]["server"]["status"] == "running"' ||
	fail "adopted guest not reported"
no_problems
ok "restart: same host id updated with PUT, adopted guest reported"

# 5. Region outage: changes kept in the outbox (latest wins), also across an agent restart.
outage 600
virsh -c qemu:///system suspend "$S" >/dev/null || hard "virsh suspend"
wait_for 20 grep -qs '"status":"suspend"' "$T/state/outbox/$S.json" || fail "suspend not in the outbox"
wait_for 15 has 0 'r["kind"] == "ping" and r["status"] == 503' || fail "no heartbeat during the outage"
wait_for 5 sh -c "curl -s -H 'X-Auth-Token: $TOKEN' $API/metrics | grep -Eq '^hostagent_region_ping_failures_total [1-9]'" ||
	fail "ping failure not counted"
L=$(lines)
stop_agent # offline fails with 503: still exits 0 within shutdown_timeout
grep -qs '"status":"suspend"' "$T/state/outbox/$S.json" || fail "outbox entry lost on stop"
start
wait_for 20 grep -q "guest status change(s) waiting for the region" "$T/agent.log" || fail "outbox not replayed at start"
wait_for 30 curl -sf "$API/ping" || fail "agent does not answer after restart"
virsh -c qemu:///system resume "$S" >/dev/null || hard "virsh resume"
wait_for 20 grep -qs '"status":"running"' "$T/state/outbox/$S.json" || fail "latest status not in the outbox"
# One file per guest (other guests of the shared libvirtd may have theirs), no temp files.
expect_eq "$(ls "$T/state/outbox" | grep -c "^$S\.")" 1 "one outbox file for the guest"
expect_eq "$(ls "$T/state/outbox" | grep -vc '\.json$')" 0 "temp files in the outbox"
has "$L" 'r["sid"] == "'"$S"'" and r["status"] == 200' && fail "status delivered during the outage"
OUT_END=$(lines)
outage 0
wait_for 90 has "$OUT_END" 'r["kind"] == "online" and r["status"] == 200' || fail "not registered after the outage"
wait_for 30 has "$OUT_END" 'r["sid"] == "'"$S"'" and r["status"] == 200' || fail "outbox not delivered after the outage"
wait_for 10 sh -c "[ -z \"\$(ls $T/state/outbox)\" ]" || fail "outbox not emptied after the outage"
got=$(recs "$OUT_END" 'r["sid"] == "'"$S"'" and r["status"] == 200' | json 'j["body"]["server"]["status"]')
expect_eq "$got" running "latest status wins after the outage (only one delivery)"
expect_eq "$(state | json 'j["servers"]["'"$S"'"]["status"]')" running "region's view after the outage"
no_problems
ok "outage across an agent restart: outbox kept on disk, latest status delivered after it"

# 5b. A guest deleted while its status waits in the outbox: the entry goes with the guest (a
# stale "ready" for a server this host no longer has would reach the region after the outage).
S2=harep2-$$
on_exit "virsh -c qemu:///system destroy $S2; virsh -c qemu:///system undefine $S2"
U2=$(python3 -c 'import uuid; print(uuid.uuid4())')
call POST "/servers/$S2/create" "{\"desc\": {\"uuid\": \"$U2\", \"name\": \"$S2\", \"cpu\": 1, \"mem\": 128}}"
call POST "/servers/$S2/start" '{}'
wait_for 30 sh -c "[ -z \"\$(ls $T/state/outbox)\" ]" || fail "outbox not emptied before the delete case"
outage 600
L=$(lines)
call POST "/servers/$S2/stop" '{"is_force": true}'
wait_for 20 grep -qs '"status":"ready"' "$T/state/outbox/$S2.json" || fail "stop of $S2 not in the outbox"
# The delivery attempt was refused (the outbox backs off, the entry kept): a request already
# on the wire when the guest is deleted cannot be called back.
wait_for 20 has "$L" 'r["sid"] == "'"$S2"'" and r["status"] == 503' || fail "no refused delivery for $S2"
virsh -c qemu:///system suspend "$S" >/dev/null || hard "virsh suspend"
wait_for 20 grep -qs '"status":"suspend"' "$T/state/outbox/$S.json" || fail "suspend not in the outbox"
call DELETE "/servers/$S2"
wait_for 10 sh -c "[ ! -e $T/state/outbox/$S2.json ]" || fail "outbox entry of deleted $S2 still there"
OUT_END=$(lines)
outage 0
# The outbox replays oldest first: S2's entry (older) would go before S's suspend.
wait_for 90 has "$OUT_END" 'r["sid"] == "'"$S"'" and r["status"] == 200 and r["body"]["server"]["status"] == "suspend"' ||
	fail "suspend of $S not delivered after the outage"
has "$OUT_END" 'r["sid"] == "'"$S2"'" and r["status"] == 200' &&
	fail "status of deleted $S2 posted after the outage: $(recs "$OUT_END" 'r["sid"] == "'"$S2"'"')"
virsh -c qemu:///system resume "$S" >/dev/null || hard "virsh resume"
wait_for 30 has "$OUT_END" 'r["sid"] == "'"$S"'" and r["status"] == 200 and r["body"]["server"]["status"] == "running"' ||
	fail "resume of $S not delivered"
no_problems
ok "guest deleted during an outage: its pending status dropped, never posted"

# 6. /hosts/<hid>/sync re-reports the host info.
L=$(lines)
TOKEN=$(ks_token "$KS_OP_USER" "$KS_OP_PASSWORD" system)
call POST "/hosts/$HID/sync" '{}'
wait_for 20 has "$L" 'r["kind"] == "host-update" and r["status"] == 200' || fail "sync did not re-report"
ok "host sync re-reports with PUT /hosts/<id>"

# 7. Final SIGTERM: offline, exit 0, guest still running.
L=$(lines)
stop_agent
has "$L" 'r["kind"] == "offline" and r["status"] == 200' || fail "no offline on the final SIGTERM"
expect_eq "$(vstate $S)" running "guest after the final SIGTERM"
no_problems
ok "final SIGTERM: offline, exit 0, guest running"

#!/bin/bash
# The whole VM lifecycle through the HTTP API in region mode, as the region drives it: Keystone
# tokens on every call, a real KVM guest, each operation once synchronously and once with
# X-Task-Id, whose outcome must reach the region's POST /tasks/<id> (a checking fake region)
# with the right body; a failing asynchronous operation reports __status__/__reason__.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/keystone-lib.sh"
need_libvirtd kvm

region_start

region_conf "$T/host.conf" "$API_PORT" </dev/null
region_agent_start
region_agent_wait_auth
op_token

# async METHOD PATH BODY: runs the call with a fresh task id, expects the immediate
# {"result":"ok"} and prints the body the region received for that task.
async() {
	local task=t-$RANDOM$RANDOM out rec
	out=$(expect_call 200 "$1" "$2" "$3" "$task")
	# DELETE: delay_clean tells the region to wait for the callback (RequestUndeployGuestOnHost).
	if [ "$1" = DELETE ]; then
		expect_eq "$(echo "$out" | json 'j["delay_clean"]')" true "immediate answer of async $1 $2"
	else
		expect_eq "$(echo "$out" | json 'j["result"]')" ok "immediate answer of async $1 $2"
	fi
	rec=$(fake_region_wait "$task" 120) || fail "no good callback for $1 $2: $rec"
	echo "$rec" | json 'json.dumps(j["body"])'
}
region_agent_ready

S1=haapi-$$-s
S2=haapi-$$-a
for s in $S1 $S2; do on_exit "virsh -c qemu:///system destroy $s; virsh -c qemu:///system undefine $s"; done
desc() { echo "{\"desc\": {\"uuid\": \"$(uuid)\", \"name\": \"api $1\", \"cpu\": 1, \"mem\": 128, \"disks\": [{\"disk_id\": \"$1-sys\", \"index\": 0, \"size\": 32}]}}"; }

# ---- synchronous ----
expect_call 200 POST "/servers/$S1/create" "$(desc $S1)" >/dev/null
out=$(expect_call 200 POST "/servers/$S1/start" '{}')
expect_eq "$(echo "$out" | json 'j["is_running"]')" true "sync start"
expect_eq "$(vstate $S1)" running "virsh after sync start"
expect_eq "$(expect_call 200 GET "/servers/$S1/status" | json 'j["power_states"]')" on "sync status"
expect_call 200 POST "/servers/$S1/stop" '{"is_force": true}' >/dev/null
expect_eq "$(vstate $S1)" "shut off" "virsh after sync stop"
expect_call 200 DELETE "/servers/$S1" >/dev/null
expect_call 404 GET "/servers/$S1/status" >/dev/null
ok "synchronous lifecycle over HTTP with a keystone token"

# ---- asynchronous: every outcome reaches the region ----
body=$(async POST "/servers/$S2/create" "$(desc $S2)")
expect_eq "$(echo "$body" | json 'j.get("result")')" ok "create callback"
body=$(async POST "/servers/$S2/start" '{}')
expect_eq "$(echo "$body" | json 'j["is_running"]')" true "start callback"
expect_eq "$(vstate $S2)" running "virsh after async start"
body=$(async POST "/servers/$S2/suspend" '{}')
expect_eq "$(vstate $S2)" paused "virsh after async suspend"
body=$(async POST "/servers/$S2/resume" '{}')
expect_eq "$(vstate $S2)" running "virsh after async resume"
body=$(async POST "/servers/$S2/stop" '{"timeout": 1}')
expect_eq "$(vstate $S2)" "shut off" "virsh after async stop"
body=$(async DELETE "/servers/$S2" '')
virsh -c qemu:///system dominfo "$S2" >/dev/null 2>&1 && fail "domain left after async delete"
# A failing operation: the region hears about it with __status__ and __reason__.
body=$(async POST "/servers/$S2/start" '{}')
expect_eq "$(echo "$body" | json 'j["__status__"]')" error "failed start: __status__"
expect_contains "$(echo "$body" | json 'j["__reason__"]')" "not found" "failed start: __reason__"
# Refused before any work (here: a guest id too long for libvirt): the HTTP reply says so.
long=$(printf 'g%.0s' $(seq 100))
expect_call 400 POST "/servers/$long/start" '{}' t-refused >/dev/null
ok "asynchronous lifecycle: every outcome posted to the region's /tasks/<id>"

#!/bin/bash
# The agent reports itself and its guests to the region (agent/report.c, agent/outbox.c)
# against a real Keystone, the real libvirtd with a small KVM guest, a real Linux bridge made
# for the test (the `networks` entry), and the checking, stateful fake region
# (tests/integration/fake-region.py, the real region's contract): registration retried
# through a region outage (readiness says why); the host registered as the region expects it
# (host_type hypervisor, the bridge's address as access_ip, the wire of its network found by
# IP, one netif with wire and bridge, the storage cache, local storage and host link of the
# disk root, all before online); a restart reuses every id and creates nothing twice (PUT
# only); a 403 for an expired token makes the agent renew it; a bridge missing from the
# host, or an IP not on it, stops the agent with a message naming the entry; the heartbeat
# carries storage_stats by storage id; guest state changes
# are posted, and during an outage (also across an agent restart) they wait in the outbox and
# are delivered after it, latest wins; SIGTERM posts offline, exits 0 and leaves the guest
# running.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/keystone-lib.sh"
need_libvirtd kvm

# The access network: a bridge with an address and a "physical" interface in it (one end of a
# veth pair: this kernel may have no dummy driver).
BR=harbr$$
BR=${BR:0:15}
DU=hadu$$
DU=${DU:0:13}
NET=10.213.$((RANDOM % 250 + 1))
IP=$NET.$((RANDOM % 200 + 10))
ip link add "$BR" type bridge || hard "cannot create bridge $BR"
on_exit "ip link del $BR"
ip link add "$DU" type veth peer name "${DU}p" || hard "cannot create veth $DU"
on_exit "ip link del $DU"
ip link set "$DU" master "$BR" && ip link set "$DU" up && ip link set "$BR" up ||
	hard "cannot set up $BR"
ip addr add "$IP/24" dev "$BR" || hard "cannot address $BR"
BR_MAC=$(cat "/sys/class/net/$BR/address")

NOGW=10.216.$((RANDOM % 250 + 1))
# adm0 has a gateway: the real region keeps an add-netif ip_addr only in such a network.
region_start --zone zone1 --network "adm0=$NET.0/24@bcast0,gateway=$NET.254" \
	--network "nogw0=$NOGW.0/24@bcast0"

region_conf "$T/host.conf" "$API_PORT" <<YAML
ping_region_interval: 5
shutdown_timeout: 10
networks: [$DU/$BR]
YAML

# The code over TCP (a probe), the reasons from the admin socket: over TCP they are not shown (L2).
ready_code() {
	local code
	code=$(curl -s -o "$T/ready.tcp" -w '%{http_code}' "$API/readyz")
	curl -s -o "$T/ready" --unix-socket "$T/admin.sock" http://localhost/readyz
	case "$(cat "$T/ready.tcp")" in *reasons\"*) fail "readiness reasons over TCP: $(cat "$T/ready.tcp")";; esac
	echo "$code"
}
outage() { curl -sf -X POST "$FR/__outage?seconds=$1" >/dev/null || hard "fake region control"; }
no_problems() {
	local bad
	bad=$(fr_recs 0 'r["problems"]')
	[ -z "$bad" ] || fail "the fake region saw bad requests: $bad"
}

# 1. Region down at start: the agent stays up, is not ready and says why; registers after.
outage 600
region_agent_start
wait_for 30 curl -sf "$API/ping" || fail "agent does not answer /ping"
region_agent_wait_auth
wait_for 20 fr_has 0 'r["kind"] == "network-list" and r["status"] == 503' || fail "no registration attempt"
expect_eq "$(ready_code)" 503 "readyz while the region is down"
expect_contains "$(cat "$T/ready")" "region: not registered" "readiness reason"
expect_contains "$(cat "$T/ready")" "HTTP 503" "readiness reason carries the last error"
wait_for 10 grep -q "Region registration failed" "$T/agent.log" || fail "no retry logged"
kill -0 "$AGENT_PID" || fail "agent exited while the region was down"
ok "region down at start: agent up, not ready with the reason"
outage 0
wait_for 90 fr_has 0 'r["kind"] == "online" and r["status"] == 200' || fail "host never went online"
wait_for 30 sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' $API/readyz)\" = 200 ]" ||
	fail "agent not ready after registration: $(curl -s $API/readyz)"
HID=$(fr_state | json 'list(j["hosts"])[0]')
expect_eq "$(fr_state | json 'len(j["hosts"])')" 1 "one host record"
expect_eq "$(cat "$T/state/host-id")" "$HID" "host id persisted in state_dir"
rec=$(fr_recs 0 'r["kind"] == "host-create" and r["status"] == 200' | head -n1)
[ -n "$rec" ] || fail "no host create"
expect_eq "$(echo "$rec" | json 'j["path"]')" /zones/zone1/hosts "create path"
expect_eq "$(echo "$rec" | json 'j["body"]["host"]["host_type"]')" hypervisor "host_type"
expect_eq "$(echo "$rec" | json 'j["body"]["host"]["access_ip"]')" "$IP" "access_ip is the bridge's address"
expect_eq "$(echo "$rec" | json 'j["body"]["host"]["access_mac"]')" "$BR_MAC" "access_mac is the bridge's MAC"
expect_eq "$(echo "$rec" | json 'j["body"]["host"]["manager_uri"]')" "http://$IP:$API_PORT" "manager_uri"
expect_eq "$(echo "$rec" | json 'j["body"]["host"]["cpu_count"]')" "$(nproc)" "cpu_count"
expect_eq "$(echo "$rec" | json 'j["body"]["host"]["cpu_architecture"]')" "$(uname -m)" "cpu_architecture"
expect_eq "$(echo "$rec" | json '"generate_name" in j["body"]["host"] and "mem_reserved" in j["body"]["host"]')" true "generate_name and mem_reserved on create"
expect_eq "$(fr_state | json 'j["hosts"]["'"$HID"'"]["enabled"]')" false "a new host starts disabled"
fr_has 0 'r["kind"] == "host-list" and r["status"] == 200 and "scope=system" in r["path"] and "any_mac='"${BR_MAC//:/%3A}"'" in r["path"]' ||
	fail "no lookup by any_mac with scope=system"
fr_has 0 'r["kind"] == "network-list" and r["status"] == 200 and r["path"] == "/networks?ip='"$IP"'&is_classic=true&scope=system"' ||
	fail "wire not looked up by the network of $IP"
# One netif, for the configured network, with the fields the region reads.
expect_eq "$(fr_recs 0 'r["kind"] == "add-netif"' | wc -l)" 1 "one add-netif per configured network"
rec=$(fr_recs 0 'r["kind"] == "add-netif" and r["status"] == 200' | head -n1)
expect_eq "$(echo "$rec" | json 'j["body"]["host"] == {"mac": "'"$BR_MAC"'", "vlan_id": 1, "wire": "bcast0", "bridge": "'"$BR"'", "interface": "'"$DU"'", "link_up": True, "ip_addr": "'"$IP"'", "reserve": True, "require_designated_ip": True, "nic_type": "admin"}')" true "add-netif body"
expect_eq "$(echo "$rec" | json 'j["ignored"]')" "[]" "add-netif fields the region would ignore"
expect_eq "$(fr_state | json '[(n["wire"], n["bridge"], n["interface"]) for n in j["hosts"]["'"$HID"'"]["netifs"]]')" "[('bcast0', '$BR', '$DU')]" "region's netif has wire and bridge"
# One local storage for the disk root, its cache and the host link, all before online.
expect_eq "$(fr_state | json 'len(j["storages"]), len(j["storagecaches"]), len(j["hoststorages"])')" "(1, 1, 1)" "one storage, cache and link"
SID=$(fr_state | json 'list(j["storages"])[0]')
SCID=$(fr_state | json 'list(j["storagecaches"])[0]')
expect_eq "$(fr_state | json 'j["storages"]["'"$SID"'"]["name"]')" "host_${IP}_local_storage_0" "storage name"
expect_eq "$(fr_state | json 'j["storages"]["'"$SID"'"]["storagecache_id"]')" "$SCID" "storage's cache"
expect_eq "$(fr_state | json 'j["storagecaches"]["'"$SCID"'"]["path"], j["storagecaches"]["'"$SCID"'"]["external_id"]')" "('$T/disks/image_cache', '$HID')" "storagecache path and host"
expect_eq "$(fr_state | json 'j["hoststorages"]["'"$HID/$SID"'"]["mount_point"]')" "$T/disks" "host-storage mount point"
# The fake brings linked storages online when the host goes online: online only if linked first.
expect_eq "$(fr_state | json 'j["storages"]["'"$SID"'"]["status"]')" online "storage online (linked before /online)"
order=$(python3 - "$FR_RECORD" <<'PY'
import json, sys
kinds = [json.loads(l)["kind"] for l in open(sys.argv[1]) if json.loads(l)["status"] == 200]
first = lambda k: kinds.index(k) if k in kinds else 10**9
print(first("wire-get") < first("host-create") < first("add-netif") < first("storagecache-create")
      < first("storage-create") < first("hoststorage-create") < first("online"))
PY
)
expect_eq "$order" True "registration order: wire, host, netif, cache, storage, link, online"
expect_eq "$(json 'sorted((s["root"], s["id"], s["cache_id"]) for s in j["storages"])' <"$T/state/region-ids.json")" "[('$T/disks', '$SID', '$SCID')]" "storage ids kept in state_dir"
expect_eq "$(fr_state | json 'j["hosts"]["'"$HID"'"]["host_status"]')" online "host status in the region"
no_problems
ok "registered as the region expects: hypervisor, netif with wire and bridge, storage with cache and link before online"

# 2. Heartbeat (ping_region_interval 5 s +-10%).
L=$(fr_lines)
wait_for 20 fr_has "$L" 'r["kind"] == "ping" and r["status"] == 200 and r["host_id"] == "'"$HID"'"' ||
	fail "no heartbeat"
rec=$(fr_recs "$L" 'r["kind"] == "ping"' | head -n1)
expect_eq "$(echo "$rec" | json '[s["storage_id"] for s in j["body"]["host"]["storage_stats"]]')" "['$SID']" "ping storage_stats by storage id"
expect_eq "$(echo "$rec" | json 'j["body"]["host"]["qga_running_guests"]')" "[]" "ping qga_running_guests"
wait_for 20 sh -c "[ \$(python3 -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) if json.loads(l)[\"kind\"] == \"ping\"))' $FR_RECORD) -ge 3 ]" ||
	fail "heartbeat not periodic"
expect_contains "$(curl -s -H "X-Auth-Token: $(ks_token "$KS_OP_USER" "$KS_OP_PASSWORD" system)" "$API/metrics")" \
	"hostagent_region_ping_failures_total" "ping failure metric"
ok "heartbeat every ~5 s with memory, cpu and storage stats"

# 3. Guest start/stop produce status posts.
op_token
call() { # METHOD PATH [BODY]: expects 200
	local code
	code=$(curl -s -o "$T/body" -w '%{http_code}' -X "$1" -H "X-Auth-Token: $TOKEN" --max-time 120 \
		${3:+-H 'Content-Type: application/json' --data-binary "$3"} "$API$2")
	[ "$code" = 200 ] || fail "$1 $2: HTTP $code: $(cat "$T/body")"
}
S=harep-$$
on_exit "virsh -c qemu:///system destroy $S; virsh -c qemu:///system undefine $S"
U=$(uuid)
call POST "/servers/$S/create" "{\"desc\": {\"uuid\": \"$U\", \"name\": \"report $S\", \"cpu\": 1, \"mem\": 128, \"disks\": [{\"disk_id\": \"$S-sys\", \"index\": 0, \"size\": 32}]}}"
L=$(fr_lines)
call POST "/servers/$S/start" '{}'
wait_for 30 fr_has "$L" 'r["sid"] == "'"$S"'" and r["status"] == 200 and r["body"]["server"] == {"status": "running", "power_states": "on", "host_id": "'"$HID"'"}' ||
	fail "no running status for $S"
L=$(fr_lines)
call POST "/servers/$S/stop" '{"is_force": true}'
wait_for 30 fr_has "$L" 'r["sid"] == "'"$S"'" and r["status"] == 200 and r["body"]["server"] == {"status": "ready", "power_states": "off", "host_id": "'"$HID"'"}' ||
	fail "no ready status for $S"
call POST "/servers/$S/start" '{}'
wait_for 30 sh -c "[ \"\$(curl -sf $FR/__state | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"servers\"].get(\"$S\", {}).get(\"status\"))')\" = running ]" ||
	fail "region does not have $S running"
wait_for 10 sh -c "[ -z \"\$(ls $T/state/outbox)\" ]" || fail "outbox not emptied: $(ls "$T/state/outbox")"
no_problems
ok "guest start/stop posted to /servers/<sid>/status"

# A domain someone else defined and started is listed as unmanaged, never reported: the region
# has no such server. The managed guest's stop right after it is (the hook still runs).
X=harep-$$-foreign
on_exit "virsh -c qemu:///system destroy $X; virsh -c qemu:///system undefine $X"
small_domain_xml "$X" qemu >"$T/foreign.xml"
L=$(fr_lines)
virsh -c qemu:///system define "$T/foreign.xml" >/dev/null || hard "virsh define"
virsh -c qemu:///system start "$X" >/dev/null || hard "virsh start"
wait_for 5 sh -c "curl -s -H 'X-Auth-Token: $TOKEN' $API/servers | grep -q '\"$X\"'" ||
	fail "the foreign domain is not listed"
call POST "/servers/$S/stop" '{"is_force": true}'
wait_for 30 fr_has "$L" 'r["sid"] == "'"$S"'" and r["body"]["server"]["status"] == "ready"' ||
	fail "no ready status for $S after the foreign domain started"
! fr_has "$L" 'r.get("sid") == "'"$X"'"' || fail "the foreign domain's status was posted to the region: $(fr_recs "$L" 'r.get("sid") == "'"$X"'"')"
virsh -c qemu:///system destroy "$X" >/dev/null
virsh -c qemu:///system undefine "$X" >/dev/null
call POST "/servers/$S/start" '{}'
wait_for 30 fr_has "$L" 'r["sid"] == "'"$S"'" and r["body"]["server"]["status"] == "running"' ||
	fail "no running status for $S again"
! fr_has "$L" 'r.get("sid") == "'"$X"'"' || fail "the foreign domain's stop was posted to the region"
wait_for 10 sh -c "[ -z \"\$(ls $T/state/outbox)\" ]" || fail "outbox not emptied: $(ls "$T/state/outbox")"
ok "a foreign domain is listed but its states never reach the region"

# 4. SIGTERM: offline posted, exit 0, guest still running; a restart updates the same record.
L=$(fr_lines)
region_agent_stop
fr_has "$L" 'r["kind"] == "offline" and r["status"] == 200 and r["host_id"] == "'"$HID"'"' || fail "no offline on SIGTERM"
expect_eq "$(fr_state | json 'j["hosts"]["'"$HID"'"]["host_status"]')" offline "host offline in the region"
expect_eq "$(vstate $S)" running "guest after the agent's SIGTERM"
ok "SIGTERM: offline posted, exit 0, guest running"
L=$(fr_lines)
region_agent_start
wait_for 60 fr_has "$L" 'r["kind"] == "online" and r["status"] == 200' || fail "not online after restart"
fr_has "$L" 'r["kind"] == "host-update" and r["status"] == 200 and r["host_id"] == "'"$HID"'"' || fail "no PUT of the known host"
fr_has "$L" 'r["kind"] == "host-create"' && fail "restart created a second host record"
expect_eq "$(fr_state | json 'len(j["hosts"])')" 1 "still one host record"
fr_has "$L" 'r["kind"] in ("storagecache-create", "storage-create", "hoststorage-create")' &&
	fail "restart created a storage record again: $(fr_recs "$L" 'r["kind"].endswith("-create")')"
fr_has "$L" 'r["kind"] == "storage-get" and r["path"] == "/storages/'"$SID"'" and r["status"] == 200' ||
	fail "restart did not reuse the saved storage id"
fr_has "$L" 'r["kind"] == "storage-update" and r["status"] == 200' || fail "storage not updated on restart"
expect_eq "$(fr_state | json 'len(j["storages"]), len(j["storagecaches"]), len(j["hoststorages"]), len(j["hosts"]["'"$HID"'"]["netifs"])')" "(1, 1, 1, 1)" "records after the restart"
rec=$(fr_recs "$L" 'r["kind"] == "host-update" and r["status"] == 200' | head -n1)
expect_eq "$(echo "$rec" | json '[k for k in ("name", "generate_name", "mem_reserved") if k in j["body"]["host"]]')" "[]" "update keeps the admin's name and reserved memory"
# Adoption reports the guest once after registration.
wait_for 30 fr_has "$L" 'r["sid"] == "'"$S"'" and r["status"] == 200 and r["body"]["server"]["status"] == "running"' ||
	fail "adopted guest not reported"
no_problems
ok "restart: same host id updated with PUT, adopted guest reported"

# 5. Region outage: changes kept in the outbox (latest wins), also across an agent restart.
outage 600
virsh -c qemu:///system suspend "$S" >/dev/null || hard "virsh suspend"
wait_for 20 grep -qs '"status":"suspend"' "$T/state/outbox/$S.json" || fail "suspend not in the outbox"
wait_for 15 fr_has 0 'r["kind"] == "ping" and r["status"] == 503' || fail "no heartbeat during the outage"
wait_for 5 sh -c "curl -s -H 'X-Auth-Token: $TOKEN' $API/metrics | grep -Eq '^hostagent_region_ping_failures_total [1-9]'" ||
	fail "ping failure not counted"
L=$(fr_lines)
region_agent_stop # offline fails with 503: still exits 0 within shutdown_timeout
grep -qs '"status":"suspend"' "$T/state/outbox/$S.json" || fail "outbox entry lost on stop"
region_agent_start
wait_for 20 grep -q "guest status change(s) waiting for the region" "$T/agent.log" || fail "outbox not replayed at start"
wait_for 30 curl -sf "$API/ping" || fail "agent does not answer after restart"
virsh -c qemu:///system resume "$S" >/dev/null || hard "virsh resume"
wait_for 20 grep -qs '"status":"running"' "$T/state/outbox/$S.json" || fail "latest status not in the outbox"
# One file per guest (other guests of the shared libvirtd may have theirs), no temp files.
expect_eq "$(ls "$T/state/outbox" | grep -c "^$S\.")" 1 "one outbox file for the guest"
expect_eq "$(ls "$T/state/outbox" | grep -vc '\.json$')" 0 "temp files in the outbox"
fr_has "$L" 'r["sid"] == "'"$S"'" and r["status"] == 200' && fail "status delivered during the outage"
OUT_END=$(fr_lines)
outage 0
wait_for 90 fr_has "$OUT_END" 'r["kind"] == "online" and r["status"] == 200' || fail "not registered after the outage"
wait_for 30 fr_has "$OUT_END" 'r["sid"] == "'"$S"'" and r["status"] == 200' || fail "outbox not delivered after the outage"
wait_for 10 sh -c "[ -z \"\$(ls $T/state/outbox)\" ]" || fail "outbox not emptied after the outage"
got=$(fr_recs "$OUT_END" 'r["sid"] == "'"$S"'" and r["status"] == 200' | json 'j["body"]["server"]["status"]')
expect_eq "$got" running "latest status wins after the outage (only one delivery)"
expect_eq "$(fr_state | json 'j["servers"]["'"$S"'"]["status"]')" running "region's view after the outage"
no_problems
ok "outage across an agent restart: outbox kept on disk, latest status delivered after it"

# 5b. A guest deleted while its status waits in the outbox: the entry goes with the guest (a
# stale "ready" for a server this host no longer has would reach the region after the outage).
S2=harep2-$$
on_exit "virsh -c qemu:///system destroy $S2; virsh -c qemu:///system undefine $S2"
U2=$(uuid)
call POST "/servers/$S2/create" "{\"desc\": {\"uuid\": \"$U2\", \"name\": \"$S2\", \"cpu\": 1, \"mem\": 128}}"
call POST "/servers/$S2/start" '{}'
wait_for 30 sh -c "[ -z \"\$(ls $T/state/outbox)\" ]" || fail "outbox not emptied before the delete case"
outage 600
L=$(fr_lines)
call POST "/servers/$S2/stop" '{"is_force": true}'
wait_for 20 grep -qs '"status":"ready"' "$T/state/outbox/$S2.json" || fail "stop of $S2 not in the outbox"
# The delivery attempt was refused (the outbox backs off, the entry kept): a request already
# on the wire when the guest is deleted cannot be called back.
wait_for 20 fr_has "$L" 'r["sid"] == "'"$S2"'" and r["status"] == 503' || fail "no refused delivery for $S2"
virsh -c qemu:///system suspend "$S" >/dev/null || hard "virsh suspend"
wait_for 20 grep -qs '"status":"suspend"' "$T/state/outbox/$S.json" || fail "suspend not in the outbox"
call DELETE "/servers/$S2"
wait_for 10 sh -c "[ ! -e $T/state/outbox/$S2.json ]" || fail "outbox entry of deleted $S2 still there"
OUT_END=$(fr_lines)
outage 0
# The outbox replays oldest first: S2's entry (older) would go before S's suspend.
wait_for 90 fr_has "$OUT_END" 'r["sid"] == "'"$S"'" and r["status"] == 200 and r["body"]["server"]["status"] == "suspend"' ||
	fail "suspend of $S not delivered after the outage"
fr_has "$OUT_END" 'r["sid"] == "'"$S2"'" and r["status"] == 200' &&
	fail "status of deleted $S2 posted after the outage: $(fr_recs "$OUT_END" 'r["sid"] == "'"$S2"'"')"
virsh -c qemu:///system resume "$S" >/dev/null || hard "virsh resume"
wait_for 30 fr_has "$OUT_END" 'r["sid"] == "'"$S"'" and r["status"] == 200 and r["body"]["server"]["status"] == "running"' ||
	fail "resume of $S not delivered"
no_problems
ok "guest deleted during an outage: its pending status dropped, never posted"

# 6. /hosts/<hid>/sync re-reports the host info.
L=$(fr_lines)
op_token
call POST "/hosts/$HID/sync" '{}'
wait_for 20 fr_has "$L" 'r["kind"] == "host-update" and r["status"] == 200' || fail "sync did not re-report"
ok "host sync re-reports with PUT /hosts/<id>"

# 6b. An expired token gets 403 from the region (not 401): the agent renews it and goes on.
L=$(fr_lines)
curl -sf -X POST "$FR/__reject-tokens" >/dev/null || hard "fake region control"
wait_for 30 fr_has "$L" 'r["status"] == 403 and r.get("token_rejected")' || fail "no request refused with 403"
OLD=$(fr_recs "$L" 'r["status"] == 403' | head -n1 | json 'j["token_sha"]')
wait_for 40 fr_has "$L" 'r["kind"] == "ping" and r["status"] == 200 and r["token_sha"] != "'"$OLD"'"' ||
	fail "token not renewed after a 403"
ok "403 for an expired token: the agent renews it and pings again"

# 7. Final SIGTERM: offline, exit 0, guest still running.
L=$(fr_lines)
region_agent_stop
fr_has "$L" 'r["kind"] == "offline" and r["status"] == 200' || fail "no offline on the final SIGTERM"
expect_eq "$(vstate $S)" running "guest after the final SIGTERM"
no_problems
ok "final SIGTERM: offline, exit 0, guest running"

# 8. A networks entry whose bridge does not exist, or whose IP is not on the bridge, stops the
# agent at startup with a message naming the entry.
bad_start() { # ENTRY: expects a non-zero exit and the entry named in the log
	sed "s|^networks: .*|networks: [$1]|" "$T/host.conf" >"$T/bad.conf"
	local rc=0
	timeout 60 "$HOSTAGENT" --config "$T/bad.conf" >"$T/bad.log" 2>&1 9>&- || rc=$?
	[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "agent with networks [$1] exited $rc"
	expect_contains "$(cat "$T/bad.log")" "networks entry '$1'" "startup error names the entry"
}
bad_start "$DU/nosuchbr0"
expect_contains "$(cat "$T/bad.log")" "bridge nosuchbr0 does not exist" "missing bridge"
bad_start "$DU/$BR/10.254.254.254"
expect_contains "$(cat "$T/bad.log")" "address 10.254.254.254 is not on bridge $BR" "IP not on the bridge"
ok "a missing bridge or an IP not on it stops the agent, naming the entry"

# 9. What the region refuses reaches readiness with its reason: a zone that does not exist
# (the real region: 404 "zone ... not found"), an access address in no network of the region.
IP2=10.214.$((RANDOM % 250 + 1)).7
ip addr add "$IP2/24" dev "$BR" || hard "cannot address $BR"
refused() { # CONF-SED EXPECTED: the agent stays up, not ready, and says why
	sed "$1" "$T/host.conf" >"$T/ref.conf"
	: >"$T/ref.log"
	"$HOSTAGENT" --config "$T/ref.conf" --log-level debug >"$T/ref.log" 2>&1 9>&- &
	AGENT_PID=$!
	wait_for 60 grep -qF "$2" "$T/ref.log" || fail "no '$2' in the agent log"
	expect_eq "$(ready_code)" 503 "readyz while the region refuses"
	expect_contains "$(cat "$T/ready")" "$2" "readiness reason"
	region_agent_stop
}
rm -f "$T/state/host-id" "$T/state/region-ids.json"
# Without networks the access address is listen_address (127.0.0.1): a MAC the region does
# not know, so the host would be created.
refused "s|^zone: .*|zone: nosuchzone|; s|^networks: .*|networks: []|" "zone nosuchzone not found"
refused "s|^networks: .*|networks: [$DU/$BR/$IP2]|" "no network of the region contains $IP2"
expect_eq "$(fr_state | json 'len(j["hosts"])')" 1 "nothing created for refused registrations"
ok "a missing zone or a network unknown to the region: not ready, with the region's reason"

# 9b. An access address in a network without a gateway: the real region would silently give
# the host another access_ip; the agent asks for its own (require_designated_ip) and is
# refused with the region's reason.
ip addr add "$NOGW.7/24" dev "$BR" || hard "cannot address $BR"
refused "s|^networks: .*|networks: [$DU/$BR/$NOGW.7]|" "Cannot allocate IP $NOGW.7, not reachable"
ok "an access address in a network without a gateway is refused, not replaced"

# 10. The host record deleted in the region (climc host-delete; storage and storagecache
# stay) and the agent's state lost: it registers a new host, and its new storagecache gets a
# name of its own (the region refuses a duplicate name with 409).
HID=$(fr_state | json 'list(j["hosts"])[0]')
curl -sf -X POST "$FR/__delete-host?id=$HID" >/dev/null || hard "fake region control"
rm -f "$T/state/host-id" "$T/state/region-ids.json"
L=$(fr_lines)
region_agent_start
wait_for 60 fr_has "$L" 'r["kind"] == "online" and r["status"] == 200' ||
	fail "not online after the host record was deleted: $(fr_recs "$L" 'r["status"] != 200')"
expect_eq "$(fr_state | json 'len(j["hosts"]), len(j["storagecaches"]), len(set(c["name"] for c in j["storagecaches"].values()))')" \
	"(1, 2, 2)" "a new host and a second storagecache with a name of its own"
NHID=$(fr_state | json 'list(j["hosts"])[0]')
[ "$NHID" != "$HID" ] || fail "the deleted host id came back"
region_agent_stop
[ -z "$(fr_recs "$L" 'r["problems"]')" ] || fail "the fake region saw bad requests: $(fr_recs "$L" 'r["problems"]')"
ok "host record deleted in the region: registered again with a new storagecache name"

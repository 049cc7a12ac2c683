#!/bin/bash
# Guest addresses from the descriptor (issue 13): the agent's DHCP (one dnsmasq per bridge,
# agent/dhcp.c) gives a real guest OS the address, mask, gateway, DNS, domain, routes and MTU of
# its stored descriptor. The Debian test image (tests/guest-image) boots under TCG with NO seed:
# it runs DHCP on every NIC. The host bridge's own address is in another subnet than the guest's
# (dnsmasq serves the guest's subnet with --shared-network). The guest must take exactly the
# descriptor's address and answer ping from a network namespace on the bridge; its second NIC,
# without ip, gets no lease. A second guest on the bridge takes its own address and reaches the
# first. Then: sync rewrites the host entries, a killed dnsmasq is noticed and restarted, delete
# removes the entries and, with the last guest, stops the instance.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/guest-lib.sh"
need_root
command -v dnsmasq >/dev/null || hard "dnsmasq missing (deploy/setup-host.sh installs dnsmasq-base)"
BOOT_LIMIT=${GUEST_BOOT_LIMIT:-180} # seconds from start to ping
guest_prepare

# ---- network: host bridge (an address outside the guests' subnet) <-> veth <-> namespace ----
SUB=$((($$ % 200) + 20))
BR_IP=10.217.$SUB.1/30         # the host's address on the bridge
GW=10.218.$SUB.1               # the namespace plays the guests' router
GUEST_IP=10.218.$SUB.10
MAC=$(random_mac)
MAC2=$(random_mac)
guest_net hagd "$GW/24" "$BR_IP"

SID=hagd-$$-vm
UUID=$(uuid)
HOSTNAME_WANT=vm-dhcp-$$

start_agent --virt-type qemu
on_exit "virsh -c qemu:///system destroy $SID; virsh -c qemu:///system undefine --nvram $SID"
D=$T/state/dhcp/$BR
dnsmasq_pid() { cat "$D/pid" 2>/dev/null; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && grep -q dnsmasq "/proc/$1/comm"; }
dnsmasq_alive() { alive "$(dnsmasq_pid)"; }
gone() { ! alive "$1"; }
restarts_are() { [ "$(metric hostagent_dhcp_restarts_total)" = "$1" ]; }
metric() { api GET /metrics | awk -v m="$1" '$1 == m {print $2}'; }
fail_diag() {
	echo "--- dhcp files"; head -n 20 "$D"/hosts "$D"/opts "$D"/leases 2>/dev/null
	echo "--- agent log (dhcp)"; grep -i -E 'dhcp|dnsmasq' "$T/agent.log" | tail -n 30
	echo "--- serial console"; tr -d '\r' <"$T/console.log" 2>/dev/null | tail -n 30
}

# desc IP2: the descriptor; the second NIC has ip IP2 when given, else none.
desc() {
	local ip2=${1:-}
	cat <<J
{"desc": {"uuid": "$UUID", "name": "guest dhcp", "hostname": "$HOSTNAME_WANT",
 "cpu": 1, "mem": 512, "machine": "pc", "bios": "BIOS", "boot_order": "c",
 "disks": [{"disk_id": "$SID-sys", "index": 0, "format": "qcow2", "driver": "virtio",
            "image_path": "$T/disks/images/guest.qcow2"}],
 "nics": [{"index": 0, "mac": "$MAC", "bridge": "$BR", "driver": "virtio",
           "ip": "$GUEST_IP", "masklen": 24, "gateway": "$GW", "is_default": true,
           "dns": "10.218.$SUB.53,10.218.$SUB.54", "domain": "dhcp.test", "mtu": 1400,
           "routes": [["172.30.0.0/16", "10.218.$SUB.254"]]},
          {"index": 1, "mac": "$MAC2", "bridge": "$BR", "driver": "virtio"$([ -n "$ip2" ] && printf ', "ip": "%s", "masklen": 24' "$ip2")}]}}
J
}

# ---- create: host entries written, dnsmasq up before the guest starts ----
expect_api 200 POST "/servers/$SID/create" "$(desc)" >/dev/null
wait_for 10 dnsmasq_alive || fail "no dnsmasq for $BR after create"
hosts=$(cat "$D/hosts")
expect_contains "$hosts" "$MAC,set:" "hosts entry of the NIC with ip"
expect_contains "$hosts" ",$GUEST_IP,$HOSTNAME_WANT,infinite" "hosts entry address and name"
case $hosts in *"$MAC2"*) fail "the NIC without ip has a host entry: $hosts" ;; esac
expect_eq "$(metric 'hostagent_dhcp_instances{state="running"}')" 1 "running instances"
expect_eq "$(metric hostagent_dhcp_hosts)" 1 "host entries"
ok "create wrote the host entry of the NIC with ip (not the other) and started dnsmasq $(dnsmasq_pid)"

# ---- boot with no seed: DHCP gives the descriptor's address ----
t0=$SECONDS
out=$(expect_api 200 POST "/servers/$SID/start" '{}')
expect_eq "$(echo "$out" | json 'j["is_running"]')" true "start"
guest_console
wait_ping "$GUEST_IP"
pinged() { ip netns exec "$NS" ping -c1 -W1 -q "$GUEST_IP"; }
BOOT_TO_PING=$((SECONDS - t0))
expect_contains "$(cat "$D/leases")" "$MAC $GUEST_IP $HOSTNAME_WANT" "dnsmasq lease"
ok "guest took $GUEST_IP from the agent's DHCP and answered ping from the namespace after ${BOOT_TO_PING} s"

# What the guest applied, through its guest agent.
wait_for 60 qga '{"execute":"guest-ping"}' || fail "qemu-guest-agent does not answer"
ifs=$(qga '{"execute":"guest-network-get-interfaces"}')
addr_of() { # MAC -> IPv4 addresses of that interface
	echo "$ifs" | python3 -c 'import json,sys; m=sys.argv[1]
for i in json.load(sys.stdin)["return"]:
    if i.get("hardware-address") == m:
        print(" ".join("%s/%s" % (a["ip-address"], a["prefix"]) for a in i.get("ip-addresses", []) if a["ip-address-type"] == "ipv4"))' "$1"
}
expect_eq "$(addr_of "$MAC")" "$GUEST_IP/24" "guest address and mask (qga)"
expect_eq "$(addr_of "$MAC2")" "" "the NIC without ip has no IPv4 address"
case $(cat "$D/leases") in *"$MAC2"*) fail "the NIC without ip got a lease" ;; esac
routes=$(qga_exec /sbin/ip -4 route)
expect_contains "$routes" "default via $GW" "default route from the gateway"
expect_contains "$routes" "172.30.0.0/16 via 10.218.$SUB.254" "classless static route"
expect_contains "$(qga_exec /sbin/ip link)" "mtu 1400" "MTU"
lease=$(qga_exec /bin/sh -c 'cat /run/systemd/netif/leases/*')
expect_contains "$lease" "DNS=10.218.$SUB.53 10.218.$SUB.54" "DNS servers in the guest's lease"
expect_contains "$lease" "DOMAINNAME=dhcp.test" "domain in the guest's lease"
ok "guest applied mask, gateway, route, MTU, DNS and domain from the descriptor; the NIC without ip got no lease"

# ---- a second guest on the bridge takes its own address and reaches the first ----
SID2=hagd-$$-vm2
MAC3=$(random_mac)
GUEST2_IP=10.218.$SUB.12
on_exit "virsh -c qemu:///system destroy $SID2; virsh -c qemu:///system undefine --nvram $SID2"
desc2=$(cat <<J
{"desc": {"uuid": "$(uuid)", "name": "guest dhcp 2",
 "cpu": 1, "mem": 512, "machine": "pc", "bios": "BIOS", "boot_order": "c",
 "disks": [{"disk_id": "$SID2-sys", "index": 0, "format": "qcow2", "driver": "virtio",
            "image_path": "$T/disks/images/guest.qcow2"}],
 "nics": [{"index": 0, "mac": "$MAC3", "bridge": "$BR", "driver": "virtio",
           "ip": "$GUEST2_IP", "masklen": 24, "gateway": "$GW"}]}}
J
)
expect_api 200 POST "/servers/$SID2/create" "$desc2" >/dev/null
wait_for 10 grep -q "$MAC3,set:[a-z0-9]*,$GUEST2_IP," "$D/hosts" || fail "no entry for the second guest"
t2=$SECONDS
expect_api 200 POST "/servers/$SID2/start" '{}' >/dev/null
pinged2() { ip netns exec "$NS" ping -c1 -W1 -q "$GUEST2_IP"; }
while ! pinged2 >/dev/null 2>&1; do
	[ $((SECONDS - t2)) -lt "$BOOT_LIMIT" ] || fail "no ping from the second guest $GUEST2_IP within $BOOT_LIMIT s"
	sleep 0.5
done
BOOT2_TO_PING=$((SECONDS - t2))
QGA_SID=$SID2 wait_for 60 qga '{"execute":"guest-ping"}' || fail "the second guest's agent does not answer"
# Reached: an ICMP echo reply, or a TCP answer from the first guest (a SYN-ACK, or the RST of a
# closed port: "Connection refused" comes from the peer; an unreachable one times out).
reach=$(QGA_SID=$SID2 qga_exec /bin/bash -c "if ping -c1 -W2 $GUEST_IP >/dev/null 2>&1; then echo reached;
	elif timeout 5 bash -c 'exec 3<>/dev/tcp/$GUEST_IP/22' 2>/tmp/e; then echo reached;
	elif grep -q refused /tmp/e; then echo reached; else cat /tmp/e; fi")
expect_contains "$reach" reached "second guest -> first guest"
ok "a second guest took $GUEST2_IP (ping after ${BOOT2_TO_PING} s) and reaches the first one"

# ---- sync: the second NIC gets an address; the host entries follow ----
old=$(dnsmasq_pid)
expect_api 200 POST "/servers/$SID/sync" "$(desc "10.218.$SUB.11")" >/dev/null
wait_for 10 grep -q "$MAC2,set:[a-z0-9]*,10.218.$SUB.11," "$D/hosts" || fail "sync did not add the entry: $(cat "$D/hosts")"
wait_for 10 dnsmasq_alive || fail "no dnsmasq after sync"
[ "$(dnsmasq_pid)" != "$old" ] || [ "$(dnsmasq --version | head -n1 | awk '{print $3}')" != 2.90 ] ||
	fail "dnsmasq 2.90 was not restarted after the change"
expect_eq "$(metric hostagent_dhcp_hosts)" 3 "host entries after sync"
wait_for 20 pinged >/dev/null 2>&1 || fail "guest unreachable after sync"
ok "sync added the second NIC's entry; dnsmasq reloaded ($old -> $(dnsmasq_pid))"

# ---- a killed dnsmasq is noticed and restarted ----
old=$(dnsmasq_pid)
kill -KILL "$old"
wait_for 15 restarts_are 1 || fail "the restart was not counted"
wait_for 15 dnsmasq_alive || fail "dnsmasq was not restarted"
new=$(dnsmasq_pid)
[ "$new" != "$old" ] || fail "same dnsmasq pid $new after the kill"
wait_for 15 agent_ready || fail "not ready after the restart: $(api GET /readyz)"
grep -q "Guest DHCP (dnsmasq) exited; restarting" "$T/agent.log" || fail "the exit was not logged"
ok "killed dnsmasq $old was restarted as $new and counted"

# ---- agent restart: its dnsmasq goes with it; the new agent serves the stored descriptors ----
kill -TERM "$AGENT_PID"
wait "$AGENT_PID"
wait_for 10 gone "$new" || fail "dnsmasq $new outlived its agent"
: >"$D/hosts" # the new agent must write it again from the descriptors it lists
start_agent --virt-type qemu
wait_for 20 grep -q "$MAC3,set:" "$D/hosts" || fail "the restarted agent did not rewrite the host entries"
grep -q "$MAC,set:[a-z0-9]*,$GUEST_IP," "$D/hosts" || fail "the first guest's entry is missing after the restart"
wait_for 10 dnsmasq_alive || fail "no dnsmasq after the agent restart"
new=$(dnsmasq_pid)
ok "after an agent restart the guests' entries came back from the stored descriptors (dnsmasq $new)"

# ---- delete: entries gone, instance stopped with the last guest ----
expect_api 200 DELETE "/servers/$SID" >/dev/null
no_first() { ! grep -q -e "$MAC" -e "$MAC2" "$D/hosts"; }
wait_for 10 no_first || fail "the deleted guest's entries stay: $(cat "$D/hosts")"
grep -q "$MAC3" "$D/hosts" || fail "the second guest's entry went too"
wait_for 10 dnsmasq_alive || fail "no dnsmasq for the remaining guest"
ok "delete removed the first guest's entries; the second guest's stays"
new=$(dnsmasq_pid)
expect_api 200 DELETE "/servers/$SID2" >/dev/null
wait_for 10 test ! -s "$D/hosts" || fail "hosts file not emptied: $(cat "$D/hosts")"
wait_for 10 gone "$new" || fail "dnsmasq $new still runs with no guest on $BR"
expect_eq "$(metric 'hostagent_dhcp_instances{state="running"}')" 0 "running instances after delete"
ok "delete removed the host entries and stopped dnsmasq"
echo "# boot-to-ping ${BOOT_TO_PING} s (TCG, DHCP, no seed); second guest ${BOOT2_TO_PING} s"

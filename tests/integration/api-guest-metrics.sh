#!/bin/bash
# /metrics per-guest series from libvirt bulk statistics, with a real KVM guest (one disk, one
# NIC on a bridge) driven through hostctl over the admin socket.
. "$(dirname "$0")/lib.sh"
need_root
[ -e /dev/kvm ] || skip "no /dev/kvm"
libvirtd_lock shared
libvirtd_up || hard "libvirtd does not start (deploy/setup-host.sh installs it)"

mkdir -p "$T/disks"
"$HOSTAGENT" --state-dir "$T/state" --servers-path "$T/servers" --local-image-path "$T/disks" \
	--admin-socket "$T/admin.sock" --listen-address 127.0.0.1 --port 0 \
	--libvirt-uri qemu:///system >"$T/agent.log" 2>&1 9>&- &
pid=$!
on_exit "kill -KILL $pid"
wait_for 20 test -S "$T/admin.sock" || fail "agent did not start"
H="$HOSTCTL --socket $T/admin.sock"

S=hamet-$$
BR=hamb$$; BR=${BR:0:15}
TAP=hamt$$; TAP=${TAP:0:15}
ip link add "$BR" type bridge || hard "cannot create bridge"
on_exit "ip link del $BR"
ip link set "$BR" up
on_exit "virsh -c qemu:///system destroy $S; virsh -c qemu:///system undefine $S --nvram"
cat >"$T/d.json" <<JSON
{"desc": {"uuid": "$(uuid)", "name": "metrics guest",
  "cpu": 1, "mem": 128,
  "disks": [{"disk_id": "dm-$$", "index": 0, "size": 16, "format": "qcow2"}],
  "nics": [{"index": 0, "mac": "52:54:00:12:35:01", "bridge": "$BR", "ifname": "$TAP"}]}}
JSON
$H vm create "$S" "$T/d.json" >/dev/null || fail "vm create"
$H vm start "$S" >/dev/null || fail "vm start"

m=$($H metrics) || fail "hostctl metrics"
for series in "hostagent_guest_cpu_seconds_total{guest=\"$S\"}" \
	"hostagent_guest_memory_bytes{guest=\"$S\"} 134217728" \
	"hostagent_guest_block_read_bytes_total{guest=\"$S\",device=\"vda\"}" \
	"hostagent_guest_block_write_bytes_total{guest=\"$S\",device=\"vda\"}" \
	"hostagent_guest_network_receive_bytes_total{guest=\"$S\",interface=\"$TAP\"}" \
	"hostagent_guest_network_transmit_bytes_total{guest=\"$S\",interface=\"$TAP\"}" \
	'hostagent_build_info' 'hostagent_tasks_queued' 'hostagent_libvirt_connected 1'; do
	expect_contains "$m" "$series" "metrics"
done
# Every family is announced once, before its samples.
echo "$m" | awk '/^# TYPE/ {if (seen[$3]++) {print "duplicate family " $3; bad=1}} END {exit bad}' ||
	fail "duplicate metric families"
ok "per-guest metrics from libvirt bulk stats"

$H vm stop "$S" --force --timeout 1 >/dev/null || fail "vm stop"
$H vm delete "$S" >/dev/null || fail "vm delete"
m=$($H metrics) || fail "hostctl metrics after delete"
case "$m" in *"guest=\"$S\""*) fail "metrics of a deleted guest";; esac
kill -TERM $pid
wait $pid || fail "agent exit code"
ok "api guest metrics"

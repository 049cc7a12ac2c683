#!/bin/bash
# Two real KVM guests through the agent (admin socket API) against the real libvirtd:
# create, start, suspend/resume, reboot, graceful and forced stop, delete; virsh must agree at
# every step and nothing may be left behind. Then bad descriptors leave nothing on the host.
. "$(dirname "$0")/lib.sh"
need_root
[ -e /dev/kvm ] || skip "no /dev/kvm"
libvirtd_lock shared
libvirtd_up || hard "libvirtd does not start (deploy/setup-host.sh installs it)"

# One worker: the stop below proves that waiting for a power-off holds none.
start_agent --task-workers=1
S1=hatest-$$-a
S2=hatest-$$-b
BR=habr$$
BR=${BR:0:15}
ip link add "$BR" type bridge || hard "cannot create bridge"
on_exit "ip link del $BR"
ip link set "$BR" up
on_exit "virsh -c qemu:///system destroy $S1; virsh -c qemu:///system undefine $S1 --nvram"
on_exit "virsh -c qemu:///system destroy $S2; virsh -c qemu:///system undefine $S2 --nvram"

status_of() { api GET "/servers/$1/status" | json 'j["status"]'; }
TAP1=hat$$x0; TAP1=${TAP1:0:15}
TAP2=hat$$x1; TAP2=${TAP2:0:15}

qemu-img create -q -f qcow2 "$T/disks/base.qcow2" 32M || hard "qemu-img"
cat >"$T/d1.json" <<JSON
{"desc": {"uuid": "$(uuid)", "name": "it disk guest", "cpu": 1, "mem": 128,
  "disks": [{"disk_id": "d1-$$", "index": 0, "size": 64, "format": "qcow2",
             "image_path": "$T/disks/base.qcow2"}],
  "metadata": {"owner": "test"}}}
JSON
# No "bw" here: this kernel has no sfq qdisc, which libvirt's bandwidth shaping needs (the
# rendered <bandwidth> is covered by the domain XML goldens).
cat >"$T/d2.json" <<JSON
{"desc": {"uuid": "$(uuid)", "name": "it nic guest", "cpu": 2, "cpu_sockets": 1, "mem": 128,
  "nics": [{"index": 0, "mac": "52:54:00:12:34:01", "bridge": "$BR", "ifname": "$TAP1"},
           {"index": 1, "mac": "52:54:00:12:34:02", "bridge": "$BR", "ifname": "$TAP2"}]}}
JSON

# ---- create ----
expect_api 200 POST "/servers/$S1/create" "$(cat "$T/d1.json")" >/dev/null
expect_api 200 POST "/servers/$S2/create" "$(cat "$T/d2.json")" >/dev/null
expect_eq "$(vstate $S1)" "shut off" "virsh state of $S1 after create"
expect_eq "$(status_of $S1)" "ready" "agent status of $S1 after create"
disk=$(ls "$T/disks" | grep -v base.qcow2)
[ -n "$disk" ] || fail "no disk created for $S1"
info=$(qemu-img info --output=json "$T/disks/$disk")
expect_eq "$(echo "$info" | json 'j["virtual-size"]')" "$((64 * 1024 * 1024))" "disk size"
expect_contains "$(echo "$info" | json 'j.get("backing-filename","")')" "base.qcow2" "backing image"
[ -f "$T/servers/$S1/desc" ] || fail "workspace descriptor missing"
# Creating the same guest again is idempotent; a different descriptor conflicts.
expect_api 200 POST "/servers/$S1/create" "$(cat "$T/d1.json")" | grep -q "already exists" || fail "idempotent create"
expect_api 409 POST "/servers/$S1/create" "$(cat "$T/d2.json")" >/dev/null
ok "create"

# ---- start ----
out=$(expect_api 200 POST "/servers/$S1/start" '{}')
expect_eq "$(echo "$out" | json 'j["is_running"]')" true "is_running"
[ "$(echo "$out" | json 'j["vnc_port"]')" -ge 5900 ] || fail "vnc_port in $out"
expect_api 200 POST "/servers/$S2/start" '{}' >/dev/null
for s in $S1 $S2; do
	expect_eq "$(vstate $s)" running "virsh state of $s"
	expect_eq "$(status_of $s)" running "agent status of $s"
	pid=$(cat /run/libvirt/qemu/$s.pid)
	tr '\0' ' ' </proc/$pid/cmdline | grep -qE 'accel=kvm|-accel kvm|-enable-kvm' || fail "$s is not running under KVM"
done
expect_api 200 POST "/servers/$S1/start" '{}' | grep -q "already running" || fail "idempotent start"
for t in $TAP1 $TAP2; do
	[ "$(basename "$(readlink /sys/class/net/$t/master)")" = "$BR" ] || fail "tap $t not on bridge $BR"
done
list=$(expect_api 200 GET /servers)
for s in $S1 $S2; do
	expect_eq "$(echo "$list" | json "[x['status'] for x in j['servers'] if x['id']=='$s'][0]")" running "list status of $s"
done
ok "start"

# ---- suspend / resume ----
expect_api 200 POST "/servers/$S1/suspend" '{}' >/dev/null
expect_eq "$(vstate $S1)" paused "virsh state after suspend"
expect_eq "$(status_of $S1)" suspend "agent status after suspend"
expect_api 200 POST "/servers/$S1/resume" '{}' >/dev/null
expect_eq "$(vstate $S1)" running "virsh state after resume"
expect_eq "$(status_of $S1)" running "agent status after resume"
ok "suspend/resume"

# ---- reboot: a cold reboot gives a fresh QEMU; a forced one resets the same QEMU ----
pid_before=$(cat /run/libvirt/qemu/$S2.pid)
expect_api 200 POST "/servers/$S2/reboot" '{"timeout": 1}' >/dev/null
expect_eq "$(vstate $S2)" running "virsh state after reboot"
[ "$(cat /run/libvirt/qemu/$S2.pid)" != "$pid_before" ] || fail "cold reboot kept the same QEMU"
pid_before=$(cat /run/libvirt/qemu/$S2.pid)
expect_api 200 POST "/servers/$S2/reboot" '{"is_force": true}' >/dev/null
expect_eq "$(cat /run/libvirt/qemu/$S2.pid)" "$pid_before" "reset keeps the QEMU"
ok "reboot"

# ---- monitor passthrough ----
out=$(expect_api 200 POST "/servers/$S1/monitor" '{"cmd": "info status"}')
expect_contains "$out" "running" "HMP info status"
out=$(expect_api 200 POST "/servers/$S1/monitor" '{"cmd": "{\"execute\":\"query-kvm\"}", "qmp": true}')
expect_contains "$out" '\"enabled\":true' "QMP query-kvm"
# Commands that write host files, open host paths or run programs are refused.
out=$(expect_api 403 POST "/servers/$S1/monitor" "{\"cmd\": \"screendump $T/shot.ppm\"}")
expect_contains "$out" "only read-only queries" "screendump refused"
[ -e "$T/shot.ppm" ] && fail "screendump wrote a host file"
expect_api 403 POST "/servers/$S1/monitor" '{"cmd": "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"exec:touch /tmp/x\"}}", "qmp": true}' >/dev/null
expect_api 403 POST "/servers/$S1/monitor" '{"cmd": "info status\nscreendump /tmp/y"}' >/dev/null
ok "monitor"

# ---- console (H1): a random password per guest, VNC authentication only, on the access address ----
con=$(expect_api 200 GET "/servers/$S1/console")
pw=$(echo "$con" | json 'j["password"]')
vport=$(echo "$con" | json 'j["vnc_port"]')
expect_eq "$(echo "$con" | json 'j["listen"]')" 127.0.0.1 "console listen address (the access address)"
[ ${#pw} = 8 ] || fail "console password '$pw' is not 8 characters"
expect_eq "$(stat -c %a "$T/servers/$S1/console-password")" 600 "console password file mode"
virsh -c qemu:///system dumpxml --security-info "$S1" | grep -q "passwd='$pw'" || fail "domain XML has no console password"
python3 - "$vport" "$pw" <<'PY' || fail "VNC authentication"
import socket, subprocess, sys
port, pw = int(sys.argv[1]), sys.argv[2]
def des(key, data):
    # VNC authentication: DES-ECB of the challenge, key = password bytes with bits reversed.
    k = bytes(int("{:08b}".format(b)[::-1], 2) for b in key.encode().ljust(8, b"\0")[:8])
    return subprocess.run(["openssl", "enc", "-des-ecb", "-nopad", "-K", k.hex(), "-provider",
                           "legacy", "-provider", "default"], input=data, capture_output=True,
                          check=True).stdout
def attempt(password):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    assert s.recv(12).startswith(b"RFB "), "no RFB greeting"
    s.sendall(b"RFB 003.008\n")
    n = s.recv(1)[0]
    types = list(s.recv(n))
    assert types == [2], "security types offered: %r (1 = None)" % types
    s.sendall(bytes([2]))
    challenge = s.recv(16)
    s.sendall(des(password, challenge))
    result = int.from_bytes(s.recv(4), "big")
    s.close()
    return result
assert attempt("wrongpw1") != 0, "a wrong password was accepted"
assert attempt(pw) == 0, "the guest's password was refused"
print("ok: only VNC authentication offered; wrong password refused, the guest's accepted")
PY
ok "console password"

# ---- stop: graceful (ACPI, then force at the timeout: these guests have no OS) and forced ----
# The agent has one worker (start_agent above): the wait for the power-off holds none, so S2
# suspends and resumes while S1's stop waits, and the stop says it was forced at its timeout.
t0=$(date +%s%N)
curl -s --unix-socket "$SOCK" -X POST -H 'Content-Type: application/json' --data-binary '{"timeout": 3}' \
	"http://localhost/servers/$S1/stop" >"$T/stop1.out" &
stop_pid=$!
sleep 0.5
t1=$(date +%s%N)
expect_api 200 POST "/servers/$S2/suspend" '{}' >/dev/null
expect_api 200 POST "/servers/$S2/resume" '{}' >/dev/null
side_ms=$((($(date +%s%N) - t1) / 1000000))
[ "$side_ms" -lt 2000 ] || fail "another guest's operations waited ${side_ms} ms behind a graceful stop"
wait "$stop_pid"
stop_ms=$((($(date +%s%N) - t0) / 1000000))
expect_contains "$(cat "$T/stop1.out")" '"details":"forced"' "a stop the guest ignores is forced at the timeout"
[ "$stop_ms" -ge 2900 ] || fail "forced after ${stop_ms} ms, before its 3 s timeout"
ok "a stop waiting for the power-off holds no worker: another guest's ops took ${side_ms} ms; forced after ${stop_ms} ms"
expect_eq "$(vstate $S1)" "shut off" "virsh state after graceful stop"
expect_eq "$(status_of $S1)" ready "agent status after stop"
out=$(expect_api 200 POST "/servers/$S2/stop" '{"is_force": true}')
expect_contains "$out" forced "forced stop"
expect_eq "$(vstate $S2)" "shut off" "virsh state after forced stop"
expect_api 200 POST "/servers/$S2/stop" '{}' | grep -q "already stopped" || fail "idempotent stop"
ok "stop"

# ---- delete ----
for s in $S1 $S2; do
	expect_api 200 DELETE "/servers/$s" >/dev/null
	virsh -c qemu:///system dominfo "$s" >/dev/null 2>&1 && fail "domain $s still defined"
	[ -e "$T/servers/$s" ] && fail "workspace of $s left"
	expect_api 200 DELETE "/servers/$s" | grep -q "already deleted" || fail "idempotent delete"
	expect_api 404 GET "/servers/$s/status" >/dev/null
done
# The disk files are the region's: it deletes them through the disk routes (CONTRACT.md 1.5).
[ "$(ls "$T/disks" | tr '\n' ' ')" = "base.qcow2 d1-$$ " ] || fail "disks after delete: $(ls "$T/disks")"
rm -f "$T/disks/d1-$$"
for t in $TAP1 $TAP2; do [ -e /sys/class/net/$t ] && fail "tap $t left"; done
ok "delete: domain, workspace and taps gone, disk files kept"

# ---- delete with an unreadable descriptor: the disk is not the agent's to remove anyway ----
S3=hatest-$$-c
on_exit "virsh -c qemu:///system undefine $S3"
expect_api 200 POST "/servers/$S3/create" "{\"desc\": {\"uuid\": \"$(uuid)\", \"name\": \"c\", \"cpu\": 1, \"mem\": 128, \"disks\": [{\"disk_id\": \"c-$$\", \"index\": 0, \"size\": 8}]}}" >/dev/null
# Another guest's disk never backs or is attached to a second guest (its data would be read).
out=$(expect_api 400 POST "/servers/$S1/create" "{\"desc\": {\"uuid\": \"$(uuid)\", \"name\": \"x\", \"cpu\": 1, \"mem\": 128, \"disks\": [{\"disk_id\": \"x-$$\", \"index\": 0, \"image_path\": \"$T/disks/c-$$\"}]}}")
expect_contains "$out" "disks[0].image_path: $T/disks/c-$$ is a disk of guest $S3" "backing on another guest's disk refused"
out=$(expect_api 400 POST "/servers/$S1/create" "{\"desc\": {\"uuid\": \"$(uuid)\", \"name\": \"x\", \"cpu\": 1, \"mem\": 128, \"cdroms\": [{\"path\": \"$T/disks/c-$$\"}]}}")
expect_contains "$out" "cdroms[0].path: $T/disks/c-$$ is a disk of guest $S3" "another guest's disk as a cdrom refused"
[ -e "$T/servers/$S1" ] && fail "workspace left after refusing another guest's disk"
[ -e "$T/disks/x-$$" ] && fail "disk left after refusing another guest's disk"
# The other way round: a path another guest reads (here a cdrom not there yet) never becomes
# a new guest's disk.
expect_api 200 POST "/servers/$S1/create" "{\"desc\": {\"uuid\": \"$(uuid)\", \"name\": \"x\", \"cpu\": 1, \"mem\": 128, \"cdroms\": [{\"path\": \"$T/disks/later-$$.iso\"}]}}" >/dev/null
out=$(expect_api 400 POST "/servers/$S1-b/create" "{\"desc\": {\"uuid\": \"$(uuid)\", \"name\": \"y\", \"cpu\": 1, \"mem\": 128, \"disks\": [{\"disk_id\": \"d\", \"index\": 0, \"size\": 8, \"path\": \"$T/disks/later-$$.iso\"}]}}")
expect_contains "$out" "disks[0].path: $T/disks/later-$$.iso is a backing image or cdrom of guest $S1" "disk at another guest's cdrom refused"
[ -e "$T/disks/later-$$.iso" ] && fail "disk created at another guest's cdrom path"
expect_api 200 DELETE "/servers/$S1" >/dev/null
ok "another guest's disk refused as a backing image and as a cdrom, and the reverse"
echo '{"desc": broken' >"$T/servers/$S3/desc"
expect_api 200 DELETE "/servers/$S3" >/dev/null
virsh -c qemu:///system dominfo "$S3" >/dev/null 2>&1 && fail "domain left after the delete"
[ -e "$T/servers/$S3" ] && fail "workspace left after the delete"
[ -e "$T/disks/c-$$" ] || fail "the delete removed the disk (the region's)"
rm -f "$T/disks/c-$$"
ok "delete with an unreadable descriptor: domain and workspace gone, disk kept"

# ---- bad descriptors: refused naming the field, nothing left on the host ----
bad() { # bad EXPECTED-SUBSTRING JSON
	local out
	out=$(api POST "/servers/$S1/create" "$2")
	[ "$(last_code)" = 400 ] || fail "bad descriptor accepted ($(last_code)): $2"
	expect_contains "$out" "$1" "refusal message"
	virsh -c qemu:///system dominfo "$S1" >/dev/null 2>&1 && fail "domain defined for a bad descriptor"
	[ -e "$T/servers/$S1" ] && fail "workspace left for a bad descriptor"
	[ "$(ls "$T/disks")" = base.qcow2 ] || fail "disk left for a bad descriptor: $(ls "$T/disks")"
}
U=$(uuid)
bad 'uuid' '{"desc": {"name": "x", "cpu": 1, "mem": 128}}'
bad 'mem' "{\"desc\": {\"uuid\": \"$U\", \"name\": \"x\", \"cpu\": 1, \"mem\": -5}}"
bad 'disks[0].path' "{\"desc\": {\"uuid\": \"$U\", \"name\": \"x\", \"cpu\": 1, \"mem\": 128, \"disks\": [{\"disk_id\": \"e1\", \"index\": 0, \"size\": 8, \"path\": \"$T/disks/../escape.qcow2\"}]}}"
bad 'disks[1].index' "{\"desc\": {\"uuid\": \"$U\", \"name\": \"x\", \"cpu\": 1, \"mem\": 128, \"disks\": [{\"disk_id\": \"e1\", \"index\": 0, \"size\": 8}, {\"disk_id\": \"e2\", \"index\": 0, \"size\": 8}]}}"
bad 'nics[0].mac' "{\"desc\": {\"uuid\": \"$U\", \"name\": \"x\", \"cpu\": 1, \"mem\": 128, \"nics\": [{\"index\": 0, \"mac\": \"zz:zz\", \"bridge\": \"$BR\"}]}}"
bad 'cpu' "{\"desc\": {\"uuid\": \"$U\", \"name\": \"x\", \"cpu\": \"two\", \"mem\": 128}}"
# Another guest's disk or a base image is never taken over (a delete would remove it).
out=$(expect_api 409 POST "/servers/$S1/create" "{\"desc\": {\"uuid\": \"$U\", \"name\": \"x\", \"cpu\": 1, \"mem\": 128, \"disks\": [{\"disk_id\": \"b\", \"index\": 0, \"size\": 32, \"path\": \"$T/disks/base.qcow2\"}]}}")
expect_contains "$out" "already exists and is not a disk of guest" "existing file refused"
[ -e "$T/servers/$S1" ] && fail "workspace left after refusing a foreign disk"
[ -f "$T/disks/base.qcow2" ] || fail "base image touched"
python3 -c "
import json,sys
print(json.dumps({'desc': {'uuid': '$U', 'name': 'n' * (10 * 1024 * 1024), 'cpu': 1, 'mem': 128}}))" >"$T/huge.json"
# A 10 MB name: refused either as too long a name or as too big a body, never accepted.
code=$(curl -s -o "$T/body" -w '%{http_code}' --unix-socket "$SOCK" -X POST --data-binary @"$T/huge.json" "http://localhost/servers/$S1/create")
case "$code" in 400|413) ;; *) fail "10 MB name: HTTP $code";; esac
[ -e "$T/servers/$S1" ] && fail "workspace left for a 10 MB name"
ok "bad descriptors"
kill -0 $AGENT_PID || fail "agent died"

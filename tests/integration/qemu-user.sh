#!/bin/bash
# Issue 12 "QEMU not as root": in the hostagent image (the pod of restart-lib.sh, its own
# libvirtd, node paths under $T) QEMU runs as hostagent-qemu through libvirt's DAC driver
# (deploy/image/qemu.conf user/group, dynamic_ownership = 0), and the agent gives it exactly
# the files it makes for a guest (config qemu_user).
# (a) A guest created and started through the API, with disks the descriptor creates (an
#     overlay on a root-owned base image in the disk root, a blank one), one made before by
#     the disk route (/disks/STORAGE/create/DISK), and a config drive: its QEMU runs
#     with uid/gid 64107, not 0; the disk is 64107:64107 0600, the config drive root:64107
#     0640; QEMU has the disks open read-write and the drive open; the agent reports it
#     running. Its NIC's tap (made by libvirt, as root) is on the bridge and in QEMU's fds.
#     Upgrade: with its files made root:root 0600 (as an image with QEMU as root left them) it
#     does not start; after an agent restart they are QEMU's again (an unclaimed root-only file
#     and the base image are not) and it starts.
# (b) A domain defined straight through the pod's libvirtd (virsh: the agent refuses such
#     paths) whose disk is a root-only file (root 0600 under $T/node) does not start: QEMU reports
#     "Permission denied" for that file. Control: the same domain on a copy of the file owned
#     by 64107 starts, so (b) fails only for the file's owner.
# Time: about 20 s warm; +45 s once for the image rootfs.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/restart-lib.sh"
libvirtd_lock shared
pod_setup
QUID=64107

pod start >/dev/null || hard "run-pod.py start failed"
pod_wait_ready 60
ok "pod started, agent ready"
log=$(podman logs "$POD-agent" 2>&1)
expect_contains "$log" "QEMU runs as uid=$QUID gid=$QUID" "agent log"
grep 'cannot reach' <<<"$log" && fail "the agent says QEMU cannot reach its files"

fail_diag() {
	pod_logs
	local f
	for f in "$H"/var/log/libvirt/qemu/haqu*.log; do
		[ -f "$f" ] && { echo "--- $f"; tail -n 15 "$f"; }
	done
}

proc_ids() { # PID: "uid gid" (real) of a process
	awk '/^Uid:/ {u=$2} /^Gid:/ {g=$2} END {print u, g}' "/proc/$1/status"
}

# ---- (a) a guest of the agent, with a disk and a config drive ----
# Paths as the pod's containers see them (the node's, mapped under $H on this machine).
DROOT=/opt/cloud/workspace/disks
mkdir -p "$H$DROOT/images"
qemu-img create -q -f qcow2 "$H$DROOT/images/haqu-base-$$.qcow2" 32M || hard "qemu-img"
chmod 0644 "$H$DROOT/images/haqu-base-$$.qcow2"
S=haqu$$g
POD_SIDS+=("$S")
# A disk made through the disk route (the region's call; synchronous without X-Task-Id) on the
# node's local storage (named after the access address, here the listen address).
ST=host_127.0.0.1_local_storage_0
RD=$S-route
out=$(expect_api 200 POST "/disks/$ST/create/$RD" '{"disk":{"format":"qcow2","disk_size_mb":16}}')
expect_eq "$(json 'j["disk_path"]' <<<"$out")" "$DROOT/$RD" "disk route: path"
on_exit "rm -f '$H$DROOT/$RD'"
# A NIC on a bridge of the host network (the pod's): libvirt makes the tap and hands QEMU its
# descriptor, as root.
BR=haqub$$
BR=${BR:0:15}
ip link add "$BR" type bridge || hard "cannot create bridge $BR"
on_exit "ip link del $BR"
ip link set "$BR" up
# Our own tap name: the host's libvirtd hands out vnetN on the same host network.
TAP=haqut$$
TAP=${TAP:0:15}
body=$(python3 - "$S" "$DROOT" "$$" "$BR" "$TAP" <<'P'
import json, sys, uuid
sid, droot, pid, br, tap = sys.argv[1:]
print(json.dumps({
    "desc": {"uuid": str(uuid.uuid4()), "name": sid, "cpu": 1, "mem": 128, "os_name": "Linux",
             "disks": [{"disk_id": sid + "-sys", "index": 0, "format": "qcow2",
                        "image_path": f"{droot}/images/haqu-base-{pid}.qcow2"},
                       {"disk_id": sid + "-data", "index": 1, "format": "qcow2", "size": 16},
                       {"disk_id": sid + "-route", "index": 2, "format": "qcow2", "size": 16,
                        "path": f"{droot}/{sid}-route"}],
             "nics": [{"index": 0, "mac": "52:54:00:7a:%02x:%02x" % (int(pid) >> 8 & 255, int(pid) & 255),
                       "bridge": br, "ifname": tap, "driver": "virtio"}]},
    "action": "create", "reset_password": True, "password": "haqu-Pw-1234", "enable_cloud_init": True,
}))
P
)
expect_api 200 POST "/servers/$S/create" "$body" >/dev/null
expect_api 200 POST "/servers/$S/start" '{}' >/dev/null
pid=$(qemu_pid "$S")
[ -n "$pid" ] && [ -d "/proc/$pid" ] || fail "no running QEMU for $S"
expect_eq "$(proc_ids "$pid")" "$QUID $QUID" "uid and gid of $S's QEMU (pid $pid)"
expect_eq "$(api GET "/servers/$S/status" | json 'j["status"]')" running "agent status of $S"
ok "QEMU of $S (pid $pid) runs as $(proc_ids "$pid"), not root"

xml=$(virsh_ dumpxml "$S")
# Each disk's own file (not the backing chain libvirt lists under it).
mapfile -t disks < <(python3 -c '
import sys, xml.etree.ElementTree as E
for d in E.fromstring(sys.stdin.read()).findall("devices/disk"):
    s = d.find("source")
    if s is not None and s.get("file"):
        print(s.get("file"))' <<<"$xml")
[ "${#disks[@]}" = 4 ] || fail "expected 3 disks and a config drive in the domain: ${disks[*]}"
iso=""
for f in "${disks[@]}"; do
	case $f in
	*.iso) iso=$f ;;
	"$DROOT"/*)
		expect_eq "$(stat -c '%u:%g %a' "$H$f")" "$QUID:$QUID 600" "owner and mode of disk $f"
		# QEMU has the disk open for writing (its fd table, seen as root).
		ls -l "/proc/$pid/fd" | grep -q " $f\$" || fail "QEMU has no descriptor on $f"
		for fd in /proc/"$pid"/fd/*; do
			[ "$(readlink "$fd")" = "$f" ] || continue
			flags=$(awk '/^flags:/ {print $2}' "/proc/$pid/fdinfo/${fd##*/}")
			[ $((8#$flags & 3)) = 2 ] || fail "QEMU opened $f with flags $flags, not O_RDWR"
		done
		;;
	*) fail "unexpected disk path $f" ;;
	esac
done
[ -n "$iso" ] || fail "no config drive in $S's domain"
expect_eq "$(stat -c '%u:%g %a' "$H$iso")" "0:$QUID 640" "owner and mode of the config drive"
expect_eq "$(stat -c '%u:%g %a' "$H$(dirname "$iso")")" "0:$QUID 710" "owner and mode of the workspace"
ls -l "/proc/$pid/fd" | grep -q " $iso\$" || fail "QEMU has no descriptor on the config drive"
expect_eq "$(stat -c '%u:%g %a' "$H$DROOT/images/haqu-base-$$.qcow2")" "0:0 644" "base image untouched"
ok "disks $QUID:$QUID 0600 open read-write (descriptor and disk route), config drive root:$QUID 0640 open, base image root 0644"
tap=$(virsh_ domiflist "$S" | awk 'NR == 1 {print $1}')
expect_eq "$tap" "$TAP" "tap of $S"
[ -d "/sys/class/net/$tap" ] || fail "no tap device for $S: $(virsh_ domiflist "$S")"
expect_eq "$(cat "/sys/class/net/$tap/master/ifindex" 2>/dev/null)" "$(cat "/sys/class/net/$BR/ifindex")" "$tap on $BR"
ls -l "/proc/$pid/fd" | grep -q ' /dev/net/tun$' || fail "QEMU of $S holds no tap descriptor"
ok "NIC: tap $tap on $BR, its descriptor in QEMU"
expect_api 200 POST "/servers/$S/stop" '{"is_force": true}' >/dev/null

# ---- upgrade: files made when QEMU ran as root ----
# An older image left the disks root:root 0600, the config drive root 0600 in a 0700
# workspace. The next agent gives exactly those to QEMU (claimed disks, config drives); an
# unclaimed root 0600 file in the disk root and the base image stay root's.
ws=$H$(dirname "$iso")
for f in "${disks[@]}" "$iso"; do chown 0:0 "$H$f" && chmod 0600 "$H$f"; done
chown 0:0 "$ws" && chmod 0700 "$ws"
truncate -s 1M "$H$DROOT/haqu-unclaimed-$$"
chmod 0600 "$H$DROOT/haqu-unclaimed-$$"
out=$(api POST "/servers/$S/start" '{}')
[ "$(last_code)" = 200 ] && fail "the guest started on root-only disks: $out"
ok "with root:root 0600 disks (an older image's) the guest does not start: $(last_code)"
pod kill agent >/dev/null
pod start agent >/dev/null
pod_wait_ready 60
for f in "${disks[@]}"; do
	case $f in
	*.iso) expect_eq "$(stat -c '%u:%g %a' "$H$f")" "0:$QUID 640" "config drive after the agent's restart" ;;
	*) expect_eq "$(stat -c '%u:%g %a' "$H$f")" "$QUID:$QUID 600" "disk $f after the agent's restart" ;;
	esac
done
expect_eq "$(stat -c '%u:%g %a' "$ws")" "0:$QUID 710" "workspace after the agent's restart"
expect_eq "$(stat -c '%u:%g %a' "$H$DROOT/haqu-unclaimed-$$")" "0:0 600" "an unclaimed root-only file"
expect_eq "$(stat -c '%u:%g %a' "$H$DROOT/images/haqu-base-$$.qcow2")" "0:0 644" "base image"
expect_api 200 POST "/servers/$S/start" '{}' >/dev/null
pid=$(qemu_pid "$S")
expect_eq "$(proc_ids "$pid")" "$QUID $QUID" "uid and gid of $S's QEMU after the upgrade"
expect_api 200 POST "/servers/$S/stop" '{"is_force": true}' >/dev/null
ok "after the agent's restart the guest's own disks and config drive are QEMU's again and it starts"

# ---- (b) a root-only file as a disk, through libvirt directly ----
# Under $T on this machine, seen by the pod's libvirtd and QEMU below a node path.
secret=/opt/cloud/workspace/haqu-secret-$$.raw
truncate -s 8M "$H$secret"
chmod 0600 "$H$secret"
expect_eq "$(stat -c '%u %a' "$H$secret")" "0 600" "the root-only file"
own=/opt/cloud/workspace/haqu-own-$$.raw
cp "$H$secret" "$H$own"
chown "$QUID:$QUID" "$H$own"
domxml() { # NAME FILE
	cat <<XML
<domain type='kvm'>
  <name>$1</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='$2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <graphics type='vnc' autoport='yes' listen='127.0.0.1'/>
  </devices>
</domain>
XML
}
D=haqu$$r
POD_SIDS+=("$D" "${D}c")
domxml "$D" "$secret" >"$T/$D.xml"
domxml "${D}c" "$own" >"$T/${D}c.xml"
virsh_ define "$T/$D.xml" >/dev/null || fail "virsh define $D"
virsh_ define "$T/${D}c.xml" >/dev/null || fail "virsh define ${D}c"
out=$(virsh_ start "$D" 2>&1) && fail "domain on the root-only $secret started: QEMU can read it"
expect_contains "$out" "Permission denied" "virsh start $D"
expect_contains "$out" "$secret" "virsh start $D names the file"
expect_eq "$(virsh_ domstate "$D" | head -n1)" "shut off" "state of $D"
echo "# $(grep -o "Could not open[^\"]*" <<<"$out" | head -n1)"
ok "a domain whose disk is a root-only file does not start: Permission denied from QEMU"
out=$(virsh_ start "${D}c" 2>&1) || fail "control domain on a $QUID-owned copy did not start: $out"
cpid=$(qemu_pid "${D}c")
expect_eq "$(proc_ids "$cpid")" "$QUID $QUID" "uid and gid of the control domain's QEMU"
virsh_ destroy "${D}c" >/dev/null
ok "control: the same domain on a copy owned by $QUID starts"
echo PASS

#!/bin/bash
# Drives a running Cloudpods control plane (keystone, region, scheduler, glance) through what a
# user does with a VM on a hostagent node, and checks both sides at every step: the region
# (climc and its REST API) and the node (libvirt, the agent's workspace and disk roots).
# Not part of `make check`: CI cannot build Cloudpods. See README.md ("Against a real Cloudpods
# control plane").
#
# Environment:
#   OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME (+ OS_DOMAIN_NAME,
#     OS_PROJECT_DOMAIN, OS_REGION_NAME, OS_ENDPOINT_TYPE)   as climc takes them
#   HOSTAGENT_CONFIG   the agent's host.conf (auth_url etc. for the same control plane)
#   HOSTAGENT          the agent binary (default: the build tree's hostagent); used for
#                      --print-config, and to start the agent when START_AGENT=1
#   START_AGENT=1      start the agent here (as root; log in $WORK/agent.log) and stop it at
#                      the end; otherwise an agent already running with HOSTAGENT_CONFIG is used
#   NET                guest network (default vnet0); its wire must be the one the agent's
#                      access network is on
#   WORK               scratch directory (default: a new one under /tmp)
#   KEEP=1             leave a failed run's server and image in place (default: purged)
# climc on PATH. Exit: 0 every step reached its state, 1 a step failed (the rest is not run),
# 77 no control plane given, 99 a setup error.
set -u
: "${top_builddir:=$(cd "$(dirname "$0")/../.." && pwd)}"
HOSTAGENT=${HOSTAGENT:-$top_builddir/hostagent}
NET=${NET:-vnet0}
T0=$SECONDS
STEP_T0=$SECONDS
STEP=
STATUS_FAILED=

skip() { echo "SKIP: $*" >&2; exit 77; }
hard() { echo "ERROR: $*" >&2; exit 99; }
[ -n "${OS_AUTH_URL:-}" ] || skip "no control plane given: set OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME (e.g. source the control plane's env.sh)"
command -v climc >/dev/null || skip "climc is not on PATH"
[ -n "${HOSTAGENT_CONFIG:-}" ] || skip "HOSTAGENT_CONFIG (the agent's host.conf) is not set"
for c in jq curl virsh qemu-img md5sum; do command -v $c >/dev/null || hard "$c is missing"; done
[ -x "$HOSTAGENT" ] || hard "no agent binary at $HOSTAGENT (set HOSTAGENT)"
WORK=${WORK:-$(mktemp -d /tmp/hostagent-interop.XXXXXX)}
mkdir -p "$WORK"

CLEANUPS=()
cleanup() {
	local i
	for ((i = ${#CLEANUPS[@]} - 1; i >= 0; i--)); do eval "${CLEANUPS[$i]}" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

now() { printf '%6ds' $((SECONDS - T0)); }
step() {
	STEP=$1
	STEP_T0=$SECONDS
	echo "[$(now)] step: $STEP"
}
done_step() { echo "[$(now)] ok:   $STEP ($((SECONDS - STEP_T0)) s)${1:+: $1}"; }
fail() {
	echo "[$(now)] FAIL: $STEP: $*" >&2
	declare -F fail_diag >/dev/null && fail_diag >&2
	exit 1
}
# within SECONDS DESCRIPTION COMMAND...: polls COMMAND once a second until it succeeds;
# fails the step with DESCRIPTION and COMMAND's last output when the bound passes.
within() {
	local t=$1 what=$2 end out
	shift 2
	end=$((SECONDS + t))
	while ! out=$("$@" 2>&1); do
		[ $SECONDS -ge $end ] && fail "$what not reached within $t s (last: $(echo "$out" | tail -n 3))"
		"$@" >/dev/null 2>&1 # in this shell: server_is notes a failure status
		[ -n "$STATUS_FAILED" ] && fail "$what: the region says $STATUS_FAILED$(fail_reason)"
		sleep 1
	done
}
cj() { climc --output-format json "$@" 2>/dev/null; }
# eq VALUE WANT: succeeds when equal, prints the value otherwise
eq() { [ "$1" = "$2" ] || { echo "got '$1', want '$2'"; return 1; }; }

# ---- configuration of the node ----
PCONF=$("$HOSTAGENT" --config "$HOSTAGENT_CONFIG" --print-config) || hard "cannot read $HOSTAGENT_CONFIG"
conf() { echo "$PCONF" | sed -n "s/^$1: \"\\{0,1\\}\\([^\"]*\\)\"\\{0,1\\}\$/\\1/p" | head -n1; }
conf_list1() { echo "$PCONF" | sed -n "/^$1:/,/^[a-z]/s/^  - \"\\{0,1\\}\\([^\"]*\\)\"\\{0,1\\}\$/\\1/p" | head -n1; }
STATE=$(conf state_dir)
SERVERS=$(conf servers_path)
ROOT=$(conf_list1 local_image_path)
LIBVIRT=$(conf libvirt_uri)
NETENTRY=$(conf_list1 networks)
ACCESS_IP=${NETENTRY##*/}
PORT=$(conf port)
[ -n "$STATE" ] && [ -n "$SERVERS" ] && [ -n "$ROOT" ] || hard "state_dir, servers_path or local_image_path missing in $HOSTAGENT_CONFIG"
case "$ACCESS_IP" in *.*.*.*) ;; *) hard "HOSTAGENT_CONFIG needs networks: [IFNAME/BRIDGE/IP] (the access address)";; esac
virsh_() { virsh -c "$LIBVIRT" "$@"; }

# ---- the control plane ----
TOKEN=$(curl -sf -D- -o /dev/null -H 'Content-Type: application/json' -d "$(jq -n \
	--arg u "$OS_USERNAME" --arg p "$OS_PASSWORD" --arg d "${OS_DOMAIN_NAME:-Default}" \
	--arg pr "${OS_PROJECT_NAME:-system}" --arg pd "${OS_PROJECT_DOMAIN:-Default}" \
	'{auth:{identity:{methods:["password"],password:{user:{name:$u,password:$p,domain:{name:$d}}}},scope:{project:{name:$pr,domain:{name:$pd}}}}}')" \
	"${OS_AUTH_URL%/}/auth/tokens" | awk 'tolower($1)=="x-subject-token:"{print $2}' | tr -d '\r')
[ -n "$TOKEN" ] || skip "keystone at $OS_AUTH_URL did not give a token"
CATALOG=$(curl -sf -H "X-Auth-Token: $TOKEN" -H "X-Subject-Token: $TOKEN" "${OS_AUTH_URL%/}/auth/tokens" | jq '.token.catalog')
endpoint() { # TYPE
	echo "$CATALOG" | jq -r --arg t "$1" --arg r "${OS_REGION_NAME:-}" \
		'[.[] | select(.type == $t) | .endpoints[] | select($r == "" or .region_id == $r or .region == $r) | select(.interface == "internal" or .interface == "public")][0].url // empty'
}
REGION=$(endpoint compute_v2)
[ -n "$REGION" ] || REGION=$(endpoint compute)
[ -n "$REGION" ] || hard "no compute_v2 endpoint in the catalog"
rget() { curl -s -H "X-Auth-Token: $TOKEN" "${REGION%/}$1"; }
echo "# control plane: $OS_AUTH_URL, region $REGION${CLOUDPODS_COMMIT:+, cloudpods $CLOUDPODS_COMMIT}"
echo "# node: $HOSTAGENT_CONFIG (access $ACCESS_IP:$PORT, servers $SERVERS, disks $ROOT, $LIBVIRT)"

# The reason of the latest failed task of the server, from the region's event log.
fail_reason() {
	[ -n "${SID:-}" ] || return 0
	local r
	r=$(climc server-event --limit 20 "$SID" 2>/dev/null | grep -o '__reason__[^|]*' | head -n1 | head -c 600)
	[ -n "$r" ] && echo " ($r)"
}
fail_diag() {
	[ -n "${SID:-}" ] && { echo "--- region: server $SID"; cj server-show "$SID" | jq -c '{status,power_states,host_id,pending_deleted}'; }
	[ -f "$WORK/agent.log" ] && { echo "--- agent log (last 30 lines)"; tail -n 30 "$WORK/agent.log"; }
}

if [ "${START_AGENT:-}" = 1 ]; then
	[ "$(id -u)" = 0 ] || hard "START_AGENT=1 needs root"
	"$HOSTAGENT" --config "$HOSTAGENT_CONFIG" >>"$WORK/agent.log" 2>&1 &
	AGENT_PID=$!
	CLEANUPS+=("kill -TERM $AGENT_PID; wait $AGENT_PID")
fi

# ---- 1. the host registers ----
step "host registers (hypervisor, netif with wire, storage with cache, online)"
within 60 "host id in $STATE/host-id" test -s "$STATE/host-id"
HID=$(cat "$STATE/host-id")
host_is() {
	local h
	h=$(cj host-show "$HID") || return 1
	eq "$(echo "$h" | jq -r '[.host_type, .host_status, .status, .access_ip, .manager_uri] | join(" ")')" \
		"hypervisor online running $ACCESS_IP http://$ACCESS_IP:$PORT"
}
within 60 "host $HID hypervisor, online, running at $ACCESS_IP" host_is
NIC=$(cj host-list --details --id "$HID" | jq -c --arg ip "$ACCESS_IP" '[.data[0].nic_info[]? | select(.ip_addr == $ip)][0]')
WIRE=$(echo "$NIC" | jq -r '.wire // empty')
[ -n "$WIRE" ] || fail "no netif with $ACCESS_IP and a wire in the region: $NIC"
[ "$(echo "$NIC" | jq -r '.nic_type, .link_up, (.bridge != "")' | tr '\n' ' ')" = "admin true true " ] ||
	fail "access netif not admin, up, with a bridge: $NIC"
SGID=$(cj host-storage-list --host "$HID" | jq -r --arg r "$ROOT" '.data[] | select(.mount_point == $r) | .storage_id')
[ -n "$SGID" ] || fail "no storage of the host mounted at $ROOT"
SG=$(cj storage-show "$SGID")
[ "$(echo "$SG" | jq -r '[.storage_type, .status, .enabled] | join(" ")')" = "local online true" ] ||
	fail "storage $SGID: $(echo "$SG" | jq -c '{storage_type, status, enabled}')"
SCID=$(echo "$SG" | jq -r '.storagecache_id // empty')
[ -n "$SCID" ] || fail "storage $SGID has no storagecache"
done_step "host $HID, netif $(echo "$NIC" | jq -r '.mac') on wire $WIRE bridge $(echo "$NIC" | jq -r '.bridge'), storage $SGID cache $SCID"

# ---- 2. host-enable ----
step "host-enable"
climc host-enable "$HID" >/dev/null 2>"$WORK/err" || fail "host-enable: $(cat "$WORK/err")"
within 10 "host enabled" sh -c "[ \"\$(climc --output-format json host-show $HID 2>/dev/null | jq -r .enabled)\" = true ]"
done_step

# ---- 3. an image uploaded to the image service ----
step "image upload (qcow2, 64 MiB virtual)"
IMGNAME=interop-$(date +%s)-$$
qemu-img create -q -f qcow2 "$WORK/img.qcow2" 64M || hard "qemu-img create"
IMG_MD5=$(md5sum <"$WORK/img.qcow2" | cut -d' ' -f1)
IMG=$(cj image-upload --format qcow2 --os-type Linux "$IMGNAME" "$WORK/img.qcow2" | jq -r '.id // empty')
[ -n "$IMG" ] || fail "image-upload gave no id: $(climc image-upload --help >/dev/null 2>&1; echo)"
# Glance uploads images protected: image-delete answers 403 "image is protected" until unprotected.
[ -n "${KEEP:-}" ] || CLEANUPS+=("climc image-update --unprotected $IMG && climc image-delete $IMG")
image_active() { eq "$(cj image-show "$IMG" | jq -r '[.status, .checksum] | join(" ")')" "active $IMG_MD5"; }
within 60 "image $IMG active with checksum $IMG_MD5" image_active
done_step "image $IMG"

# ---- 4. server-create from that image with a data disk, on this host ----
step "server-create (system disk from the image, 1 GiB data disk, $NET, auto-start)"
VMNAME=interop-vm-$$
OUT=$(cj server-create --hypervisor kvm --prefer-host "$HID" --mem-spec 128M --ncpu 1 \
	--disk "$IMG" --disk 1g --net "$NET" --allow-delete --auto-start --os-type Linux "$VMNAME")
SID=$(echo "$OUT" | jq -r '.id // empty')
[ -n "$SID" ] || fail "server-create: $(climc server-create --hypervisor kvm --prefer-host "$HID" --mem-spec 128M --ncpu 1 --disk "$IMG" --disk 1g --net "$NET" --allow-delete --auto-start --os-type Linux --dry-run "$VMNAME" 2>&1 | tail -n 3)"
[ -n "${KEEP:-}" ] || CLEANUPS+=("climc server-delete --override-pending-delete $SID")
server_status() { cj server-show "$SID" | jq -r '.status'; }
# A failure status ends the step at once (the region will not leave it by itself).
server_is() {
	local st
	st=$(server_status)
	case "$st" in *fail*) STATUS_FAILED=$st;; esac
	eq "$st" "$1"
}
dom_is() { eq "$(virsh_ domstate "$SID" 2>&1 | head -n1)" "$1"; }
within 300 "server $SID running in the region" server_is running
within 10 "libvirt domain $SID running" dom_is running
[ "$(cj server-show "$SID" | jq -r .host_id)" = "$HID" ] || fail "server not on host $HID"
[ -d "$SERVERS/$SID" ] || fail "no workspace $SERVERS/$SID"
DISKS=$(cj disk-list --server "$SID" --details | jq -c '[.data[] | {id, disk_type, disk_size, access_path, status}]')
[ "$(echo "$DISKS" | jq length)" = 2 ] || fail "the region has $(echo "$DISKS" | jq length) disks for the server: $DISKS"
SYSDISK=$(echo "$DISKS" | jq -r '.[] | select(.disk_type == "sys") | .id')
DATADISK=$(echo "$DISKS" | jq -r '.[] | select(.disk_type == "data") | .id')
for d in $SYSDISK $DATADISK; do
	[ -f "$ROOT/$d" ] || fail "disk $d: no file $ROOT/$d on the node"
	virsh_ domblklist "$SID" | grep -q "$ROOT/$d" || fail "disk $d not in the domain"
done
[ "$(echo "$DISKS" | jq -r '.[] | select(.id == "'"$DATADISK"'") | .disk_size')" = 1024 ] || fail "data disk size in the region: $DISKS"
[ -f "$ROOT/image_cache/$IMG" ] || fail "image not cached at $ROOT/image_cache/$IMG"
[ "$(md5sum <"$ROOT/image_cache/$IMG" | cut -d' ' -f1)" = "$IMG_MD5" ] || fail "cached image differs from the upload"
qemu-img info -U "$ROOT/$SYSDISK" | grep -q "backing file: $ROOT/image_cache/$IMG" || fail "system disk not backed by the cached image"
cached_image() { rget "/storagecachedimages?storagecache_id=$SCID&cachedimage_id=$IMG&scope=system" |
	jq -r --arg i "$IMG" '[.storagecachedimages[]? | select(.cachedimage_id == $i)][0] | "\(.status) \(.path)"'; }
[ "$(cached_image)" = "active $ROOT/image_cache/$IMG" ] || fail "the region's cached image: $(cached_image)"
done_step "server $SID, disks sys $SYSDISK data $DATADISK, image cached in $SCID"

# ---- 5. server-stop ----
step "server-stop"
climc server-stop "$SID" >/dev/null 2>"$WORK/err" || fail "server-stop: $(cat "$WORK/err")"
within 120 "server ready in the region" server_is ready
within 10 "libvirt domain shut off" dom_is "shut off"
done_step

# ---- 6. server-start ----
step "server-start"
climc server-start "$SID" >/dev/null 2>"$WORK/err" || fail "server-start: $(cat "$WORK/err")"
within 120 "server running in the region" server_is running
within 10 "libvirt domain running" dom_is running
done_step

# ---- 7. server-vnc and the monitor ----
step "server-vnc and server-monitor"
VNC=$(cj server-vnc "$SID")
DOMVNC=$(virsh_ vncdisplay "$SID" 2>/dev/null | head -n1)
PORT_R=$(echo "$VNC" | jq -r '.port // empty')
[ -n "$DOMVNC" ] || fail "the domain has no VNC display"
[ "$PORT_R" = "$((5900 + ${DOMVNC##*:}))" ] || fail "server-vnc port '$PORT_R' (reply $VNC) is not the domain's $DOMVNC"
MON=$(climc server-monitor "$SID" "info status" 2>&1)
case "$MON" in *running*) ;; *) fail "server-monitor 'info status': $MON";; esac
done_step "vnc $DOMVNC, monitor: $(echo "$MON" | tr -s '\n ' ' ' | head -c 80)"

# ---- 8. disk resize ----
step "disk-resize data disk 1g -> 2g"
climc disk-resize "$DATADISK" 2g >/dev/null 2>"$WORK/err" || fail "disk-resize: $(cat "$WORK/err")"
disk_size_is() { eq "$(cj disk-show "$DATADISK" | jq -r '[.disk_size, .status] | join(" ")')" "2048 ready"; }
within 120 "data disk 2048 MB and ready in the region" disk_size_is
vsize() { qemu-img info -U --output=json "$ROOT/$DATADISK" | jq -r '."virtual-size"'; }
within 10 "disk file 2 GiB" eq "$(vsize)" $((2048 << 20))
within 30 "server running after the resize" server_is running
done_step

# ---- 9. server-delete (pending delete) ----
step "server-delete (pending delete)"
climc server-delete "$SID" >/dev/null 2>"$WORK/err" || fail "server-delete: $(cat "$WORK/err")"
pending() { eq "$(cj server-show "$SID" | jq -r '.pending_deleted')" true; }
within 120 "server pending_deleted in the region" pending
within 60 "server ready (stopped) in the region" server_is ready
within 10 "libvirt domain shut off" dom_is "shut off"
for d in $SYSDISK $DATADISK; do [ -f "$ROOT/$d" ] || fail "pending delete removed disk $d"; done
done_step

# ---- 10. purge ----
step "server-delete --override-pending-delete (purge)"
climc server-delete --override-pending-delete "$SID" >/dev/null 2>"$WORK/err" || fail "purge: $(cat "$WORK/err")"
server_gone() { [ "$(rget "/servers/$SID?pending_delete=all&scope=system" | jq -r '.code // empty')" = 404 ]; }
within 180 "server gone from the region" server_gone
no_domain() { ! virsh_ dominfo "$SID" >/dev/null 2>&1; }
within 30 "no libvirt domain" no_domain
within 30 "no workspace" sh -c "[ ! -e '$SERVERS/$SID' ]"
for d in $SYSDISK $DATADISK; do
	within 30 "disk file $d removed" sh -c "[ ! -e '$ROOT/$d' ]"
	[ "$(rget "/disks/$d?pending_delete=all&scope=system" | jq -r '.code // empty')" = 404 ] || fail "disk $d still in the region"
done
[ -f "$ROOT/image_cache/$IMG" ] || fail "the cached image was removed with the guest"
[ "$(cached_image)" = "active $ROOT/image_cache/$IMG" ] || fail "the region's cached image after the purge: $(cached_image)"
done_step "nothing of $SID left; cached image kept"

echo "[$(now)] PASS: all steps ($((SECONDS - T0)) s)"

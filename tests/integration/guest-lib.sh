# What the scripts that boot the Debian test image share (guest-boot, guest-dhcp, guest-qga,
# guest-deploy): sourced after lib.sh. Each name a test creates carries its PREFIX and $$.
#
#   guest_prepare          qemu-system-x86_64 and xorriso present, the cached test image built
#                          (tests/guest-image, under a lock), libvirtd up (shared lock), the
#                          image linked as $T/disks/images/guest.qcow2; sets IMAGE
#   guest_net PREFIX NS_CIDR [BR_CIDR]
#                          a host bridge PREFIX$$ (with BR_CIDR when given) and a veth whose
#                          other end is in the network namespace PREFIX-$$ with NS_CIDR; sets
#                          NS BR VH VN; all removed at exit
#   guest_static PREFIX NET  guest_net PREFIX NET.1/24 for the guest SID=PREFIX-$$-vm, whose NIC
#                          MAC (random) is to have the static address GUEST_IP=NET.10
#   guest_static_seed HOSTNAME
#                          the NoCloud seed ISO of that guest: its hostname, GUEST_IP/24 with the
#                          gateway NET.1 on the NIC MAC, more #cloud-config lines from stdin
#   guest_static_desc NAME the create descriptor of that guest (2 vCPUs, 512 MiB, the image as
#                          backing file of its system disk, its NIC on BR, the seed ISO)
#   random_mac             a random locally administered QEMU MAC (52:54:00:...)
#   guest_seed_iso         the NoCloud seed $T/seed/{user-data,meta-data,network-config} as the
#                          ISO $T/disks/seed.iso
#   guest_console          the serial console of $SID appended to $T/console.log from now on
#   wait_ping IP           waits (BOOT_LIMIT s from t0) for IP to answer ping from $NS while
#                          $SID runs; fails otherwise
#   qga CMD                a guest agent command to ${QGA_SID:-$SID} straight through libvirt
#                          (QGA_TIMEOUT s, default 5)
#   qga_exec PROGRAM ARG...  runs a program in the guest through the guest agent; prints its
#                          stdout once it exited

guest_prepare() {
	command -v qemu-system-x86_64 >/dev/null || hard "qemu-system-x86_64 is not installed"
	IMAGE=$(flock /tmp/guest-image.lock "$top_srcdir/tests/guest-image/build.sh" | tail -n1) ||
		hard "the guest image build failed"
	[ -s "$IMAGE" ] || hard "no guest image at '$IMAGE'"
	command -v xorriso >/dev/null || hard "xorriso missing (tests/guest-image/build.sh installs it)"
	libvirtd_lock shared
	libvirtd_up || hard "libvirtd does not start"
	mkdir -p "$T/disks/images"
	ln "$IMAGE" "$T/disks/images/guest.qcow2" 2>/dev/null || cp "$IMAGE" "$T/disks/images/guest.qcow2"
}

guest_net() {
	local prefix=$1 ns_cidr=$2 br_cidr=${3:-}
	NS=$prefix-$$
	BR=$prefix$$
	VH=$prefix$$h
	VN=$prefix$$n
	ip netns add "$NS" || hard "cannot create network namespace $NS"
	on_exit "ip netns del $NS"
	ip link add "$BR" type bridge || hard "cannot create bridge $BR"
	on_exit "ip link del $BR"
	ip link add "$VH" type veth peer name "$VN" || hard "cannot create veth $VH"
	on_exit "ip link del $VH"
	ip link set "$VH" master "$BR"
	ip link set "$VH" up
	[ -z "$br_cidr" ] || ip addr add "$br_cidr" dev "$BR"
	ip link set "$BR" up
	ip link set "$VN" netns "$NS"
	ip -n "$NS" link set lo up
	ip -n "$NS" addr add "$ns_cidr" dev "$VN"
	ip -n "$NS" link set "$VN" up
}

guest_static() {
	guest_net "$1" "$2.1/24"
	GUEST_IP=$2.10
	MAC=$(random_mac)
	SID=$1-$$-vm
}

guest_static_seed() {
	mkdir -p "$T/seed"
	printf 'instance-id: %s\nlocal-hostname: %s\n' "$SID" "$1" >"$T/seed/meta-data"
	{
		printf '#cloud-config\nhostname: %s\n' "$1"
		cat
	} >"$T/seed/user-data"
	cat >"$T/seed/network-config" <<N
version: 2
ethernets:
  eth0:
    match: {macaddress: "$MAC"}
    set-name: eth0
    addresses: [$GUEST_IP/24]
    gateway4: ${GUEST_IP%.*}.1
N
	guest_seed_iso
}

guest_static_desc() {
	cat <<D
{"desc": {"uuid": "$(uuid)", "name": "$1",
 "cpu": 2, "mem": 512, "machine": "pc", "bios": "BIOS", "boot_order": "c",
 "disks": [{"disk_id": "$SID-sys", "index": 0, "format": "qcow2", "driver": "virtio",
            "image_path": "$T/disks/images/guest.qcow2"}],
 "nics": [{"index": 0, "mac": "$MAC", "bridge": "$BR", "driver": "virtio"}],
 "cdroms": [{"path": "$T/disks/seed.iso"}]}}
D
}

random_mac() { printf '52:54:00:%02x:%02x:%02x\n' $((RANDOM % 256)) $((RANDOM % 256)) $((RANDOM % 256)); }

guest_seed_iso() {
	xorriso -as mkisofs -quiet -o "$T/disks/seed.iso" -V cidata -J -r \
		"$T/seed/user-data" "$T/seed/meta-data" "$T/seed/network-config" ||
		hard "cannot build the NoCloud seed"
}

guest_console() {
	local pty
	pty=$(virsh -c qemu:///system ttyconsole "$SID") || fail "no serial console"
	cat "$pty" >>"$T/console.log" 2>/dev/null &
	on_exit "kill $! 2>/dev/null"
}

wait_ping() {
	while ! ip netns exec "$NS" ping -c1 -W1 -q "$1" >/dev/null 2>&1; do
		[ "$(vstate "$SID")" = running ] || fail "guest stopped while booting: $(vstate "$SID")"
		[ $((SECONDS - t0)) -lt "$BOOT_LIMIT" ] || fail "no ping from $1 within $BOOT_LIMIT s"
		sleep 0.5
	done
}

qga() { virsh -c qemu:///system qemu-agent-command --timeout "${QGA_TIMEOUT:-5}" "${QGA_SID:-$SID}" "$1"; }

qga_exec() {
	local args pid st
	args=$(python3 -c 'import json,sys; print(json.dumps({"execute": "guest-exec", "arguments":
		{"path": sys.argv[1], "arg": sys.argv[2:], "capture-output": True}}))' "$@")
	pid=$(qga "$args" | json 'j["return"]["pid"]') || return 1
	for _ in $(seq 600); do
		st=$(qga "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":$pid}}") || return 1
		if [ "$(echo "$st" | json 'j["return"]["exited"]')" = true ]; then
			echo "$st" | json '__import__("base64").b64decode(j["return"].get("out-data", "")).decode()'
			return 0
		fi
		sleep 0.2
	done
	return 1
}

#!/bin/bash
# A real guest OS created through the API boots: the Debian test image (tests/guest-image,
# cached) as the backing image of the guest's copy-on-write system disk, virt_type qemu (TCG:
# KVM on these machines is kvm_pvm, which cannot run a guest OS), one NIC on a host bridge whose
# other side is a veth in a network namespace of this test. cloud-init applies the static address
# and hostname of a NoCloud seed on a CD-ROM; the guest must answer ping from the namespace and
# its guest agent must report the seed's hostname. `stop` with a timeout then powers it off by
# the ACPI power button ("graceful"), well before the timeout.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/guest-lib.sh"
need_root
BOOT_LIMIT=${GUEST_BOOT_LIMIT:-120} # seconds from start to ping (about 20 s measured here)
guest_prepare

# ---- network: host bridge <-> veth <-> namespace (the test side, 10.213.0.1/24) ----
guest_static hagb 10.213.0

# ---- the guest's disks: the cached image as backing file, the NoCloud seed ----
HOSTNAME_WANT=vm-boot-$$
guest_static_seed "$HOSTNAME_WANT" <<U
runcmd:
  - [ sh, -c, "echo seed-ran > /run/seed-marker" ]
U

start_agent --virt-type qemu
on_exit "virsh -c qemu:///system destroy $SID; virsh -c qemu:///system undefine --nvram $SID"
fail_diag() {
	echo "--- domain XML"; virsh -c qemu:///system dumpxml "$SID" 2>/dev/null | head -n 80
	echo "--- /var/log/libvirt/qemu/$SID.log"; tail -n 20 "/var/log/libvirt/qemu/$SID.log" 2>/dev/null
	echo "--- serial console"; tr -d '\r' <"$T/console.log" 2>/dev/null | tail -n 40
}

# What the host says about the domain type.
expect_contains "$(api GET /metrics)" 'hostagent_virt_type{type="qemu"} 1' "metrics"
host=$(expect_api 200 POST /hosts/h/sync '{}')
expect_eq "$(echo "$host" | json 'j["host"]["sys_info"]["virt_type"]')" qemu "sys_info.virt_type"

expect_api 200 POST "/servers/$SID/create" "$(guest_static_desc "guest boot")" >/dev/null
xml=$(virsh -c qemu:///system dumpxml --inactive "$SID")
expect_contains "$xml" "<domain type='qemu'" "domain type"
expect_contains "$(qemu-img info -U "$T/disks/$SID-sys")" "backing file: $T/disks/images/guest.qcow2" \
	"system disk is an overlay of the image"

t0=$SECONDS
out=$(expect_api 200 POST "/servers/$SID/start" '{}')
expect_eq "$(echo "$out" | json 'j["is_running"]')" true "start"
# The serial console (a pty) goes to a file, for the failure report.
guest_console
wait_ping "$GUEST_IP"
BOOT_TO_PING=$((SECONDS - t0))
ok "guest booted from its disk under TCG and answered ping from the namespace after ${BOOT_TO_PING} s"

# The guest agent answers and cloud-init applied the seed's hostname.
wait_for 60 qga '{"execute":"guest-ping"}' || fail "qemu-guest-agent does not answer"
got=$(qga '{"execute":"guest-get-host-name"}' | json 'j["return"]["host-name"]')
expect_eq "$got" "$HOSTNAME_WANT" "hostname from the NoCloud seed"
ok "guest agent answers after $((SECONDS - t0)) s; hostname $got from the seed"

# The power button is only handled once logind runs: press it after the boot finished, as a
# user would (a press before that is lost, and the stop is forced at the timeout).
booted=$(qga_exec /bin/systemctl is-system-running --wait) || fail "cannot ask the guest's systemd"
case $booted in running | degraded) ;; *) fail "guest boot did not finish: '$booted'" ;; esac
BOOT_DONE=$((SECONDS - t0))
ok "guest boot finished after ${BOOT_DONE} s (systemd: $booted)"

# ACPI stop: the power button, the guest powers itself off.
t1=$SECONDS
out=$(expect_api 200 POST "/servers/$SID/stop" '{"timeout": 30}')
STOP_S=$((SECONDS - t1))
expect_eq "$(echo "$out" | json 'j["details"]')" graceful "stop answer"
expect_eq "$(vstate "$SID")" "shut off" "state after stop"
[ "$STOP_S" -lt 30 ] || fail "ACPI stop took ${STOP_S} s"
ok "stop powered the guest off by ACPI in ${STOP_S} s (graceful)"

expect_api 200 DELETE "/servers/$SID" >/dev/null
echo "# boot-to-ping ${BOOT_TO_PING} s, boot finished ${BOOT_DONE} s, ACPI stop ${STOP_S} s, image $(du -m "$IMAGE" | cut -f1) MiB"

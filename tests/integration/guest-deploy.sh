#!/bin/bash
# First-boot configuration (deploy) through the config drive the AGENT builds: a create with
# Cloudpods' deploy fields (password, reset_password, public_key, deploys[], hostname and the
# NIC's address in the desc) boots the Debian test image (TCG) with a NoCloud ISO attached as a
# read-only CD-ROM; root logs in over ssh from the namespace with the key, root's password hash
# is that of the password, the deployed file holds its content, the hostname and the static
# address are the desc's. Neither the agent's log nor the stored descriptor nor the ISO holds the
# password in clear. Then POST /servers/<sid>/deploy with a new password and file: the answer
# carries the login_key the region decrypts with the guest id, and after a reboot the guest has
# the new password and file while its SSH host keys stayed the same.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/guest-lib.sh"
need_root
command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || hard "openssh-client missing"
BOOT_LIMIT=${GUEST_BOOT_LIMIT:-240} # seconds from start to ssh
guest_prepare

# ---- network: host bridge <-> veth <-> namespace (the test side, 10.214.0.1/24) ----
guest_net hagc 10.214.0.1/24
GUEST_IP=10.214.0.10
MAC=$(random_mac)

ssh-keygen -q -t ed25519 -N '' -C "hagc-$$" -f "$T/id" || hard "ssh-keygen failed"
PUBKEY=$(cat "$T/id.pub")
KEYTEXT=$(cut -d' ' -f2 "$T/id.pub") # the base64 part: what must not be logged or stored
PASSWORD="hagc-Pw1-$$-$RANDOM$RANDOM"
PASSWORD2="hagc-Pw2-$$-$RANDOM$RANDOM"
SID=hagc-$$-vm
GUEST_UUID=$(uuid)
HOSTNAME_WANT=hagc-vm-$$

start_agent --virt-type qemu
on_exit "virsh -c qemu:///system destroy $SID; virsh -c qemu:///system undefine --nvram $SID"
fail_diag() {
	echo "--- domain XML"; virsh -c qemu:///system dumpxml "$SID" 2>/dev/null | grep -A8 cdrom
	echo "--- /var/log/libvirt/qemu/$SID.log"; tail -n 20 "/var/log/libvirt/qemu/$SID.log" 2>/dev/null
	echo "--- serial console"; tr -d '\r' <"$T/console.log" 2>/dev/null | tail -n 60
}
gssh() {
	ip netns exec "$NS" ssh -i "$T/id" -o BatchMode=yes -o ConnectTimeout=5 \
		-o UserKnownHostsFile="$T/known_hosts" -o StrictHostKeyChecking="${HOSTKEYS:-accept-new}" \
		-o LogLevel=ERROR "root@$GUEST_IP" -- "PATH=/usr/sbin:/usr/bin:/sbin:/bin; $*"
}
# Logs in until cloud-init has finished (its ssh module restarts sshd, on a first boot with new
# host keys: those are the ones recorded afterwards, unless HOSTKEYS=yes demands the old ones).
wait_ssh() {
	local t0=$SECONDS
	until st=$(gssh cloud-init status --wait 2>&1) && case $st in *done*) true ;; *) false ;; esac; do
		[ "$(vstate "$SID")" = running ] || fail "guest stopped while booting: $(vstate "$SID")"
		[ $((SECONDS - t0)) -lt "$BOOT_LIMIT" ] || fail "no ssh login as root with the key within $BOOT_LIMIT s: $st"
		[ "${HOSTKEYS:-}" = yes ] || rm -f "$T/known_hosts"
		sleep 2
	done
	[ "${HOSTKEYS:-}" = yes ] || { rm -f "$T/known_hosts"; gssh true || fail "no login after cloud-init"; }
	echo $((SECONDS - t0))
}
# The hash in the guest's shadow is the hash of the password: crypt(3) again with its salt.
check_password() {
	local want=$1 hash salt
	hash=$(gssh getent shadow root | cut -d: -f2) || fail "cannot read root's shadow entry"
	case $hash in '$6$'*) ;; *) fail "root's password hash is '$hash', not SHA-512 crypt" ;; esac
	salt=$(echo "$hash" | cut -d'$' -f3)
	expect_eq "$(openssl passwd -6 -salt "$salt" "$want")" "$hash" "root's password hash"
}
# login_key as the region decrypts it (utils.DescryptAESBase64 with the guest id): base64 of
# iv || AES-256-CFB8, the key the guest id cut or padded with '$' to 32 bytes.
decrypt_key() {
	local raw key
	raw=$(echo "$1" | base64 -d | xxd -p -c 1000) || return 1
	key=$(printf '%-32.32s' "$SID" | tr ' ' '$' | xxd -p -c 64)
	echo "${raw:32}" | xxd -r -p | openssl enc -d -aes-256-cfb8 -K "$key" -iv "${raw:0:32}" -nopad
}

body=$(python3 - "$GUEST_UUID" "$MAC" "$BR" "$T" "$SID" "$HOSTNAME_WANT" "$PASSWORD" "$PUBKEY" "$GUEST_IP" <<'P'
import json, sys
uuid, mac, br, t, sid, host, pw, key, ip = sys.argv[1:]
print(json.dumps({
    "desc": {"uuid": uuid, "name": "guest deploy", "hostname": host, "os_name": "Linux",
             "cpu": 2, "mem": 512, "machine": "pc", "bios": "BIOS", "boot_order": "c",
             "disks": [{"disk_id": sid + "-sys", "index": 0, "format": "qcow2", "driver": "virtio",
                        "image_path": t + "/disks/images/guest.qcow2"}],
             "nics": [{"index": 0, "mac": mac, "bridge": br, "driver": "virtio", "ip": ip,
                       "masklen": 24, "gateway": "10.214.0.1", "is_default": True}]},
    "action": "create", "reset_password": True, "password": pw, "public_key": key,
    "keypair_name": "hagc", "enable_cloud_init": True,
    "deploys": [{"path": "/etc/hagc-deploy", "content": "deployed \"first\"\nline: 2\n", "action": "create"}],
}))
P
)
out=$(expect_api 200 POST "/servers/$SID/create" "$body")
expect_eq "$(echo "$out" | json 'j.get("account")')" root "create answer: account"
expect_eq "$(echo "$out" | json 'j.get("os")')" Linux "create answer: os"
# With a public key the region wants the password encrypted with the keypair (RSA-OAEP), which
# the agent cannot do: no key rather than one the region cannot decrypt.
expect_eq "$(echo "$out" | json '"key" in j')" false "create answer: no login_key with a keypair"
ISO=$T/servers/$SID/config-drive.iso
[ -f "$ISO" ] || fail "no config drive at $ISO"
expect_eq "$(stat -c %a "$ISO")" 600 "config drive mode"
grep -qF -- "$KEYTEXT" "$ISO" || fail "the ISO does not hold the key: the secrets checks below would look at nothing"
! grep -qF -- "$PASSWORD" "$ISO" || fail "the ISO holds the password in clear"
expect_contains "$(xorriso -indev "$ISO" -pvd_info 2>/dev/null)" "Volume Id    : cidata" "volume id"
xml=$(virsh -c qemu:///system dumpxml --inactive "$SID")
expect_contains "$xml" "<source file='$ISO'/>" "config drive in the domain"
expect_contains "$(echo "$xml" | grep -A8 "$ISO")" "<readonly/>" "config drive read-only"
ok "create built the config drive (cidata, 0600) and attached it read-only"

expect_api 200 POST "/servers/$SID/start" '{}' >/dev/null
guest_console
S1=$(wait_ssh)
ok "root logs in over ssh with the deployed key after ${S1} s"
check_password "$PASSWORD"
ok "root's password is the deployed one"
expect_eq "$(gssh cat /etc/hagc-deploy)" "$(printf 'deployed "first"\nline: 2')" "deployed file"
expect_eq "$(gssh hostname)" "$HOSTNAME_WANT" "hostname"
expect_contains "$(gssh ip -4 -o addr show dev eth0 2>&1)" "inet $GUEST_IP/24" "static address from the desc"
ok "deployed file, hostname $HOSTNAME_WANT and $GUEST_IP/24 from the config drive"
# cloud-init found nothing to complain about in what the agent wrote.
schema=$(gssh cloud-init schema --system 2>&1) || fail "cloud-init schema: $schema"
expect_contains "$schema" "Valid cloud-config" "cloud-init's schema check of the user-data"

# ---- a deploy on the existing guest: new password and file, at the next boot ----
body2=$(python3 - "$PASSWORD2" <<'P'
import json, sys
print(json.dumps({"action": "deploy", "reset_password": True, "password": sys.argv[1],
                  "deploys": [{"path": "/root/hagc-second", "content": "second\n"}]}))
P
)
out=$(expect_api 200 POST "/servers/$SID/deploy" "$body2")
expect_eq "$(echo "$out" | json 'j.get("account")')" root "deploy answer: account"
expect_eq "$(echo "$out" | json 'j.get("restart_required")')" true "deploy answer: restart_required"
key=$(echo "$out" | json 'j["key"]')
expect_eq "$(decrypt_key "$key")" "$PASSWORD2" "login_key decrypted with the guest id"
ok "deploy answers the login_key the region decrypts with the guest id"
# Random password (reset_password without one): the key decrypts to a password of 14.
out=$(expect_api 200 POST "/servers/$SID/deploy" '{"reset_password": true}')
rnd=$(decrypt_key "$(echo "$out" | json 'j["key"]')")
expect_eq "${#rnd}" 14 "generated password length"
out=$(expect_api 200 POST "/servers/$SID/deploy" "$body2")

out=$(expect_api 200 POST "/servers/$SID/stop" '{"timeout": 60}')
expect_eq "$(vstate "$SID")" "shut off" "state after stop"
expect_api 200 POST "/servers/$SID/start" '{}' >/dev/null
guest_console
export HOSTKEYS=yes # the host keys must be the ones of the first boot
S2=$(wait_ssh)
ok "after the deploy and a reboot root logs in again after ${S2} s, same SSH host keys"
check_password "$PASSWORD2"
expect_eq "$(gssh cat /root/hagc-second)" second "file of the second deploy"
expect_eq "$(gssh cat /etc/hagc-deploy | head -n1)" 'deployed "first"' "first file kept"
ok "the second deploy applied at the next boot: new password, new file"

# ---- secrets: not in the log, the stored descriptor or the ISO ----
for s in "$PASSWORD" "$PASSWORD2" "$rnd"; do
	! grep -rqF -- "$s" "$T/agent.log" "$T/servers" || fail "a password is in the log or workspace"
done
! grep -qF -- "$KEYTEXT" "$T/agent.log" || fail "the public key is in the agent's log"
! grep -qF -- "$KEYTEXT" "$T/servers/$SID/desc" || fail "the public key is in the stored descriptor"
! ls -a "$T/servers/$SID" | grep -q '^\.config-drive' || fail "temporary files left in the workspace"
ok "no password in the log, workspace or ISO; no key in the log or stored descriptor"

expect_api 200 DELETE "/servers/$SID" >/dev/null
[ ! -e "$ISO" ] || fail "config drive left after delete"
echo "# create-to-ssh ${S1} s, deploy+reboot-to-ssh ${S2} s"

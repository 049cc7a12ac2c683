#!/bin/bash
# The QEMU guest agent through the API (issue 13; agent/qga.c, routes qga-* of CONTRACT.md row
# 24), on the real Debian test image booted under TCG with a NoCloud seed (as guest-boot.sh),
# the agent in region mode against a real Keystone and the checking fake region: tokens are
# required; qga-guest-ping answers soon after the boot (seconds reported), synchronously and as
# a task (callback); qga-get-os-info names Debian; qga-get-network lists the seed's address;
# qga-command runs an allowed read-only command and refuses guest-exec and guest-file-open with
# 403 naming them; qga-set-network answers 501; qga-set-password changes root's password and
# the NEW one logs in on the serial console (a wrong one does not), the password appearing
# nowhere in the agent's log, state or the region's records; the heartbeat lists the guest in
# qga_running_guests and hostagent_guests_agent_answering counts it; hostctl's verbs work; and
# once the guest's agent is frozen (SIGSTOP) a ping fails with a timeout error within its bound
# and the heartbeat drops the guest.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/keystone-lib.sh"
. "$(dirname "$0")/guest-lib.sh"
need_root
BOOT_LIMIT=${GUEST_BOOT_LIMIT:-180}
guest_prepare

# ---- network: host bridge <-> veth <-> namespace (the test side, 10.214.0.1/24) ----
guest_static hagq 10.214.0

# ---- the guest's disks: the cached image as backing file, the NoCloud seed ----
HOSTNAME_WANT=vm-qga-$$
guest_static_seed "$HOSTNAME_WANT" </dev/null

# ---- keystone, the fake region, the agent in region mode ----
region_start
region_conf "$T/host.conf" "$API_PORT" <<YAML
ping_region_interval: 5
virt_type: qemu
YAML
SOCK=$T/admin.sock
region_agent_start
on_exit "virsh -c qemu:///system destroy $SID; virsh -c qemu:///system undefine --nvram $SID"

fail_diag() {
	echo "--- fake region records"; tail -n 5 "$FR_RECORD" 2>/dev/null
	echo "--- /var/log/libvirt/qemu/$SID.log"; tail -n 10 "/var/log/libvirt/qemu/$SID.log" 2>/dev/null
	echo "--- serial console (login script)"; tr -d '\r' <"$T/console.txt" 2>/dev/null | tail -n 30
}

region_agent_wait_auth
wait_for 90 fr_has 0 'r["kind"] == "online" and r["status"] == 200' || fail "host never went online"
op_token

expect_call 200 POST "/servers/$SID/create" "$(guest_static_desc "guest qga")" >/dev/null

# A guest that does not run has no agent to ask.
out=$(expect_call 400 POST "/servers/$SID/qga-guest-ping" '{"async": false}')
expect_contains "$out" "is not in state running" "ping of a stopped guest"
expect_call 404 POST "/servers/hagq-$$-none/qga-get-os-info" '{}' >/dev/null
# Tokens are required like on every /servers route.
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$API/servers/$SID/qga-guest-ping" -d '{}')
expect_eq "$code" 401 "qga-guest-ping without a token"
out=$(expect_call 501 POST "/servers/$SID/qga-set-network" '{"device": "eth0", "ipmask": "10.0.0.2/24", "gateway": "10.0.0.1"}')
expect_contains "$out" "not implemented" "qga-set-network"
ok "refusals: stopped guest 400, unknown guest 404, no token 401, qga-set-network 501"

t0=$SECONDS
expect_call 200 POST "/servers/$SID/start" '{}' >/dev/null
pty=$(virsh -c qemu:///system ttyconsole "$SID") || fail "no serial console"

# qga-guest-ping, synchronous, until the guest's agent answers.
while :; do
	out=$(call POST "/servers/$SID/qga-guest-ping" '{"async": false, "timeout": 2}')
	[ "$(last_code)" = 200 ] && break
	[ "$(vstate "$SID")" = running ] || fail "guest stopped while booting: $(vstate "$SID")"
	[ $((SECONDS - t0)) -lt "$BOOT_LIMIT" ] || fail "the guest agent did not answer within $BOOT_LIMIT s: $out"
	sleep 0.5
done
expect_eq "$out" '{"result":"ok"}' "qga-guest-ping answer"
PING_AT=$((SECONDS - t0))
ok "qga-guest-ping answered $PING_AT s after start"
grep -q "Guest agent connected.*$SID" "$T/agent.log" || fail "no agent lifecycle event in the log"

# Boot completion, asked through libvirt directly (guest-exec is not allowed through the API).
QGA_TIMEOUT=60
booted=$(qga_exec /bin/systemctl is-system-running --wait) || fail "cannot ask the guest's systemd"
BOOT_DONE=$((SECONDS - t0))
case $booted in running | degraded) ;; *) fail "guest boot did not finish: '$booted'" ;; esac
t1=$(date +%s%N)
expect_eq "$(call POST "/servers/$SID/qga-guest-ping" '{"async": false}')" '{"result":"ok"}' "ping after boot"
PING_MS=$((($(date +%s%N) - t1) / 1000000))
[ "$PING_MS" -lt 5000 ] || fail "qga-guest-ping after the boot took $PING_MS ms"
ok "guest boot finished after $BOOT_DONE s; the agent had answered $((BOOT_DONE - PING_AT)) s before that; a ping after it answers in $PING_MS ms"

# As a task: {"result": "ok"} at once, then the callback.
TASK=hagq-task-$$
expect_eq "$(expect_call 200 POST "/servers/$SID/qga-guest-ping" '{"timeout": 5}' "$TASK")" '{"result":"ok"}' "async ping answer"
rec=$(fake_region_wait "$TASK" 30) || fail "no callback of the async ping"
expect_eq "$(echo "$rec" | json '"__status__" in j["body"]')" false "async ping callback is a success"

# qga-get-os-info: the Go agent's GuestOsInfo.
out=$(expect_call 200 POST "/servers/$SID/qga-get-os-info" '{}')
expect_eq "$(echo "$out" | json 'j["id"]')" debian "os id"
expect_contains "$(echo "$out" | json 'j["pretty-name"]')" "Debian GNU/Linux" "os pretty-name"
expect_eq "$(echo "$out" | json 'sorted(j)')" "['id', 'kernel-release', 'kernel-version', 'machine', 'name', 'pretty-name', 'version', 'version-id']" "os info fields"
ok "qga-get-os-info: $(echo "$out" | json 'j["pretty-name"]'), kernel $(echo "$out" | json 'j["kernel-release"]')"

# qga-get-network: guest-network-get-interfaces' array, with the seed's address on the NIC.
out=$(expect_call 200 POST "/servers/$SID/qga-get-network" '{}')
got=$(echo "$out" | json '[a["ip-address"] for i in j if i.get("hardware-address") == "'"$MAC"'" for a in i.get("ip-addresses", []) if a["ip-address-type"] == "ipv4"]')
expect_eq "$got" "['$GUEST_IP']" "guest address by MAC"
ok "qga-get-network lists $GUEST_IP on $MAC"

# qga-command: allowed read-only commands pass, others are refused naming them.
out=$(expect_call 200 POST "/servers/$SID/qga-command" '{"command": "{\"execute\": \"guest-get-host-name\"}"}')
expect_eq "$(echo "$out" | json 'j["host-name"]')" "$HOSTNAME_WANT" "guest-get-host-name"
out=$(expect_call 200 POST "/servers/$SID/qga-guest-info-task" '{}')
expect_contains "$(echo "$out" | json '[c["name"] for c in j["supported_commands"]]')" "guest-set-user-password" "guest-info"
out=$(expect_call 403 POST "/servers/$SID/qga-command" '{"command": "{\"execute\": \"guest-exec\", \"arguments\": {\"path\": \"/bin/touch\", \"arg\": [\"/hagq-pwned\"]}}"}')
expect_contains "$(echo "$out" | json 'j["details"]')" '"guest-exec" is not allowed' "guest-exec refused"
expect_contains "$out" '"class":"ForbiddenError"' "guest-exec error class"
out=$(expect_call 403 POST "/servers/$SID/qga-command" '{"command": {"execute": "guest-file-open", "arguments": {"path": "/etc/shadow"}}}')
expect_contains "$(echo "$out" | json 'j["details"]')" '"guest-file-open" is not allowed' "guest-file-open refused"
expect_call 400 POST "/servers/$SID/qga-command" '{"command": "{nope"}' >/dev/null
[ "$(qga_exec /bin/sh -c 'test -e /hagq-pwned && echo yes || echo no')" = "no" ] || fail "the refused guest-exec ran"
ok "qga-command: guest-get-host-name answers $HOSTNAME_WANT; guest-exec and guest-file-open get 403"

# The heartbeat lists the guest, the metric counts it.
from=$(fr_lines)
wait_for 30 fr_has "$from" 'r["kind"] == "ping" and r["status"] == 200 and "'"$SID"'" in r["body"]["host"]["qga_running_guests"]' ||
	fail "no heartbeat lists $SID in qga_running_guests: $(fr_recs "$from" 'r["kind"] == "ping"' | tail -n1)"
[ -z "$(fr_recs 0 'r["kind"] == "ping" and r["problems"]')" ] || fail "the fake region refused a ping: $(fr_recs 0 'r["kind"] == "ping" and r["problems"]' | head -n1)"
expect_contains "$(curl -s -H "X-Auth-Token: $TOKEN" "$API/metrics")" "hostagent_guests_agent_answering 1" "metric"
ok "the heartbeat lists $SID in qga_running_guests; hostagent_guests_agent_answering 1"

# hostctl over the admin socket.
"$HOSTCTL" --socket "$SOCK" vm ping-agent "$SID" --timeout 5 >"$T/hostctl.out" 2>&1 || fail "hostctl vm ping-agent: $(cat "$T/hostctl.out")"
"$HOSTCTL" --socket "$SOCK" vm agent-info "$SID" >"$T/hostctl.out" 2>&1 || fail "hostctl vm agent-info: $(cat "$T/hostctl.out")"
expect_contains "$(cat "$T/hostctl.out")" '"id": "debian"' "hostctl vm agent-info"
if "$HOSTCTL" --socket "$SOCK" vm agent-command "$SID" '{"execute":"guest-shutdown"}' >"$T/hostctl.out" 2>&1; then
	fail "hostctl vm agent-command guest-shutdown passed"
fi
expect_contains "$(cat "$T/hostctl.out")" "403" "hostctl refused command"
ok "hostctl vm ping-agent, agent-info, agent-command (refusal)"

# ---- qga-set-password: the new password logs in on the serial console ----
cat >"$T/login.py" <<'PY'
# login.py PTY USER PASSWORD LOG: logs in on the guest's serial console; prints "ok" when a
# shell ran a command, "incorrect" when login refused the password.
import os, re, select, sys, termios, time, tty
pty, user, pw, logf = sys.argv[1:5]
fd = os.open(pty, os.O_RDWR | os.O_NOCTTY)
tty.setraw(fd)
log = open(logf, "ab")
buf = b""
def send(s):
    os.write(fd, s.encode())
def expect(pats, timeout, poke=None):
    global buf
    end = time.time() + timeout
    nextpoke = time.time()
    while time.time() < end:
        if poke and time.time() >= nextpoke:
            send(poke); nextpoke = time.time() + 3
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            d = os.read(fd, 4096)
            log.write(d); log.flush()
            buf += d
        for i, p in enumerate(pats):
            m = re.search(p, buf)
            if m:
                buf = buf[m.end():]
                return i
    return -1
# Out of any half-typed login first.
if expect([rb"login: ?$"], 60, poke="\r") < 0:
    print("no login prompt"); sys.exit(1)
send(user + "\r")
if expect([rb"[Pp]assword: ?$"], 20) < 0:
    print("no password prompt"); sys.exit(1)
send(pw + "\r")
i = expect([rb"# ?$", rb"Login incorrect"], 40)
if i == 1:
    print("incorrect"); sys.exit(0)
if i < 0:
    print("no shell prompt"); sys.exit(1)
send("echo HAGQ-$((20+22))\r")
if expect([rb"HAGQ-42"], 20) < 0:
    print("no command output"); sys.exit(1)
send("exit\r")
print("ok")
PY
NEWPW="hagq-$$-$(head -c 12 /dev/urandom | base64 | tr -d '/+=')"
out=$(expect_call 400 POST "/servers/$SID/qga-set-password" '{"username": "root"}')
expect_contains "$out" "password: missing" "set-password without a password"
out=$(expect_call 200 POST "/servers/$SID/qga-set-password" "{\"username\": \"root\", \"password\": \"$NEWPW\"}")
expect_eq "$out" '{"result":"ok"}' "qga-set-password answer"
got=$(python3 "$T/login.py" "$pty" root "wrong-$NEWPW" "$T/console.txt") || fail "console login (wrong password): $got"
expect_eq "$got" incorrect "login with a wrong password"
got=$(python3 "$T/login.py" "$pty" root "$NEWPW" "$T/console.txt") || fail "console login: $got"
expect_eq "$got" ok "login with the new password"
ok "qga-set-password: root logs in on the serial console with the new password, not with a wrong one"
# The same as a task: the callback says it worked.
TASK2=hagq-task2-$$
NEWPW2="hagq2-$$-$(head -c 12 /dev/urandom | base64 | tr -d '/+=')"
expect_eq "$(expect_call 200 POST "/servers/$SID/qga-set-password" "{\"username\": \"root\", \"password\": \"$NEWPW2\"}" "$TASK2")" '{"result":"ok"}' "async set-password"
rec=$(fake_region_wait "$TASK2" 30) || fail "no callback of the async set-password"
expect_eq "$(echo "$rec" | json '"__status__" in j["body"]')" false "async set-password callback"
got=$(python3 "$T/login.py" "$pty" root "$NEWPW2" "$T/console.txt") || fail "console login: $got"
expect_eq "$got" ok "login with the password set as a task"
for f in "$T/agent.log" "$FR_RECORD"; do
	! grep -q -e "$NEWPW" -e "$NEWPW2" "$f" || fail "a password appears in $f"
done
! grep -rq -e "$NEWPW" -e "$NEWPW2" "$T/state" "$T/servers" || fail "a password is stored"
ok "the passwords appear in no log, record or state"

# ---- a restarted agent finds the answering agent from its listing (channel state) ----
kill -TERM "$AGENT_PID"
wait "$AGENT_PID"
AGENT_PID=
from=$(fr_lines)
t3=$SECONDS
region_agent_start
wait_for 60 fr_has "$from" 'r["kind"] == "ping" and r["status"] == 200 and "'"$SID"'" in r["body"]["host"]["qga_running_guests"]' ||
	fail "after a restart no heartbeat lists $SID"
ok "after an agent restart the heartbeat lists $SID again within $((SECONDS - t3)) s"

# ---- an agent that does not answer: a timeout error within the bound ----
qga '{"execute":"guest-exec","arguments":{"path":"/bin/sh","arg":["-c","sleep 1; kill -STOP $(pidof qemu-ga)"]}}' >/dev/null ||
	fail "cannot freeze the guest's agent"
sleep 2
t2=$SECONDS
out=$(expect_call 504 POST "/servers/$SID/qga-guest-ping" '{"async": false, "timeout": 3}')
WAITED=$((SECONDS - t2))
expect_contains "$out" '"class":"TimeoutError"' "timeout class"
expect_contains "$out" "did not answer guest-ping within 3 s" "timeout message"
# Bound: libvirt's guest-sync (when out of sync) and the command, each at most the timeout.
[ "$WAITED" -le 8 ] || fail "the ping of a frozen agent took $WAITED s (bound 2 x 3 s)"
out=$(expect_call 504 POST "/servers/$SID/qga-get-os-info" '{"timeout": 2}')
ok "frozen agent: qga-guest-ping fails with TimeoutError in $WAITED s (timeout 3 s): $(echo "$out" | json 'j["details"]')"
from=$(fr_lines)
wait_for 60 fr_has "$from" 'r["kind"] == "ping" and r["status"] == 200 and "'"$SID"'" not in r["body"]["host"]["qga_running_guests"]' ||
	fail "the heartbeat still lists $SID"
expect_contains "$(curl -s -H "X-Auth-Token: $TOKEN" "$API/metrics")" "hostagent_guests_agent_answering 0" "metric after the freeze"
ok "the heartbeat no longer lists the frozen agent"

virsh -c qemu:///system destroy "$SID" >/dev/null 2>&1
expect_call 200 DELETE "/servers/$SID" >/dev/null
echo "# qga-guest-ping answered ${PING_AT} s after start, boot finished ${BOOT_DONE} s, ping after boot ${PING_MS} ms; frozen agent error in ${WAITED} s"

#!/bin/bash
# hostexec from an unshare'd "container" (own mount, UTS and network namespaces, its own
# hostname, no interfaces, a different /etc/hostname) sees the host's values; exit codes,
# signals, timeouts, a missing command and a missing target behave as documented.
. "$(dirname "$0")/lib.sh"

need_root
[ -x "$HOSTEXEC" ] || hard "hostexec not built at $HOSTEXEC"
for t in unshare mount ip hostname setpriv; do
	command -v "$t" >/dev/null || skip "$t not installed"
done
unshare --mount --uts --net true 2>/dev/null || skip "cannot create namespaces here"

# The "host" is this script's own namespaces: PID 1 of a sandbox may refuse ptrace access.
HOST_PID=$$
host_name=$(hostname)
host_links=$(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort | tr '\n' ' ')
host_etc=
[ -f /etc/hostname ] && host_etc=$(cat /etc/hostname)

# run NAME CMD...: runs CMD inside the container, stores stdout, stderr and exit code.
cat >"$T/ctr.sh" <<'INNER'
set -u
T=$1; shift
hostname hostexec-ctr
echo ctr-etc-hostname >"$T/ctr-hostname"
[ -f /etc/hostname ] && mount --bind "$T/ctr-hostname" /etc/hostname
run() {
	local name=$1; shift
	local start=$SECONDS
	"$@" >"$T/out.$name" 2>"$T/err.$name"
	echo $? >"$T/rc.$name"
	echo $((SECONDS - start)) >"$T/time.$name"
}
run ctr-hostname hostname
run ctr-links ip -o link show
run ctr-etc cat /etc/hostname
run hostname "$HOSTEXEC" --target "$HOST_PID" -- hostname
run links "$HOSTEXEC" --target "$HOST_PID" -- ip -o link show
run etc "$HOSTEXEC" --target "$HOST_PID" -- cat /etc/hostname
run exit42 "$HOSTEXEC" --target "$HOST_PID" -- sh -c 'exit 42'
run streams "$HOSTEXEC" --target "$HOST_PID" -- sh -c 'echo to-out; echo to-err >&2'
run sigkill "$HOSTEXEC" --target "$HOST_PID" -- sh -c 'kill -KILL $$'
run sigterm "$HOSTEXEC" --target "$HOST_PID" --ns pid,mnt -- sh -c 'kill -TERM $$'
run timeout "$HOSTEXEC" --target "$HOST_PID" --timeout 1 -- sleep 30
run timeout-stubborn "$HOSTEXEC" --target "$HOST_PID" --timeout 1 -- sh -c 'trap "" TERM; sleep 30 & wait; wait'
run missing "$HOSTEXEC" --target "$HOST_PID" -- no-such-command-on-host
run notarget "$HOSTEXEC" --target "$DEAD_PID" -- true
run badns "$HOSTEXEC" --target "$HOST_PID" --ns mnt,bogus -- true
run noperm setpriv --reuid 65534 --regid 65534 --clear-groups "$HOSTEXEC" --target "$HOST_PID" -- true
run cwd "$HOSTEXEC" --target "$HOST_PID" --cwd /etc -- pwd
run env "$HOSTEXEC" --target "$HOST_PID" -- env
INNER

sh -c 'exit 0' &
DEAD_PID=$!
wait $DEAD_PID
export HOSTEXEC HOST_PID DEAD_PID
unshare --mount --uts --net --fork bash "$T/ctr.sh" "$T" || hard "container script failed"

out() { cat "$T/out.$1"; }
rc() { cat "$T/rc.$1"; }
links() { awk -F': ' '{print $2}' "$T/out.$1" | sed 's/@.*//' | sort | tr '\n' ' '; }

# The container really differs from the host.
expect_eq "$(out ctr-hostname)" hostexec-ctr "container hostname"
expect_eq "$(links ctr-links)" "lo " "container interfaces"
[ "$host_name" != hostexec-ctr ] || hard "host hostname collides with the test's"

expect_eq "$(rc hostname)" 0 "hostexec hostname exit"
expect_eq "$(out hostname)" "$host_name" "hostexec hostname"
ok "hostname is the host's ($host_name)"
expect_eq "$(rc links)" 0 "hostexec ip link exit"
expect_eq "$(links links)" "$host_links" "hostexec ip link"
ok "ip link shows the host's interfaces ($host_links)"
if [ -n "$host_etc" ]; then
	expect_eq "$(out ctr-etc)" ctr-etc-hostname "container /etc/hostname"
	expect_eq "$(out etc)" "$host_etc" "hostexec cat /etc/hostname"
	ok "/etc/hostname is read in the host's mount namespace"
fi

expect_eq "$(rc exit42)" 42 "exit code"
expect_eq "$(out streams)" to-out "stdout"
expect_eq "$(cat "$T/err.streams")" to-err "stderr"
expect_eq "$(rc streams)" 0 "streams exit"
ok "exit code and stdout/stderr pass through"

expect_eq "$(rc sigkill)" 137 "SIGKILL -> 128+9"
expect_eq "$(rc sigterm)" 143 "SIGTERM in a PID namespace -> 128+15"
ok "signals map to 128+n"

expect_eq "$(rc timeout)" 124 "timeout exit"
expect_contains "$(cat "$T/err.timeout")" "timed out" "timeout message"
[ "$(cat "$T/time.timeout")" -le 3 ] || fail "timeout took $(cat "$T/time.timeout") s"
expect_eq "$(rc timeout-stubborn)" 124 "stubborn timeout exit"
[ "$(cat "$T/time.timeout-stubborn")" -le 5 ] || fail "SIGKILL escalation took too long"
ok "timeouts: SIGTERM, then SIGKILL after 2 s, exit 124"

expect_eq "$(rc missing)" 127 "missing command"
expect_contains "$(cat "$T/err.missing")" "no-such-command-on-host: command not found" "missing msg"
expect_eq "$(rc notarget)" 125 "missing target"
expect_contains "$(cat "$T/err.notarget")" "does not exist" "missing target msg"
expect_eq "$(rc badns)" 125 "unknown namespace"
expect_contains "$(cat "$T/err.badns")" "invalid --ns" "unknown namespace msg"
expect_eq "$(rc noperm)" 125 "no permission"
expect_contains "$(cat "$T/err.noperm")" "no permission" "no permission msg"
ok "missing command 127, missing target / bad namespace / no permission 125"

expect_eq "$(out cwd)" /etc "cwd"
expect_eq "$(out env)" "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" "clean env"
ok "working directory and clean environment"

# The default target is PID 1 when this sandbox lets us enter it.
if [ "$(readlink /proc/1/ns/uts 2>/dev/null)" = "$(readlink /proc/self/ns/uts)" ]; then
	expect_eq "$("$HOSTEXEC" -- hostname)" "$host_name" "default target"
	ok "default target PID 1"
else
	echo "note: PID 1 namespaces are not accessible here; default target not exercised"
fi
exit 0

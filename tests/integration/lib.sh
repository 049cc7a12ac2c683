# Shared helpers for integration scripts. Exit codes: 0 pass, 77 skip, 99 hard failure.
set -u
: "${top_builddir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_srcdir:=$top_builddir}"
HOSTAGENT=$top_builddir/hostagent
HOSTCTL=$top_builddir/hostctl
HOSTEXEC=$top_builddir/hostexec
T=$(mktemp -d /tmp/hostagent-it.XXXXXX)
CLEANUPS=()

cleanup() {
	local i
	for ((i = ${#CLEANUPS[@]} - 1; i >= 0; i--)); do eval "${CLEANUPS[$i]}" >/dev/null 2>&1 || true; done
	[ -n "${KEEP_TEST_DIR:-}" ] && echo "# kept $T" >&2 || rm -rf "$T"
}
trap cleanup EXIT
on_exit() { CLEANUPS+=("$*"); }

# A test may define fail_diag to print what explains a failure (logs kept elsewhere).
fail() {
	echo "FAIL: $*" >&2
	[ -f "$T/agent.log" ] && tail -n 40 "$T/agent.log" >&2
	declare -F fail_diag >/dev/null && fail_diag >&2
	exit 1
}
skip() { echo "SKIP: $*" >&2; exit 77; }
hard() { echo "ERROR: $*" >&2; exit 99; }
ok() { echo "ok: $*"; }

expect_eq() { [ "$1" = "$2" ] || fail "$3: expected '$2', got '$1'"; }
expect_contains() { case "$1" in *"$2"*) ;; *) fail "$3: '$1' does not contain '$2'";; esac; }

# wait_for SECONDS COMMAND...: polls until COMMAND succeeds.
wait_for() {
	local t=$1; shift
	local end=$((SECONDS + t))
	while ! "$@" >/dev/null 2>&1; do
		[ $SECONDS -ge $end ] && return 1
		sleep 0.1
	done
}

need_root() { [ "$(id -u)" = 0 ] || skip "needs root"; }
# vstate NAME: the state of domain NAME on the host libvirtd ("running", "shut off"; empty
# when there is none). uuid: a fresh random UUID.
vstate() { virsh -c qemu:///system domstate "$1" 2>/dev/null | head -n1; }
uuid() { python3 -c 'import uuid; print(uuid.uuid4())'; }

# ---- a running agent ----
# start_agent [extra flags...]: starts hostagent standalone on the real libvirtd with its state
# under $T; sets AGENT_PID, SOCK, PORT. Logs to $T/agent.log.
start_agent() {
	SOCK=$T/admin.sock
	mkdir -p "$T/servers" "$T/disks" "$T/state"
	"$HOSTAGENT" --servers-path "$T/servers" --local-image-path "$T/disks" --state-dir "$T/state" \
		--admin-socket "$SOCK" --listen-address 127.0.0.1 --port "${PORT:-0}" \
		--libvirt-uri "${LIBVIRT_URI:-qemu:///system}" --log-level debug "$@" >>"$T/agent.log" 2>&1 9>&- &
	AGENT_PID=$!
	on_exit "kill -TERM $AGENT_PID; wait $AGENT_PID"
	wait_for 20 test -S "$SOCK" || fail "agent did not create its admin socket"
	wait_for 30 agent_ready || fail "agent did not become ready: $(api GET /readyz)"
}
agent_ready() { [ "$(api_code GET /readyz)" = 200 ]; }

# api METHOD PATH [JSON]: request over the admin socket; prints the body, stores the status in
# $T/code (read it with last_code).
api() {
	local m=$1 p=$2 body=${3:-}
	local args=(-s -o "$T/body" -w '%{http_code}' -X "$m" --unix-socket "$SOCK" --max-time 120)
	[ -n "$body" ] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
	curl "${args[@]}" "http://localhost$p" >"$T/code" || echo 000 >"$T/code"
	cat "$T/body" 2>/dev/null
}
api_code() { api "$@" >/dev/null; cat "$T/code"; }
last_code() { cat "$T/code"; }
# json EXPR: evaluates a python expression over the JSON on stdin bound to j.
json() { python3 -c "import json,sys; j=json.load(sys.stdin); v=($1); print(v if not isinstance(v,bool) else str(v).lower())"; }
# it_python ARGS...: python3 that imports the modules next to this file (rawhttp) and writes no
# bytecode into the source tree.
it_python() { PYTHONPATH=$top_srcdir/tests/integration PYTHONDONTWRITEBYTECODE=1 python3 "$@"; }
# expect_api CODE METHOD PATH [JSON]: asserts the status code; prints the body.
expect_api() {
	local want=$1; shift
	local out
	out=$(api "$@")
	[ "$(last_code)" = "$want" ] || fail "$1 $2: expected HTTP $want, got $(last_code): $out"
	printf '%s' "$out"
}

# The host libvirtd is shared by the tests that `make check` runs in parallel. Tests that only
# use it take a shared lock; tests that stop or replace it take the exclusive lock.
libvirtd_lock() { # shared|exclusive
	exec 9>/tmp/hostagent-libvirtd.lock
	flock -w 900 "--$1" 9 || hard "timed out waiting for the libvirtd lock"
}
# The host's own daemons only: libvirtd and virtlogd also run in the pod containers of
# restart.sh (host PID namespace, own mount namespace) and in the systemd node containers of
# systemd-node.sh and placement.sh (own PID namespace), and a bare `pkill -x libvirtd` from
# the host would kill theirs too (or `pgrep` would take theirs for the host's).
host_pgrep() { pgrep --ns $$ --nslist pid,mnt -x "$@"; }
host_pkill() { pkill --ns $$ --nslist pid,mnt -x "$@"; }
# Starts the host libvirtd (and virtlogd) when absent and waits until it answers.
libvirtd_up() {
	mkdir -p /var/log/libvirt /run/libvirt
	# Daemons must not inherit the lock descriptor: they would hold the lock forever.
	host_pgrep virtlogd >/dev/null || virtlogd -d 9>&-
	local i
	for i in $(seq 100); do
		virsh -c qemu:///system version >/dev/null 2>&1 && return 0
		host_pgrep libvirtd >/dev/null || libvirtd -d 9>&-
		sleep 0.2
	done
	return 1
}
libvirtd_down() {
	host_pkill libvirtd || true
	local i
	for i in $(seq 100); do host_pgrep libvirtd >/dev/null || return 0; sleep 0.1; done
	host_pkill -KILL libvirtd || true
}
# need_libvirtd [kvm]: root (else skip), with kvm /dev/kvm too (else skip), and the host
# libvirtd running, used under the shared lock.
need_libvirtd() {
	need_root
	[ "${1:-}" != kvm ] || [ -e /dev/kvm ] || skip "no /dev/kvm"
	libvirtd_lock shared
	libvirtd_up || hard "libvirtd does not start (deploy/setup-host.sh installs it)"
}
# need_bench_libvirt: tests/bench/bench-libvirt built (the benchmarks' straight libvirt side);
# sets BENCH.
need_bench_libvirt() {
	BENCH=$top_builddir/tests/bench/bench-libvirt
	[ -x "$BENCH" ] || hard "build tests/bench/bench-libvirt first (make tests/bench/bench-libvirt)"
}
# small_domain_xml NAME TYPE: a minimal domain (32 MiB, one vCPU, no disk) of type TYPE (kvm,
# qemu), for domains made behind the agent's back.
small_domain_xml() {
	cat <<XML
<domain type='$2'><name>$1</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>
<os><type arch='x86_64'>hvm</type></os></domain>
XML
}

# start_named_agent NAME EXTRA-ARGS...: starts an agent (libvirt test driver, on
# $LISTEN or 127.0.0.1) in $T/NAME, sets PID_<NAME>, PORT_<NAME>, TOKEN_<NAME>.
start_named_agent() {
	local name=$1; shift
	local d=$T/$name
	mkdir -p "$d/state"
	"$HOSTAGENT" --state-dir "$d/state" --servers-path "$d/servers" --local-image-path "$d/disks" \
		--admin-socket "$d/run/admin.sock" --listen-address "${LISTEN:-127.0.0.1}" --port 0 \
		--libvirt-uri test:///default "$@" >"$d/agent.log" 2>&1 &
	local pid=$!
	on_exit "kill -KILL $pid"
	wait_for 20 grep -q "API listening" "$d/agent.log" || { cat "$d/agent.log" >&2; fail "$name: API did not start"; }
	local port
	port=$(grep -o 'API listening address=[^ ]* port=[0-9]*' "$d/agent.log" | grep -o '[0-9]*$')
	[ -n "$port" ] || fail "$name: no port in the log"
	wait_for 10 test -s "$d/state/api-token" || fail "$name: no API token file"
	eval "PID_$name=$pid PORT_$name=$port"
	eval "TOKEN_$name=\$(cat '$d/state/api-token')"
}

# stop_named_agent NAME: SIGTERM, exit 0, and no sanitizer report in the log.
stop_named_agent() {
	local name=$1 pid
	eval "pid=\$PID_$name"
	kill -0 "$pid" 2>/dev/null || fail "$name: agent died"
	kill -TERM "$pid"
	wait "$pid"; local rc=$?
	[ $rc -eq 0 ] || { tail -n 60 "$T/$name/agent.log" >&2; fail "$name: exit code $rc after SIGTERM"; }
	if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$T/$name/agent.log"; then
		grep -A30 -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$T/$name/agent.log" | head -80 >&2
		fail "$name: sanitizer report in the agent's log"
	fi
	[ ! -e "$T/$name/run/admin.sock" ] || fail "$name: admin socket left behind"
}

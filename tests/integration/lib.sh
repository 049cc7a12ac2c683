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
	rm -rf "$T"
}
trap cleanup EXIT
on_exit() { CLEANUPS+=("$*"); }

fail() { echo "FAIL: $*" >&2; [ -f "$T/agent.log" ] && tail -n 40 "$T/agent.log" >&2; exit 1; }
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

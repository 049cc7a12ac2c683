#!/bin/bash
# Benchmark (not a test): time from the agent container's start to /readyz 200, with 0 guests
# (baseline) and with N running guests to adopt (default 20; 128 MiB diskless KVM guests).
# The pod is the one of tests/integration/restart.sh (image from the build tree, run-pod.py).
#
#   top_builddir=BUILDDIR tests/bench/restart-ready.sh [GUESTS] [ROUNDS]
#
# "start" is the moment run-pod.py is invoked (podman run included, as kubelet's restart
# would); "ready" is the first /readyz 200 over the admin socket (polled every 50 ms).
here=$(cd "$(dirname "$0")" && pwd)
: "${top_srcdir:=$(cd "$here/../.." && pwd)}"
. "$top_srcdir/tests/integration/lib.sh"
. "$top_srcdir/tests/integration/restart-lib.sh"
guests=${1:-20}
rounds=${2:-3}
libvirtd_lock shared
pod_setup
pod start >/dev/null || hard "run-pod.py start failed"
pod_wait_ready 60

now_ms() { echo $(($(date +%s%N) / 1000000)); }
# restart_ready: kills and starts the agent container, prints ms until /readyz answers 200.
restart_ready() {
	local t0 t1
	pod kill agent >/dev/null
	t0=$(now_ms)
	pod start agent >/dev/null || hard "agent start failed"
	while [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --unix-socket "$SOCK" http://localhost/readyz)" != 200 ]; do
		[ $(($(now_ms) - t0)) -gt 120000 ] && fail "agent not ready after 120 s"
		sleep 0.05
	done
	t1=$(now_ms)
	echo $((t1 - t0))
}
median() { tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }

base=()
for r in $(seq "$rounds"); do base+=("$(restart_ready)"); done

t=$SECONDS
for i in $(seq "$guests"); do vm_create "habench$$v$i"; done
echo "# $guests guests created and started through the API in $((SECONDS - t)) s"
declare -A PID
for s in "${POD_SIDS[@]}"; do PID[$s]=$(qemu_pid "$s"); done

loaded=()
for r in $(seq "$rounds"); do
	loaded+=("$(restart_ready)")
	n=$(api GET /servers | json "sum(1 for g in (j if isinstance(j, list) else j.get('servers', [])) if g.get('status') == 'running')")
	[ "$n" -ge "$guests" ] || fail "only $n guests reported running after the restart"
	for s in "${POD_SIDS[@]}"; do
		expect_eq "$(api GET "/servers/$s/status" | json 'j["qemu_pid"]')" "${PID[$s]}" "adopted pid of $s"
	done
done

echo "agent container start -> /readyz 200, $rounds rounds (ms):"
echo "  0 guests:       ${base[*]}  (median $(echo "${base[*]}" | median))"
echo "  $guests guests adopted: ${loaded[*]}  (median $(echo "${loaded[*]}" | median))"

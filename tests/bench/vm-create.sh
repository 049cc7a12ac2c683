#!/bin/bash
# Benchmark (not a test): create and start N diskless KVM guests through the agent (admin socket
# API: create, then start, which answers once libvirt reports the guest running) and the same
# domain XML straight through the libvirt API, in the same run. Prints p50/p95 create-to-running
# for both and their ratio. Usage: tests/bench/vm-create.sh [N] (root, built tree, libvirtd up).
set -euo pipefail
N=${1:-10}
. "$(dirname "$0")/../integration/lib.sh"
need_libvirtd
need_bench_libvirt
start_agent

# timed_api METHOD PATH JSON: prints curl's total time in ms (no process start-up counted).
timed_api() {
	curl -s -o "$T/body" -w '%{http_code} %{time_total}\n' -X "$1" --unix-socket "$SOCK" \
		-H 'Content-Type: application/json' --data-binary "$3" "http://localhost$2" >"$T/timing"
	read -r code secs <"$T/timing"
	[ "$code" = 200 ] || fail "$1 $2: HTTP $code: $(cat "$T/body")"
	python3 -c "print($secs * 1000)"
}

# One guest at a time, each measured with the same load on the host: the agent's guest, then
# the same domain XML through libvirt directly; both removed before the next round.
agent_times=()
raw_times=()
for i in $(seq "$N"); do
	s=habench-$$-a$i
	r=habench-$$-r$i
	on_exit "virsh -c qemu:///system destroy $s; virsh -c qemu:///system undefine $s"
	on_exit "virsh -c qemu:///system destroy $r; virsh -c qemu:///system undefine $r"
	body="{\"desc\": {\"uuid\": \"$(python3 -c 'import uuid; print(uuid.uuid4())')\", \"name\": \"bench $i\", \"cpu\": 1, \"mem\": 128}}"
	c=$(timed_api POST "/servers/$s/create" "$body")
	st=$(timed_api POST "/servers/$s/start" '{}')
	agent_times+=("$(python3 -c "print(round($c + $st, 1))")")
	virsh -c qemu:///system dumpxml --inactive "$s" |
		sed -e "s|<name>$s</name>|<name>$r</name>|" -e '/<uuid>/d' >"$T/raw.xml"
	raw_times+=("$("$BENCH" qemu:///system "$T/raw.xml" | awk '{print $2}')")
	api DELETE "/servers/$s" >/dev/null
	virsh -c qemu:///system destroy "$r" >/dev/null
	virsh -c qemu:///system undefine "$r" >/dev/null
done

python3 - "${agent_times[*]}" "${raw_times[*]}" <<'PY'
import sys, statistics
def pct(v, p):
    v = sorted(v); k = (len(v) - 1) * p / 100; f = int(k); c = min(f + 1, len(v) - 1)
    return v[f] + (v[c] - v[f]) * (k - f)
a = [float(x) for x in sys.argv[1].split()]; r = [float(x) for x in sys.argv[2].split()]
print(f"guests: {len(a)} through the agent, {len(r)} through libvirt directly")
print(f"{'':24}{'p50 ms':>10}{'p95 ms':>10}")
print(f"{'agent (create+start)':24}{pct(a,50):10.1f}{pct(a,95):10.1f}")
print(f"{'libvirt API (baseline)':24}{pct(r,50):10.1f}{pct(r,95):10.1f}")
print(f"{'ratio agent/baseline':24}{pct(a,50)/pct(r,50):10.2f}{pct(a,95)/pct(r,95):10.2f}")
PY

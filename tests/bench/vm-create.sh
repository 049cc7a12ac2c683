#!/bin/bash
# Benchmark (not a test): create and start N diskless KVM guests through the agent (admin socket
# API: create, then start, which answers once libvirt reports the guest running) and the same
# domain XML straight through the libvirt API, in the same run. Prints p50/p95 create-to-running
# for both and their ratio. Usage: tests/bench/vm-create.sh [N] (root, built tree, libvirtd up).
set -euo pipefail
N=${1:-10}
top_builddir=${top_builddir:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$(dirname "$0")/../integration/lib.sh"
need_root
libvirtd_lock shared
libvirtd_up || hard "libvirtd does not start"
start_agent
BENCH=$top_builddir/tests/bench/bench-libvirt
[ -x "$BENCH" ] || hard "build tests/bench/bench-libvirt first (make tests/bench/bench-libvirt)"
ms() { python3 -c 'import time; print(time.monotonic()*1000)'; }

agent_times=()
for i in $(seq "$N"); do
	s=habench-$$-a$i
	on_exit "virsh -c qemu:///system destroy $s; virsh -c qemu:///system undefine $s"
	body="{\"desc\": {\"uuid\": \"$(python3 -c 'import uuid; print(uuid.uuid4())')\", \"name\": \"bench $i\", \"cpu\": 1, \"mem\": 128}}"
	t0=$(ms)
	expect_api 200 POST "/servers/$s/create" "$body" >/dev/null
	expect_api 200 POST "/servers/$s/start" '{}' >/dev/null
	t1=$(ms)
	agent_times+=("$(python3 -c "print(round($t1-$t0,1))")")
	# The same XML for the baseline, under another name and without the uuid.
	virsh -c qemu:///system dumpxml --inactive "$s" |
		sed -e "s|<name>$s</name>|<name>habench-$$-r$i</name>|" -e '/<uuid>/d' >"$T/raw$i.xml"
	on_exit "virsh -c qemu:///system destroy habench-$$-r$i; virsh -c qemu:///system undefine habench-$$-r$i"
done
raw_times=($("$BENCH" qemu:///system "$T"/raw*.xml | awk '{print $2}'))
for i in $(seq "$N"); do api DELETE "/servers/habench-$$-a$i" >/dev/null; done

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

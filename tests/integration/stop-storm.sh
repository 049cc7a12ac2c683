#!/bin/bash
# Graceful stops do not hold up the rest of the agent (issue 9): 8 running guests (diskless, no
# guest OS: nothing answers the ACPI power button, so each stop waits for its whole timeout) are
# stopped at once with a 20 s timeout, on an agent with its default worker pool (8). While the
# stops wait, GET /servers answers from the guest view within 1 s, and GET /metrics and the
# start of a ninth guest are done long before the stops' deadline (a QEMU start and libvirt's
# bulk statistics take seconds on a loaded 2-core machine, so the bound is the deadline, not a
# figure); then every stop ends "forced", after its timeout. An agent whose stops waited on a worker
# would have all 8 workers held and the ninth start would wait for the stops.
. "$(dirname "$0")/lib.sh"
need_root
[ -e /dev/kvm ] || skip "no /dev/kvm"
libvirtd_lock shared
libvirtd_up || hard "libvirtd does not start (deploy/setup-host.sh installs it)"
start_agent
N=8
TIMEOUT=20
V="virsh -q -c qemu:///system"
sid() { echo "hastop-$$-$1"; }
for i in $(seq 0 $N); do
	on_exit "$V destroy $(sid "$i"); $V undefine $(sid "$i") --nvram"
	desc="{\"desc\": {\"uuid\": \"$(cat /proc/sys/kernel/random/uuid)\", \"name\": \"stop storm $i\", \"cpu\": 1, \"mem\": 128}}"
	expect_api 200 POST "/servers/$(sid "$i")/create" "$desc" >/dev/null
done
for i in $(seq 1 $N); do
	expect_api 200 POST "/servers/$(sid "$i")/start" '{}' >/dev/null
done
ok "$N guests running, a ninth defined"

# timed NAME METHOD PATH [JSON]: the request over the admin socket in its own files; prints the
# seconds it took.
timed() {
	local args=(-s -o "$T/$1.out" -w '%{http_code} %{time_total}' -X "$2" --unix-socket "$SOCK" --max-time 60)
	[ -z "${4:-}" ] || args+=(-H 'Content-Type: application/json' --data-binary "$4")
	curl "${args[@]}" "http://localhost$3" >"$T/$1.code"
	cut -d' ' -f2 "$T/$1.code"
}
pids=()
t0=$(date +%s%N)
for i in $(seq 1 $N); do
	timed "stop$i" POST "/servers/$(sid "$i")/stop" "{\"timeout\": $TIMEOUT}" >"$T/stop$i.time" &
	pids+=($!)
done
sleep 1
list_s=$(timed list GET /servers)
metrics_s=$(timed metrics GET /metrics)
start_s=$(timed start POST "/servers/$(sid 0)/start" '{}')
side_ms=$((($(date +%s%N) - t0) / 1000000))
for f in list metrics start; do
	expect_eq "$(cut -d' ' -f1 "$T/$f.code")" 200 "$f during the stops: $(cat "$T/$f.out")"
done
expect_contains "$(cat "$T/list.out")" "$(sid 0)" "GET /servers lists the guests"
expect_contains "$(cat "$T/metrics.out")" "hostagent_" "GET /metrics"
expect_eq "$($V domstate "$(sid 0)")" running "the ninth guest started during the stops"
# The stops were still waiting when the other requests were answered.
[ "$side_ms" -lt $((TIMEOUT * 1000)) ] || fail "the other requests took until ${side_ms} ms, past the stops' timeout"
python3 -c "import sys; sys.exit(0 if float('$list_s') < 1 else 1)" ||
	fail "GET /servers during the stops took $list_s s"
ok "while $N stops waited: GET /servers ${list_s} s, GET /metrics ${metrics_s} s, start of another guest ${start_s} s"

for p in "${pids[@]}"; do wait "$p"; done
stop_ms=$((($(date +%s%N) - t0) / 1000000))
for i in $(seq 1 $N); do
	expect_eq "$(cut -d' ' -f1 "$T/stop$i.code")" 200 "stop $i: $(cat "$T/stop$i.out")"
	expect_contains "$(cat "$T/stop$i.out")" '"details":"forced"' "stop $i of a guest that ignores ACPI"
	expect_eq "$($V domstate "$(sid "$i")")" "shut off" "guest $i after its stop"
	python3 -c "import sys; sys.exit(0 if float('$(cat "$T/stop$i.time")') >= $TIMEOUT - 0.1 else 1)" ||
		fail "stop $i returned after $(cat "$T/stop$i.time") s, before its $TIMEOUT s timeout"
done
ok "all $N stops forced at their ${TIMEOUT} s timeout (all done after ${stop_ms} ms)"

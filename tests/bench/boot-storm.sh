#!/bin/bash
# Benchmark (not a test): a boot storm. N diskless KVM guests (default 30) created and started
# at once through the agent (admin socket API: N clients, each POST create then POST start, which
# answers once libvirt reports the guest running) against the same N domain XMLs defined and
# started at once straight through the libvirt API (tests/bench/bench-libvirt --parallel: one
# thread per domain on one connection, as the agent has one). Rounds alternate agent, libvirt,
# agent, libvirt ... so both see the same host; prints the wall time from the release to the last
# guest running, per round, the medians and their ratio (target: agent within 5 %, ratio <= 1.05).
# Usage: tests/bench/boot-storm.sh [N] [ROUNDS] (root, built tree, libvirtd up).
set -euo pipefail
N=${1:-30}
ROUNDS=${2:-3}
. "$(dirname "$0")/../integration/lib.sh"
need_libvirtd
need_bench_libvirt
start_agent ${AGENT_ARGS:-}
V="virsh -q -c qemu:///system"
on_exit "for d in \$($V list --all --name | grep '^hastorm-$$-'); do $V destroy \$d; $V undefine \$d; done >/dev/null 2>&1"

now_ms() { date +%s%3N; }

# One client of the storm: create, then start; prints the HTTP codes.
client() {
	local s=$1 c1 c2
	c1=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$SOCK" -X POST -H 'Content-Type: application/json' \
		--data-binary "{\"desc\": {\"uuid\": \"$(cat /proc/sys/kernel/random/uuid)\", \"name\": \"storm\", \"cpu\": 1, \"mem\": 128}}" \
		"http://localhost/servers/$s/create")
	c2=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$SOCK" -X POST -H 'Content-Type: application/json' \
		--data-binary '{}' "http://localhost/servers/$s/start")
	echo "$c1 $c2"
}

agent_round() { # round number; prints the wall ms
	local r=$1 t0 i
	mkdir -p "$T/r$r"
	t0=$(now_ms)
	for i in $(seq "$N"); do
		client "hastorm-$$-a$r-$i" >"$T/r$r/$i" &
	done
	wait
	echo $(($(now_ms) - t0))
	for i in $(seq "$N"); do
		[ "$(cat "$T/r$r/$i")" = "200 200" ] || fail "agent round $r guest $i: HTTP $(cat "$T/r$r/$i")"
	done
	[ "$($V list --name | grep -c "^hastorm-$$-a$r-")" = "$N" ] || fail "agent round $r: not all $N guests run"
	# The XML of these guests is the baseline's input (renamed, no uuid).
	if [ ! -d "$T/xml" ]; then
		mkdir -p "$T/xml"
		for i in $(seq "$N"); do
			$V dumpxml --inactive "hastorm-$$-a$r-$i" |
				sed -e "s|<name>hastorm-$$-a$r-$i</name>|<name>hastorm-$$-RAW-$i</name>|" -e '/<uuid>/d' >"$T/xml/$i.xml"
		done
	fi
	for i in $(seq "$N"); do
		api DELETE "/servers/hastorm-$$-a$r-$i" >/dev/null
	done
	wait_for 60 sh -c "! $V list --all --name | grep -q '^hastorm-$$-a$r-'" || fail "agent round $r guests not removed"
}

raw_round() { # round number; prints the wall ms
	local r=$1 i d
	for i in $(seq "$N"); do
		sed "s|hastorm-$$-RAW-$i|hastorm-$$-r$r-$i|" "$T/xml/$i.xml" >"$T/xml/r$r-$i.xml"
	done
	"$BENCH" --parallel qemu:///system "$T"/xml/r"$r"-*.xml >"$T/raw$r.out" || fail "bench-libvirt round $r failed"
	[ "$(grep -c "^hastorm-$$-r$r-" "$T/raw$r.out")" = "$N" ] || fail "libvirt round $r: not all $N guests ran"
	awk '/^total/ {printf "%d\n", $2}' "$T/raw$r.out"
	for d in $($V list --all --name | grep "^hastorm-$$-r$r-"); do
		$V destroy "$d" >/dev/null 2>&1
		$V undefine "$d" >/dev/null 2>&1
	done
}

agent_ms=()
raw_ms=()
for r in $(seq "$ROUNDS"); do
	a=$(agent_round "$r")
	b=$(raw_round "$r")
	echo "round $r: agent ${a} ms, libvirt ${b} ms"
	agent_ms+=("$a")
	raw_ms+=("$b")
done
python3 - "$N" "${agent_ms[*]}" "${raw_ms[*]}" <<'PY'
import sys, statistics
n = sys.argv[1]
a = [float(x) for x in sys.argv[2].split()]; r = [float(x) for x in sys.argv[3].split()]
ma, mr = statistics.median(a), statistics.median(r)
print(f"boot storm of {n} guests, median of {len(a)} rounds: agent {ma:.0f} ms, libvirt API {mr:.0f} ms, "
      f"ratio agent/libvirt {ma / mr:.3f} (target <= 1.05)")
PY

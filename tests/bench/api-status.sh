#!/bin/bash
# Benchmark: wrk against GET /servers/<sid>/status with 50 guests defined, over TCP with a
# token, as the region polls it. Prints requests/s, p99 latency, the ratio to GET /ping in the
# same run, and the agent's memory (RSS, PSS and private memory from /proc/PID/smaps_rollup)
# with no guest and with the guests.
# Usage: tests/bench/api-status.sh   (env: top_builddir, BENCH_LIBVIRT_URI (test:///default),
#        BENCH_GUESTS (50), BENCH_SECONDS (10), BENCH_CONNECTIONS (32), BENCH_THREADS (2),
#        BENCH_START (0; 1 starts every guest: qemu:///system gives 50 running KVM guests),
#        BENCH_PATH (status; "list" benchmarks GET /servers instead), BENCH_SETTLE (seconds
#        to let started guests finish their firmware before measuring; 20 with BENCH_START=1)).
# Build without --enable-sanitizers for representative numbers. Exit 77 when wrk is missing.
. "$(dirname "$0")/../integration/lib.sh"
command -v wrk >/dev/null || skip "wrk not installed (apt-get install wrk)"
URI=${BENCH_LIBVIRT_URI:-test:///default}
N=${BENCH_GUESTS:-50}
SECS=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-2}
START=${BENCH_START:-0}
WHAT=${BENCH_PATH:-status}
# mem PID: "RSS kB, PSS kB, private kB" (private = Private_Clean + Private_Dirty).
mem() {
	awk '/^Rss:/ {r=$2} /^Pss:/ {p=$2} /^Private_(Clean|Dirty):/ {v+=$2} END {print r, p, v}' \
		"/proc/$1/smaps_rollup"
}

mkdir -p "$T/disks"
"$HOSTAGENT" --state-dir "$T/state" --servers-path "$T/servers" --local-image-path "$T/disks" \
	--admin-socket "$T/admin.sock" --listen-address 127.0.0.1 --port 0 --libvirt-uri "$URI" \
	--api-rate-limit=1000000 --api-max-connections=1024 --log-level=warning >"$T/agent.log" 2>&1 &
pid=$!
on_exit "kill -TERM $pid; wait $pid"
wait_for 20 test -S "$T/admin.sock" || fail "agent did not start"
wait_for 10 test -s "$T/state/api-token" || fail "no API token"
port=$(grep -o 'API listening address=[^ ]* port=[0-9]*' "$T/agent.log" | grep -o '[0-9]*$')
if [ -z "$port" ]; then
	# At log level warning the listening line is not printed: ask the kernel.
	port=$(ss -ltnpH 2>/dev/null | grep "pid=$pid," | grep -o '127.0.0.1:[0-9]*' | head -n1 | cut -d: -f2)
fi
[ -n "$port" ] || fail "cannot find the agent's port"
token=$(cat "$T/state/api-token")
wait_for 30 sh -c "curl -s -o /dev/null -w '%{http_code}' -H 'X-Auth-Token: $token' http://127.0.0.1:$port/servers | grep -q 200" ||
	fail "the agent does not list guests"
read -r rss0 pss0 priv0 <<<"$(mem $pid)"

sids=()
for i in $(seq 1 "$N"); do
	sid=bench-$$-$i
	cat >"$T/desc.json" <<JSON
{"desc": {"uuid": "$(python3 -c 'import uuid; print(uuid.uuid4())')", "name": "$sid", "cpu": 1, "mem": 64}}
JSON
	"$HOSTCTL" --socket "$T/admin.sock" vm create "$sid" "$T/desc.json" >/dev/null ||
		fail "hostctl vm create $sid"
	sids+=("$sid")
	on_exit "virsh -c '$URI' undefine '$sid'"
	if [ "$START" = 1 ]; then
		on_exit "virsh -c '$URI' destroy '$sid'"
		"$HOSTCTL" --socket "$T/admin.sock" vm start "$sid" >/dev/null || fail "hostctl vm start $sid"
	fi
done
sleep "${BENCH_SETTLE:-$([ "$START" = 1 ] && echo 20 || echo 1)}"
read -r rss1 pss1 priv1 <<<"$(mem $pid)"
"$HOSTCTL" --socket "$T/admin.sock" vm status "${sids[0]}" >/dev/null || fail "status of ${sids[0]}"

# Each request asks for one of the N guests, round robin.
{
	printf 'local sids = {'
	printf '"%s",' "${sids[@]}"
	printf '}\nlocal i = 0\nrequest = function()\n  i = i %% #sids + 1\n'
	if [ "$WHAT" = list ]; then
		printf '  return wrk.format("GET", "/servers", {["X-Auth-Token"] = "%s"})\nend\n' "$token"
	else
		printf '  return wrk.format("GET", "/servers/" .. sids[i] .. "/status", {["X-Auth-Token"] = "%s"})\nend\n' "$token"
	fi
	printf 'done = function(summary, latency, requests)\n'
	printf '  io.write(string.format("errors: %%d non-2xx: %%d\\n", summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout, summary.errors.status))\nend\n'
} >"$T/bench.lua"

out=$(wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --latency -s "$T/bench.lua" "http://127.0.0.1:$port") ||
	fail "wrk failed"
echo "$out" >"$T/wrk.out"
rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
errors=$(echo "$out" | grep -o 'errors: [0-9]* non-2xx: [0-9]*')
rss=$(awk '/^VmRSS:/ {print $2 " " $3}' /proc/$pid/status)
kill -0 $pid 2>/dev/null || fail "agent died during the benchmark"
# Baseline in the same run: GET /ping on the same server (no token check, no libvirt call).
base=$(wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --latency "http://127.0.0.1:$port/ping") ||
	fail "wrk /ping failed"
base_rps=$(echo "$base" | awk '/^Requests\/sec:/ {print $2}')
base_p99=$(echo "$base" | awk '$1 == "99%" {print $2}')
rss_after=$(awk '/^VmRSS:/ {print $2 " " $3}' /proc/$pid/status)
echo "guests:       $N ($URI, $([ "$START" = 1 ] && echo running || echo defined))"
printf '%-34s %12s %10s\n' "" "requests/s" "p99"
label="GET /servers/<sid>/status (token)"
[ "$WHAT" = list ] && label="GET /servers (token)"
printf '%-34s %12s %10s\n' "$label" "$rps" "$p99"
printf '%-34s %12s %10s\n' "GET /ping (baseline)" "$base_rps" "$base_p99"
echo "ratio:        $(awk -v a="$rps" -v b="$base_rps" 'BEGIN {printf "%.3f", a / b}') of /ping"
echo "agent RSS:    $rss after the run, $rss_after after the baseline"
printf 'memory kB:    %-12s %8s %8s %8s\n' "" RSS PSS private
printf '              %-12s %8s %8s %8s\n' "0 guests" "$rss0" "$pss0" "$priv0"
printf '              %-12s %8s %8s %8s\n' "$N guests" "$rss1" "$pss1" "$priv1"
echo "growth:       $(((priv1 - priv0) / N)) kB private, $(((pss1 - pss0) / N)) kB PSS per guest"
echo "wrk:          $errors, $THREADS threads, $CONNS connections, ${SECS}s each"
case "$errors" in "errors: 0 non-2xx: 0") ;; *) fail "requests failed during the benchmark ($errors)";; esac

#!/bin/bash
# Benchmark: wrk against GET /servers/<sid>/status with 50 guests defined, over TCP with a
# token, as the region polls it. Prints requests/s, p99 latency and the agent's RSS.
# Usage: tests/bench/api-status.sh   (env: top_builddir, BENCH_LIBVIRT_URI (test:///default),
#        BENCH_GUESTS (50), BENCH_SECONDS (10), BENCH_CONNECTIONS (32), BENCH_THREADS (2)).
# Build without --enable-sanitizers for representative numbers. Exit 77 when wrk is missing.
. "$(dirname "$0")/../integration/lib.sh"
command -v wrk >/dev/null || skip "wrk not installed (apt-get install wrk)"
URI=${BENCH_LIBVIRT_URI:-test:///default}
N=${BENCH_GUESTS:-50}
SECS=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-2}

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
done
"$HOSTCTL" --socket "$T/admin.sock" vm status "${sids[0]}" >/dev/null || fail "status of ${sids[0]}"

# Each request asks for one of the N guests, round robin.
{
	printf 'local sids = {'
	printf '"%s",' "${sids[@]}"
	printf '}\nlocal i = 0\nrequest = function()\n  i = i %% #sids + 1\n'
	printf '  return wrk.format("GET", "/servers/" .. sids[i] .. "/status", {["X-Auth-Token"] = "%s"})\nend\n' "$token"
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
echo "guests:       $N ($URI)"
printf '%-34s %12s %10s\n' "" "requests/s" "p99"
printf '%-34s %12s %10s\n' "GET /servers/<sid>/status (token)" "$rps" "$p99"
printf '%-34s %12s %10s\n' "GET /ping (baseline)" "$base_rps" "$base_p99"
echo "agent RSS:    $rss after the status run, $rss_after after the baseline"
echo "wrk:          $errors, $THREADS threads, $CONNS connections, ${SECS}s each"
case "$errors" in "errors: 0 non-2xx: 0") ;; *) fail "requests failed during the benchmark ($errors)";; esac

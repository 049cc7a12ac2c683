#!/bin/bash
# Benchmark (not a test): a 1 GiB qcow2 image through the fake image service on loopback, in one
# run: the agent's image_cache (HEAD, GET with MD5 while streaming, fsync, qemu-img check, until
# the file is in place, as its log reports it; the report to the region after it is shown apart)
# against `curl -o` of the same URL followed by md5sum. Prints both and the
# ratio (target <= 1.0). Then a 20 GiB disk from the cached template (an overlay, no copy),
# timed through the synchronous API (target < 100 ms).
# Rounds alternate curl and agent (ROUNDS, default 3); the medians are compared.
# Usage: tests/bench/image-cache.sh [SIZE_MB] (root, built tree, python3-keystone).
set -euo pipefail
SIZE_MB=${1:-1024}
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/../integration/keystone-lib.sh"
need_root
set +e

fake_image_port
region_start --zone zone1 >/dev/null
fake_image_start

echo "# making a ${SIZE_MB} MiB qcow2 image"
qemu-img create -q -f qcow2 "$T/big.qcow2" "$((SIZE_MB + 64))M" || hard "qemu-img"
qemu-io -f qcow2 -c "write -P 7 0 ${SIZE_MB}M" "$T/big.qcow2" >/dev/null || hard "qemu-io"
curl -sf -X POST "$FI/__image" -d "{\"id\":\"bench1\",\"path\":\"$T/big.qcow2\",\"name\":\"bench\"}" >/dev/null
qemu-img create -q -f qcow2 "$T/small.qcow2" 1M || hard "qemu-img"
curl -sf -X POST "$FI/__image" -d "{\"id\":\"warm\",\"path\":\"$T/small.qcow2\",\"name\":\"warm\"}" >/dev/null
bytes=$(stat -c %s "$T/big.qcow2")

mkdir -p "$T/disks"
region_conf "$T/host.conf" "$API_PORT" </dev/null
"$HOSTAGENT" --config "$T/host.conf" --log-level info >>"$T/agent.log" 2>&1 9>&- &
on_exit "kill -TERM $!; wait $!"
SOCK=$T/admin.sock
wait_for 20 test -S "$SOCK" || fail "no admin socket"
wait_for 60 grep -q "Authenticated to keystone" "$T/agent.log" || fail "agent did not authenticate"
fr_storage_ids

# Warm the page cache for both, and the fake's token cache.
cat "$T/big.qcow2" >/dev/null
TOKEN=$(ks_token "$KS_AGENT_USER" "$KS_AGENT_PASSWORD" "$KS_AGENT_PROJECT")
URL="$FI/v1/images/bench1?format=qcow2&scope=system"
curl -sf -I -H "X-Auth-Token: $TOKEN" "$URL" >/dev/null || hard "HEAD with a token"

# Warm the fake's cache of the agent's own token too (its first validation asks keystone): a
# small image cached first.
out=$(curl -s --unix-socket "$SOCK" --max-time 60 -X POST -H 'Content-Type: application/json' \
	--data-binary '{"disk":{"image_id":"warm","storagecache_id":"'"$SC"'","format":"qcow2"}}' \
	http://localhost/disks/image_cache)
expect_contains "$out" '"path"' "warm-up image_cache reply"

ROUNDS=${ROUNDS:-3}
BODY='{"disk":{"image_id":"bench1","storagecache_id":"'"$SC"'","format":"qcow2"}}'
curl_r=()
durable_r=()
agent_r=()
for r in $(seq "$ROUNDS"); do
	# curl -o + md5sum (no fsync: the baseline does less than the agent, which makes the file
	# durable before it reports it cached)
	start=$(date +%s.%N)
	curl -sf -H "X-Auth-Token: $TOKEN" -o "$T/curl.img" "$URL" || hard "curl"
	md5=$(md5sum "$T/curl.img" | cut -d' ' -f1)
	end=$(date +%s.%N)
	curl_r+=("$(python3 -c "print(round($end - $start, 3))")")
	rm -f "$T/curl.img"
	sync
	# the same made durable, as the agent makes its copy (for comparison, not the target)
	start=$(date +%s.%N)
	curl -sf -H "X-Auth-Token: $TOKEN" -o "$T/curl.img" "$URL" || hard "curl"
	md5sum "$T/curl.img" >/dev/null
	sync "$T/curl.img"
	end=$(date +%s.%N)
	durable_r+=("$(python3 -c "print(round($end - $start, 3))")")
	rm -f "$T/curl.img"
	sync

	# the agent (synchronous call: no X-Task-Id), then the cached image removed for the next
	# round (a cached image whose MD5 matches is reused without a download)
	out=$(curl -s --unix-socket "$SOCK" --max-time 600 -X POST -H 'Content-Type: application/json' \
		--data-binary "$BODY" http://localhost/disks/image_cache)
	expect_contains "$out" '"path"' "image_cache reply"
	# the time until the file was in place (the region's report after it is printed apart)
	agent_r+=("$(sed -n 's/.*Image cached image_id=bench1 .*(cached \([0-9.]*\):.*/\1/p' "$T/agent.log" | tail -1)")
	[ "$(md5sum "$T/disks/image_cache/bench1" | cut -d' ' -f1)" = "$md5" ] || fail "cached file differs"
	if [ "$r" != "$ROUNDS" ]; then
		out=$(curl -s --unix-socket "$SOCK" -X DELETE -H 'Content-Type: application/json' \
			--data-binary "$BODY" http://localhost/disks/image_cache)
		[ ! -e "$T/disks/image_cache/bench1" ] || fail "image_cache delete: $out"
	fi
	sync
	steps=$(sed -n 's/.*Image cached image_id=bench1 .*(cached [0-9.]*: \(.*\)).*/\1/p' "$T/agent.log" | tail -1)
	echo "round $r: agent ${agent_r[-1]} s ($steps), curl -o + md5sum ${curl_r[-1]} s," \
		"curl -o + md5sum + sync of the file ${durable_r[-1]} s"
done
python3 - "$bytes" "${agent_r[*]}" "${curl_r[*]}" "${durable_r[*]}" <<'PY'
import sys, statistics
b = int(sys.argv[1]); a, c, d = (statistics.median(map(float, x.split())) for x in sys.argv[2:5])
print(f"image {b} bytes, median of {len(sys.argv[2].split())} rounds: agent {a:.2f} s ({b/1e6/a:.0f} MB/s), "
      f"curl -o + md5sum {c:.2f} s ({b/1e6/c:.0f} MB/s), ratio agent/curl {a/c:.2f} (target <= 1.0); "
      f"curl -o + md5sum + sync {d:.2f} s, ratio agent/that {a/d:.2f}")
PY

# A 20 GiB disk from the cached template.
times=()
for i in 1 2 3 4 5; do
	t=$(curl -s -o "$T/body" -w '%{time_total}' --unix-socket "$SOCK" -X POST \
		-H 'Content-Type: application/json' \
		--data-binary '{"disk":{"format":"qcow2","disk_size_mb":20480,"image_id":"bench1"}}' \
		"http://localhost/disks/$ST/create/bench-disk-$i")
	expect_contains "$(cat "$T/body")" '"disk_size":20480' "20 GiB disk reply"
	times+=("$(python3 -c "print(round($t * 1000, 1))")")
done
echo "20 GiB disk from the cached template: ${times[*]} ms (target < 100 ms)"

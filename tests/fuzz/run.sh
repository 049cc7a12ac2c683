#!/bin/bash
# Builds the API router/body fuzz target with clang's libFuzzer (+ASan/UBSan) and runs it for a
# bounded time. Usage: tests/fuzz/run.sh [SECONDS] (default 60; FUZZ_SECONDS also works).
# Exit: 0 no crash, 1 crash found (reproducer in the printed artifact directory), 77 when clang
# or libFuzzer is missing, 99 build failure. Nothing is written into the source tree.
set -u
srcdir=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-${FUZZ_SECONDS:-60}}
case "$secs" in '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 99 ;; esac
command -v clang >/dev/null || { echo "SKIP: clang not installed" >&2; exit 77; }
work=${FUZZ_WORKDIR:-$(mktemp -d /tmp/hostagent-fuzz.XXXXXX)}
mkdir -p "$work/corpus" "$work/artifacts"

echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n); int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' >"$work/probe.c"
clang -fsanitize=fuzzer "$work/probe.c" -o "$work/probe" 2>/dev/null ||
	{ echo "SKIP: clang cannot link libFuzzer (apt-get install libclang-rt-14-dev)" >&2; exit 77; }

# The target links only the pure parts (router, path helpers) and jansson.
printf "#define _GNU_SOURCE 1\n#define PACKAGE_VERSION \"fuzz\"\n" >"$work/config.h"
clang -g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-include "$work/config.h" -I"$srcdir" $(pkg-config --cflags jansson) \
	"$srcdir/tests/fuzz/fuzz-router.c" "$srcdir/agent/api-routes.c" "$srcdir/common/path.c" "$srcdir/common/util.c" \
	$(pkg-config --libs jansson) -o "$work/fuzz-router" || { echo "ERROR: build failed" >&2; exit 99; }
# The descriptor target: parser and domain XML writer.
clang -g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-include "$work/config.h" -I"$srcdir" $(pkg-config --cflags jansson libxml-2.0) \
	"$srcdir/tests/fuzz/fuzz-desc.c" "$srcdir/agent/desc.c" "$srcdir/agent/domxml.c" "$srcdir/agent/hostnet.c" \
	"$srcdir/agent/dhcp-conf.c" \
	"$srcdir/common/path.c" "$srcdir/common/util.c" "$srcdir/common/parse.c" "$srcdir/common/json-util.c" \
	$(pkg-config --libs jansson libxml-2.0) -o "$work/fuzz-desc" || { echo "ERROR: build failed" >&2; exit 99; }
# The other untrusted inputs: monitor commands, qemu-img's JSON about a downloaded image, deploy
# fields (config drive).
clang -g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-include "$work/config.h" -I"$srcdir" $(pkg-config --cflags jansson yaml-0.1 nettle) \
	"$srcdir/tests/fuzz/fuzz-bodies.c" "$srcdir/agent/monitor.c" "$srcdir/agent/imagecheck.c" \
	"$srcdir/agent/qemuimg.c" "$srcdir/agent/configdrive.c" "$srcdir/agent/diskreq.c" \
	"$srcdir/common/spawn.c" "$srcdir/common/util.c" "$srcdir/common/parse.c" "$srcdir/common/path.c" "$srcdir/common/json-util.c" \
	$(pkg-config --libs jansson yaml-0.1 nettle) -o "$work/fuzz-bodies" || { echo "ERROR: build failed" >&2; exit 99; }
mkdir -p "$work/corpus-bodies"
printf '\000{"execute":"query-status"}' >"$work/corpus-bodies/qmp"
printf '\000{"execute":"human-monitor-command","execute":"query-status"}' >"$work/corpus-bodies/qmp-dup"
printf '\001info status' >"$work/corpus-bodies/hmp"
printf 'D{"password":"p\\"w","public_key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA x\\": y","deploys":[{"path":"/etc/a: b","content":"x","action":"append"}],"desc":{"hostname":"h-1","nics":[{"mac":"52:54:00:00:00:01","ip":"10.0.0.2","masklen":24,"gateway":"10.0.0.1","dns":"10.0.0.3"}]}}' >"$work/corpus-bodies/deploy"
printf '\006{"format":"qcow2","virtual-size":1048576,"filename":"/var/lib/cache/img","format-specific":{"type":"qcow2","data":{"data-file":"/etc/shadow"}}}' >"$work/corpus-bodies/img-datafile"
printf '\002{"format":"raw","virtual-size":1048576,"filename":"/var/lib/cache/img"}' >"$work/corpus-bodies/img-raw"
printf 'K0{"disk":{"format":"raw","image_id":"img-1","disk_size_mb":-1}}' >"$work/corpus-bodies/disk-create"
printf 'K1{"disk":{"size":2048,"server_id":"s-1"}}' >"$work/corpus-bodies/disk-resize"
printf 'K2{"disk":{"image_id":"i1","storagecache_id":"sc1","format":"qcow2","server_id":"s1"}}' >"$work/corpus-bodies/image-cache"
printf 'K3{"disk":{"image_id":"i1","storagecache_id":"sc1"}}' >"$work/corpus-bodies/image-uncache"
printf '\006{"format":"qcow2","virtual-size":1,"filename":"json:{}","backing-filename":"/etc/passwd"}' >"$work/corpus-bodies/img-backing"
mkdir -p "$work/corpus-desc"
for f in "$srcdir"/tests/data/desc/*.json; do cp "$f" "$work/corpus-desc/"; done

# Seeds: real requests and the malformed shapes the robustness test sends.
seed() { printf '%b' "$2" >"$work/corpus/$1"; }
seed ping 'GET /ping\n'
seed status 'GET /servers/abc/status\n'
seed create 'POST /servers/abc/create\n{"desc": {"name": "vm1", "cpu": 1, "mem": 128, "disks": [{"index": 0, "size": 1024}]}}'
seed stop 'POST /servers/abc/stop\n{"timeout": 30, "is_force": false}'
seed delete 'DELETE /servers/%2e%2e\n'
seed trunc 'POST /servers/abc/sync\n{"desc": {"name": '
seed utf8 'POST /servers/abc/monitor\n{"cmd": "\xff\xfe"}'
seed deep 'POST /hosts/h/sync\n{"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}'
seed esc 'GET /servers/a%2Fb%00/status\n'
seed upload 'POST /servers/upload-status\n{"guest_ids": ["a-1", "b-2"]}'

# Each target gets a third of the time.
half=$(( (secs + 2) / 3 ))
run_target() { # NAME CORPUS
	echo "fuzzing $1 for ${half}s in $work"
	"$work/$1" -max_total_time="$half" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
		-artifact_prefix="$work/artifacts/$1-" -print_final_stats=1 "$2" 2>"$work/$1.log"
	local rc=$?
	tail -n 6 "$work/$1.log"
	if [ $rc -ne 0 ]; then
		echo "FAIL: $1 crashed (rc=$rc); artifacts in $work/artifacts" >&2
		exit 1
	fi
	echo "ok: $1 ran ${half}s without a crash"
}
run_target fuzz-router "$work/corpus"
run_target fuzz-desc "$work/corpus-desc"
run_target fuzz-bodies "$work/corpus-bodies"
[ -z "${FUZZ_WORKDIR:-}" ] && rm -rf "$work"
exit 0

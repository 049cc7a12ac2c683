#!/bin/bash
# Placement on this machine's real cgroupfs: a multi-threaded process is started inside a
# throwaway cgroup standing for "the container" in every hierarchy; placement-check must see
# it misplaced, move every thread to the host partition in every hierarchy, and the process
# must survive killing everything left in "the container" (what podman kill / kubelet do).
set -u
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root"; exit 77; }
root=${CGROUP_ROOT:-/sys/fs/cgroup}
tool=${top_builddir:-.}/agent/placement-check
[ -x "$tool" ] || { echo "ERROR: $tool not built"; exit 99; }
[ -d "$root" ] || { echo "SKIP: no cgroup hierarchy at $root"; exit 77; }

tag=hatest-$$
container=/$tag-pod/ctr
partition=/$tag-host
name="vm-$tag"
pid=""

hiers=()
if [ -f "$root/cgroup.controllers" ]; then
	hiers=("$root")
else
	for d in "$root"/*; do
		[ -d "$d" ] && [ ! -L "$d" ] && [ -f "$d/cgroup.procs" ] && hiers+=("$d")
	done
fi
[ ${#hiers[@]} -gt 0 ] || { echo "SKIP: no writable cgroup hierarchy under $root"; exit 77; }

cleanup() {
	[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
	sleep 0.2
	for h in "${hiers[@]}"; do
		for d in "$h$partition/qemu-$name.hostagent" "$h$partition" "$h$container" "$h/$tag-pod"; do
			[ -d "$d" ] && rmdir "$d" 2>/dev/null
		done
	done
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

mk() { # creates a cgroup in one hierarchy; a v1 cpuset one gets cpus/mems first
	local h=$1 rel=$2 cur=$1 c
	IFS=/ read -ra parts <<<"${rel#/}"
	for c in "${parts[@]}"; do
		if [ ! -d "$cur/$c" ]; then
			mkdir "$cur/$c" || return 1
			if [ -f "$cur/$c/cpuset.cpus" ]; then
				cat "$cur/cpuset.cpus" >"$cur/$c/cpuset.cpus"
				cat "$cur/cpuset.mems" >"$cur/$c/cpuset.mems"
			fi
		fi
		cur=$cur/$c
	done
}
for h in "${hiers[@]}"; do
	mk "$h" "$container" || { echo "SKIP: cannot create cgroups in $h"; exit 77; }
done

# The process enters "the container" in every hierarchy, then becomes a 4-thread python.
procs=""
for h in "${hiers[@]}"; do procs="$procs $h$container/cgroup.procs"; done
sh -c 'for f in '"$procs"'; do echo $$ >"$f" || exit 1; done
exec python3 -c "
import threading, time
for _ in range(3):
    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
time.sleep(600)"' &
pid=$!
for _ in $(seq 50); do
	[ "$(ls /proc/$pid/task 2>/dev/null | wc -l)" -ge 4 ] && break
	sleep 0.1
done
[ "$(ls /proc/$pid/task | wc -l)" -ge 4 ] || fail "test process did not start 4 threads"

opts=(--cgroup-root="$root" --partition="$partition" --container-cgroup="/$tag-pod" --systemd=no)
out=$("$tool" "${opts[@]}" "$pid" "$name"); rc=$?
echo "$out"
[ $rc = 1 ] || fail "check without fix: exit $rc, expected 1 (violation)"
grep -q "misplaced=$(( ${#hiers[@]} * 4 ))" <<<"$out" || fail "expected every thread misplaced in ${#hiers[@]} hierarchies"

start=$(date +%s%N)
out=$("$tool" "${opts[@]}" --fix "$pid" "$name"); rc=$?
end=$(date +%s%N)
echo "$out"
echo "# fix took $(( (end - start) / 1000000 )) ms"
[ $rc = 0 ] || fail "fix: exit $rc"
grep -q "left=0" <<<"$out" || fail "violations left after fix"

# Every thread, every hierarchy: in the host partition now.
for t in /proc/$pid/task/*; do
	while IFS=: read -r _ key path; do
		case $path in
		"$partition/qemu-$name.hostagent") ;;
		/$tag-pod*) fail "thread ${t##*/} still in $path ($key)" ;;
		esac
	done <"$t/cgroup"
done

# "podman kill": kill everything in the container cgroup, in every hierarchy.
for h in "${hiers[@]}"; do
	for p in $(cat "$h$container/cgroup.procs"); do kill -9 "$p"; done
done
sleep 0.3
kill -0 "$pid" 2>/dev/null || fail "process died with the container"
out=$("$tool" "${opts[@]}" "$pid" "$name") || fail "re-check reports a violation: $out"
echo "PASS: $(ls /proc/$pid/task | wc -l) threads moved out of /$tag-pod in ${#hiers[@]} hierarchies and survived"
exit 0

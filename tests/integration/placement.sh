#!/bin/bash
# Placement on this machine's real cgroupfs: a multi-threaded process is started inside a
# throwaway cgroup standing for "the container" in every hierarchy; placement-check must see
# it misplaced, move every thread to the host partition in every hierarchy, and the process
# must survive killing everything left in "the container" (what podman kill / kubelet do).
# Then the same through systemd over sd-bus: in a systemd node container (ENVIRONMENT.md) a
# process of a service standing in for the pod is moved into a transient scope in
# machine.slice, survives killing the service, and a second one is attached to the existing
# scope. Times: cgroupfs part < 1 s; systemd part 15 s, plus about 50 s once to build the node
# image (cached by package list under /var/cache/hostagent-image).
set -u
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root"; exit 77; }
root=${CGROUP_ROOT:-/sys/fs/cgroup}
tool=${top_builddir:-.}/placement/placement-check
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
echo "ok: $(ls /proc/$pid/task | wc -l) threads moved out of /$tag-pod in ${#hiers[@]} hierarchies and survived"
kill -9 "$pid"; pid=""

# --- systemd over sd-bus, in a systemd node container -------------------------------------
. "$(dirname "$0")/node-lib.sh"
pkgs="systemd systemd-sysv dbus systemd-container procps libvirt0 libkmod2 libnl-3-200
libnl-route-3-200 libsystemd0 libjansson4 libmicrohttpd12 libcurl3-gnutls libyaml-0-2 libxml2"
ldd "$tool" | grep -q libasan && pkgs="$pkgs libasan8 libubsan1"
node_image $pkgs || exit 99
node=$tag-sdnode
trap 'podman rm -f -t 0 "$node" >/dev/null 2>&1; cleanup' EXIT
node_start "$node" || exit 99
podman cp "$tool" "$node:/usr/local/bin/placement-check" || { echo "ERROR: podman cp"; exit 99; }

# One process of a service (the "pod") that is not its main process, as QEMU under libvirtd.
podman exec -i "$node" bash -s <<'IN' || fail "systemd placement"
set -u
fail() { echo "FAIL: $*"; exit 1; }
child() { # starts unit $1, prints the pid of its sleep child and the unit's cgroup
	systemd-run --quiet --unit="$1" sh -c "sleep 600 & wait" || return 1
	for _ in $(seq 50); do
		m=$(systemctl show -p MainPID --value "$1")
		c=$(pgrep -P "$m" sleep) && break
		sleep 0.1
	done
	echo "$c $(sed -n 's/^0:://p' /proc/$c/cgroup)"
}
read -r p cg < <(child fakepod1) || fail "no test service"
out=$(placement-check --systemd=yes --container-cgroup="$cg" "$p" vm-sd); rc=$?
[ $rc = 1 ] || fail "check without fix: exit $rc: $out"
out=$(placement-check --systemd=yes --container-cgroup="$cg" --fix "$p" vm-sd); rc=$?
echo "$out" | tail -1
[ $rc = 0 ] && grep -q 'systemd=yes' <<<"$out" || fail "fix through systemd: exit $rc"
grep -q '^0::.*/machine.slice/hostagent-qemu-vm\\x2dsd.scope$' /proc/$p/cgroup ||
	fail "not in the scope: $(cat /proc/$p/cgroup)"
systemctl kill --signal=KILL fakepod1.service
sleep 0.5
kill -0 "$p" 2>/dev/null || fail "the moved process died with its service"
read -r p2 cg2 < <(child fakepod2) || fail "no second test service"
out=$(placement-check --systemd=yes --container-cgroup="$cg2" --fix "$p2" vm-sd); rc=$?
echo "$out" | tail -1
[ $rc = 0 ] && grep -q 'systemd=yes' <<<"$out" || fail "attach to the existing scope: exit $rc"
[ "$(systemctl show -p ActiveState --value 'hostagent-qemu-vm\x2dsd.scope')" = active ] ||
	fail "scope not active"
echo "ok: systemd scope placement (StartTransientUnit, AttachProcessesToUnit)"
IN
echo "PASS"
exit 0

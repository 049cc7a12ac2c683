#!/bin/bash
# Kernel modules on this machine (no loadable module support): built-in modules are reported as
# built in, a missing required module makes the node not ready with a message naming it, and
# the operator sees all of it through the API, hostctl and /metrics. Host info is re-read on
# POST /hosts/<hid>/sync.
. "$(dirname "$0")/lib.sh"
need_root
libvirtd_lock shared
libvirtd_up || hard "libvirtd does not start"

# The node needs kvm, tun and bridge (built into this kernel) and nbd (absent). modprobe through
# the host's PID 1 is not possible in this sandbox, so the fallback is off: the module tree
# and /sys/module decide.
SOCK=$T/admin.sock
mkdir -p "$T/servers" "$T/disks" "$T/state"
"$HOSTAGENT" --servers-path "$T/servers" --local-image-path "$T/disks" --state-dir "$T/state" \
	--admin-socket "$SOCK" --listen-address 127.0.0.1 --port 0 --modprobe-fallback=false \
	--kernel-modules "kvm;tun;bridge;nbd max_part=16;openvswitch?" >"$T/agent.log" 2>&1 9>&- &
AGENT_PID=$!
on_exit "kill -TERM $AGENT_PID; wait $AGENT_PID"
wait_for 20 test -S "$SOCK" || fail "no admin socket"
wait_for 20 sh -c "curl -s --unix-socket $SOCK http://localhost/modules | grep -q '\"resolved\"\|\"status\"'" ||
	fail "modules never checked"

out=$(expect_api 503 GET /readyz)
expect_contains "$out" "required kernel module nbd is missing" "readiness names the missing module"
case "$out" in *openvswitch*) fail "an optional module made the node not ready: $out";; esac
mods=$(expect_api 200 GET /modules)
st() { echo "$mods" | json "[m['status'] for m in j['modules'] if m['name']=='$1'][0]"; }
for m in kvm tun bridge; do expect_eq "$(st $m)" builtin "status of $m"; done
expect_eq "$(st nbd)" missing "status of nbd"
expect_eq "$(echo "$mods" | json 'j["ok"]')" false "modules ok flag"
grep -q 'level=error msg="Kernel module" module=nbd status=missing required=yes' "$T/agent.log" ||
	fail "missing module not logged as an error"
ok "modules reported: builtin and missing"

hc=$("$HOSTCTL" --socket "$SOCK" status); rc=$?
[ $rc -ne 0 ] || fail "hostctl status exits 0 while not ready"
expect_contains "$hc" "required kernel module nbd is missing" "hostctl status"
hc=$("$HOSTCTL" --socket "$SOCK" modules ensure) || fail "hostctl modules ensure failed"
expect_contains "$hc" '"nbd"' "hostctl modules ensure output"
metrics=$(api GET /metrics)
expect_contains "$metrics" 'hostagent_kernel_module{module="kvm",status="builtin",required="yes"} 1' "module metric"
expect_contains "$metrics" 'hostagent_kernel_module{module="nbd",status="missing",required="yes"} 1' "missing module metric"
ok "hostctl and metrics"

host=$(expect_api 200 POST /hosts/local/sync '{}')
expect_eq "$(echo "$host" | json 'j["host"]["cpu_count"]')" "$(nproc)" "cpu_count"
expect_eq "$(echo "$host" | json 'j["host"]["host_type"]')" hypervisor "host_type (the region's KVM host driver type)"
[ "$(echo "$host" | json 'j["host"]["mem_size"]')" -gt 0 ] || fail "mem_size in $host"
expect_eq "$(echo "$host" | json 'j["host"]["kvm"]')" true "kvm usable"
expect_contains "$(echo "$host" | json 'j["host"]["sys_info"]["libvirt_version"]')" "." "libvirt version"
expect_eq "$(echo "$host" | json '[m["status"] for m in j["host"]["kernel_modules"] if m["name"]=="nbd"][0]')" missing "modules in host info"
ok "host info"

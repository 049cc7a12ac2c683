#!/bin/bash
# The daemon's command line, configuration handling and signal behaviour, as an operator sees them.
. "$(dirname "$0")/lib.sh"

out=$("$HOSTAGENT" --version) || fail "--version"
expect_contains "$out" "hostagent " "--version"
"$HOSTAGENT" --help | grep -q -- "--print-config" || fail "--help lists --print-config"

# Effective configuration: file < environment < flags, secrets masked.
cat >"$T/host.conf" <<YAML
port: 9001
admin_password: topsecret
zone: z1
YAML
out=$(HOSTAGENT_PORT=9002 "$HOSTAGENT" --config "$T/host.conf" --print-config --zone=z2) || fail "--print-config"
expect_contains "$out" "port: 9002" "env overrides file"
expect_contains "$out" 'zone: "z2"' "flag overrides file"
expect_contains "$out" 'admin_password: "********"' "secret masked"
case "$out" in *topsecret*) fail "secret printed";; esac

# Invalid configuration: refuse to start, name file, line and key, exit 2.
printf 'port: 8885\nlisten_adress: 1.2.3.4\n' >"$T/bad.conf"
err=$("$HOSTAGENT" --config "$T/bad.conf" 2>&1); rc=$?
expect_eq "$rc" 2 "exit code for a bad configuration"
expect_contains "$err" "$T/bad.conf:2: unknown key 'listen_adress'" "error names file, line, key"

# Runs, logs its settings, and exits 0 on SIGTERM.
"$HOSTAGENT" --state-dir "$T/state" --servers-path "$T/servers" --local-image-path "$T/disks" \
	--admin-socket "$T/admin.sock" --listen-address 127.0.0.1 --port 0 --libvirt-uri test:///default \
	>"$T/agent.log" 2>&1 &
pid=$!
wait_for 10 grep -q "Effective configuration" "$T/agent.log" || fail "agent did not log its settings"
kill -TERM $pid
wait $pid; rc=$?
expect_eq "$rc" 0 "exit code after SIGTERM"
grep -q 'level=info msg="Effective configuration" version=' "$T/agent.log" || fail "key=value log line"
ok "agent basics"

# The example file documents every key and loads as is.
ex="$top_srcdir/deploy/examples/hostagent.yaml"
"$HOSTAGENT" --config "$ex" --print-config >"$T/ex.out" || fail "example configuration does not load"
for k in $("$HOSTAGENT" --print-config | grep -oE '^[a-z_]+:' | tr -d :); do
	grep -qE "^$k:" "$ex" || fail "key $k is not documented in deploy/examples/hostagent.yaml"
done
ok "example configuration"

#!/bin/bash
# API authentication in region mode against a real OpenStack Keystone: the agent survives a
# Keystone that is down at start, authenticates once it is up, renews its own token, and the
# API accepts only valid tokens carrying an allowed role when api_roles is set (no token,
# garbage, expired, revoked or role-less tokens get 401/403; a role held in a tenant's project
# does not count; no state-changing route is reachable without a valid token); by default any
# valid token passes, and api_projects restricts to listed projects. Task callbacks reach the
# region's /tasks/<id> with a valid token.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/keystone-lib.sh"

# Short-lived tokens: the expired-token case and the agent's renewal at half life.
EXP=20
export KS_TOKEN_EXPIRATION=$EXP
region_ports
region_conf "$T/host.conf" "$API_PORT" <<YAML
libvirt_uri: test:///default
admin_domain: Default
admin_project_domain: Default
session_endpoint_type: internal
token_cache_seconds: 2
api_roles: [admin]
YAML

# code METHOD PATH [TOKEN] [BODY]: prints the HTTP status of an API call.
code() {
	local args=(-s -o "$T/resp" -w '%{http_code}' -X "$1" "$API$2")
	[ -n "${3:-}" ] && args+=(-H "X-Auth-Token: $3")
	[ -n "${4:-}" ] && args+=(-H "Content-Type: application/json" -d "$4")
	curl "${args[@]}"
}
alive() { kill -0 "$AGENT_PID" 2>/dev/null || fail "the agent exited"; }

# 1. Keystone is down: the agent starts anyway, keeps retrying, and answers 503 meanwhile.
region_agent_start
wait_for 30 curl -sf "$API/ping" || fail "the API does not answer /ping on $API"
grep -q "Keystone authentication failed" "$T/agent.log" ||
	wait_for 10 grep -q "Keystone authentication failed" "$T/agent.log" || fail "no retry logged"
expect_eq "$(code GET /servers some-token)" 503 "token check while keystone is down"
expect_eq "$(code GET /ping)" 200 "/ping needs no token"
alive
ok "keystone down at start: agent up, 503 for token checks"

# 2. Keystone comes up (with the region's task endpoint in its catalog).
keystone_start "$FR"
fake_region_start "$FR_PORT"
region_agent_wait_auth 90
grep -q "compute=http://127.0.0.1:$FR_PORT" "$T/agent.log" || fail "compute endpoint of RegionOne/internal not taken"
alive
ok "authenticated once keystone came up"

OP=$(ks_token "$KS_OP_USER" "$KS_OP_PASSWORD" system)
MEMBER=$(ks_token "$KS_MEMBER_USER" "$KS_MEMBER_PASSWORD" system)
[ -n "$OP" ] && [ -n "$MEMBER" ] || hard "cannot get tokens from keystone"

expect_eq "$(code GET /servers "$OP")" 200 "admin token on GET /servers"
expect_eq "$(code GET /servers "$OP")" 200 "admin token again (cached)"
expect_eq "$(code GET /servers)" 401 "no token"
expect_eq "$(code GET /servers garbage-token)" 401 "garbage token"
expect_eq "$(code GET /servers "${OP}x")" 401 "tampered token"
expect_eq "$(code GET /servers "$MEMBER")" 403 "token without the admin role"
expect_eq "$(code GET /servers "$MEMBER")" 403 "token without the admin role, again (refusals not cached)"
ok "valid 200, missing/garbage 401, no role 403"

# State-changing routes: never reachable without a valid token.
sid=0b6f3c52-1f7e-4a53-9a47-6a0b7e1c2d3e
for route in "POST /servers/$sid/create" "POST /servers/$sid/start" "POST /servers/$sid/stop" \
	"POST /servers/$sid/reboot" "POST /servers/$sid/suspend" "POST /servers/$sid/resume" \
	"POST /servers/$sid/sync" "POST /servers/$sid/monitor" "DELETE /servers/$sid" \
	"POST /hosts/h1/sync" "GET /servers/$sid/status"; do
	set -- $route
	# Tokens live $EXP s here; a loaded machine can take that long for this loop.
	MEMBER=$(ks_token "$KS_MEMBER_USER" "$KS_MEMBER_PASSWORD" system)
	expect_eq "$(code "$1" "$2" "" '{}')" 401 "$route without a token"
	expect_eq "$(code "$1" "$2" garbage '{}')" 401 "$route with a garbage token"
	expect_eq "$(code "$1" "$2" "$MEMBER" '{}')" 403 "$route without the role"
done
ok "state-changing routes refuse without a valid token"

# Revoked: a token never seen, and one that was cached (trusted at most token_cache_seconds).
R1=$(ks_token "$KS_OP_USER" "$KS_OP_PASSWORD" system)
R2=$(ks_token "$KS_OP_USER" "$KS_OP_PASSWORD" system)
expect_eq "$(code GET /servers "$R2")" 200 "token before revocation"
ks_revoke "$R1" || hard "revoke"
ks_revoke "$R2" || hard "revoke"
expect_eq "$(code GET /servers "$R1")" 401 "revoked token"
sleep 3
expect_eq "$(code GET /servers "$R2")" 401 "revoked token after the cache time"
ok "revoked tokens refused"

# Expired: used while valid, refused after expires_at; meanwhile the agent renews its own.
E=$(ks_token "$KS_OP_USER" "$KS_OP_PASSWORD" system)
issued=$SECONDS
expect_eq "$(code GET /servers "$E")" 200 "token before expiry"
left=$((EXP + 2 - (SECONDS - issued)))
[ "$left" -gt 0 ] && sleep "$left"
expect_eq "$(code GET /servers "$E")" 401 "expired token"
n=$(grep -c "Authenticated to keystone" "$T/agent.log")
[ "$n" -ge 2 ] || fail "the agent's token was not renewed at half life ($n authentications)"
F=$(ks_token "$KS_OP_USER" "$KS_OP_PASSWORD" system)
expect_eq "$(code GET /servers "$F")" 200 "fresh token validated with the renewed service token"
ok "expired token refused; service token renewed ($n authentications)"

# A task callback: an asynchronous operation's outcome reaches the region with a valid token.
task=task-$RANDOM-$RANDOM
curl -s -o "$T/resp" -X POST -H "X-Auth-Token: $F" -H "X-Task-Id: $task" \
	-H "Content-Type: application/json" -d '{}' "$API/servers/$sid/start" >/dev/null
rec=$(fake_region_wait "$task" 60) || fail "task callback: $rec"
expect_contains "$rec" '"token_valid": true' "callback token"
echo "  callback: $rec"
ok "task callback delivered to the region with a valid keystone token"

# A tenant's project admin (role admin, but in project tenant-x): refused while api_roles asks
# for admin, as a role counts only in the agent's own project (security review H3).
TENANT=$(ks_token "$KS_TENANT_USER" "$KS_TENANT_PASSWORD" "$KS_TENANT_PROJECT")
[ -n "$TENANT" ] || hard "no tenant token"
expect_eq "$(code GET /servers "$TENANT")" 403 "tenant project admin with api_roles [admin]"
expect_eq "$(code DELETE "/servers/$sid" "$TENANT")" 403 "tenant project admin may not delete"
expect_contains "$(cat "$T/resp")" '"class":"ForbiddenError"' "Cloudpods error class of the refusal"
ok "api_roles: a role held in a tenant project counts for nothing"

# restart_with YAML-LINE...: the agent again with api_roles/api_projects replaced.
restart_with() {
	kill -TERM "$AGENT_PID"
	wait "$AGENT_PID"
	grep -v '^api_roles:\|^api_projects:' "$T/host.conf" >"$T/host.conf.new"
	printf '%s\n' "$@" >>"$T/host.conf.new"
	mv "$T/host.conf.new" "$T/host.conf"
	chmod 600 "$T/host.conf"
	region_agent_start
	region_agent_wait_auth
}

# The default: the region forwards its users' tokens, so any token Keystone validates passes.
restart_with
MEMBER=$(ks_token "$KS_MEMBER_USER" "$KS_MEMBER_PASSWORD" system)
TENANT=$(ks_token "$KS_TENANT_USER" "$KS_TENANT_PASSWORD" "$KS_TENANT_PROJECT")
expect_eq "$(code GET /servers "$MEMBER")" 200 "member token with the default policy"
expect_eq "$(code GET /servers "$TENANT")" 200 "tenant token with the default policy"
expect_eq "$(code GET /servers garbage-token)" 401 "garbage token with the default policy"
expect_eq "$(code GET /servers)" 401 "no token with the default policy"
ok "default policy: any valid token, none without one"

# api_projects: only tokens scoped to a listed project.
restart_with "api_projects: [$KS_TENANT_PROJECT]"
OP=$(ks_token "$KS_OP_USER" "$KS_OP_PASSWORD" system)
TENANT=$(ks_token "$KS_TENANT_USER" "$KS_TENANT_PASSWORD" "$KS_TENANT_PROJECT")
expect_eq "$(code GET /servers "$TENANT")" 200 "token of a listed project"
expect_eq "$(code GET /servers "$OP")" 403 "admin token of a project not listed"
restart_with "api_projects: [Default/system]" "api_roles: [admin]"
OP=$(ks_token "$KS_OP_USER" "$KS_OP_PASSWORD" system)
MEMBER=$(ks_token "$KS_MEMBER_USER" "$KS_MEMBER_PASSWORD" system)
TENANT=$(ks_token "$KS_TENANT_USER" "$KS_TENANT_PASSWORD" "$KS_TENANT_PROJECT")
expect_eq "$(code GET /servers "$OP")" 200 "admin in the listed project"
expect_eq "$(code GET /servers "$MEMBER")" 403 "member in the listed project"
expect_eq "$(code GET /servers "$TENANT")" 403 "admin in another project"
ok "api_projects restricts to listed projects; with api_roles the role must be held there"

# Secrets stay out of the log.
grep -q "$KS_AGENT_PASSWORD" "$T/agent.log" && fail "the keystone password was logged"
grep -qF "$OP" "$T/agent.log" && fail "a caller's token was logged"
grep -qF "$TENANT" "$T/agent.log" && fail "a caller's token was logged"
alive
region_agent_stop
ok "no secrets in the log; clean exit (keystone setup took ${KS_SETUP_SECONDS}s)"

# A throwaway OpenStack Keystone for integration tests. Source after lib.sh:
#   . "$(dirname "$0")/keystone-lib.sh"
#   keystone_start [COMPUTE_URL]   # ~6-10 s; exports the variables below
#   ... KS_URL, tokens via ks_token USER PASSWORD [PROJECT] ...
#   (keystone_stop runs on exit; call it earlier if you like)
# Environment knobs: KS_IMAGE_URL (registers an image service with that URL), KS_TOKEN_EXPIRATION (seconds, default 3600), KS_PORT (default: a free
# port; set it to know KS_URL before keystone runs), KS_TEMPLATE_DIR (where the prepared
# database and keys are kept between runs; default under TMPDIR).
#
# The region's task endpoint (tests/integration/fake-region.py), for task callback tests:
#   port=$(ks_free_port); keystone_start "http://127.0.0.1:$port"; fake_region_start "$port"
#   ... fake_region_wait TASK_ID [SECONDS]   # prints the recorded delivery (JSON), see the .py
# or all at once, on free ports: region_start [FAKE-REGION ARGS...] (see below). The fake
# image service (tests/integration/fake-image.py): fake_image_port before keystone_start,
# fake_image_start after it. The agent in region mode against them:
#   region_start; region_conf "$T/host.conf" "$API_PORT" </dev/null
#   region_agent_start; region_agent_wait_auth; region_agent_ready
#
# Exported after keystone_start (KS_URL after region_ports too; the region and the accounts
# from the start, so that a configuration can name them before keystone runs):
#   KS_URL            http://127.0.0.1:PORT/v3
#   KS_REGION         RegionOne (the compute endpoint's region)
#   KS_COMPUTE_URL    the compute endpoint registered in the catalog (all three interfaces)
#   KS_ADMIN_USER / KS_ADMIN_PASSWORD / KS_ADMIN_PROJECT    bootstrap admin (project admin)
#   KS_AGENT_USER / KS_AGENT_PASSWORD / KS_AGENT_PROJECT    the agent's service account:
#                     role admin on project "system" (Default domain)
#   KS_OP_USER / KS_OP_PASSWORD       role admin on project "system" (an API caller)
#   KS_MEMBER_USER / KS_MEMBER_PASSWORD  role member only on project "system"
#   KS_TENANT_USER / KS_TENANT_PASSWORD  role admin on project KS_TENANT_PROJECT ("tenant-x"),
#                     a tenant's project admin (security review H3)
#   KS_LOG            keystone's log file
KS_REGION=RegionOne
KS_ADMIN_USER=admin KS_ADMIN_PASSWORD=admin-secret-1 KS_ADMIN_PROJECT=admin
KS_AGENT_USER=hostagent KS_AGENT_PASSWORD=agent-secret-2 KS_AGENT_PROJECT=system
KS_OP_USER=operator KS_OP_PASSWORD=operator-secret-3
KS_MEMBER_USER=viewer KS_MEMBER_PASSWORD=viewer-secret-4
KS_TENANT_USER=tenantadmin KS_TENANT_PASSWORD=tenant-secret-5 KS_TENANT_PROJECT=tenant-x
export KS_REGION KS_ADMIN_USER KS_ADMIN_PASSWORD KS_ADMIN_PROJECT KS_AGENT_USER KS_AGENT_PASSWORD \
	KS_AGENT_PROJECT KS_OP_USER KS_OP_PASSWORD KS_MEMBER_USER KS_MEMBER_PASSWORD KS_TENANT_USER \
	KS_TENANT_PASSWORD KS_TENANT_PROJECT

# ks_free_port: prints a free loopback TCP port.
ks_free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# ks_token USER PASSWORD [PROJECT]: prints a project-scoped token (Default domains).
ks_token() {
	local scope=""
	[ -n "${3:-}" ] && scope=',"scope":{"project":{"name":"'"$3"'","domain":{"name":"Default"}}}'
	curl -sS -f -D - -o /dev/null -H "Content-Type: application/json" -d '{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"'"$1"'","domain":{"name":"Default"},"password":"'"$2"'"}}}'"$scope"'}}' \
		"$KS_URL/auth/tokens" | tr -d '\r' | sed -n 's/^[Xx]-[Ss]ubject-[Tt]oken: //p'
}

# ks_revoke TOKEN: revokes a token (DELETE /v3/auth/tokens) with the admin's token.
ks_revoke() {
	local admin
	admin=$(ks_token "$KS_ADMIN_USER" "$KS_ADMIN_PASSWORD" "$KS_ADMIN_PROJECT") || return 1
	curl -sS -f -o /dev/null -X DELETE -H "X-Auth-Token: $admin" -H "X-Subject-Token: $1" "$KS_URL/auth/tokens"
}

keystone_stop() {
	if [ -n "${KS_PID:-}" ]; then
		kill "$KS_PID" 2>/dev/null
		wait "$KS_PID" 2>/dev/null
		KS_PID=
	fi
}

keystone_start() {
	command -v keystone-manage >/dev/null && command -v keystone-wsgi-public >/dev/null ||
		skip "python3-keystone is not installed (apt-get install python3-keystone)"
	local started=$SECONDS
	local d=$T/keystone port
	mkdir -p "$d/fernet-keys" "$d/credential-keys"
	chmod 700 "$d/fernet-keys" "$d/credential-keys"
	port=${KS_PORT:-$(ks_free_port)}
	KS_URL=http://127.0.0.1:$port/v3
	KS_COMPUTE_URL=${1:-http://127.0.0.1:$(ks_free_port)}
	KS_LOG=$d/keystone.log
	# Users and the catalog are made before the server starts, not through the API: on sqlite,
	# keystone-wsgi-public left the database locked after creating a user or service, and
	# every later create failed with "database is locked". Token revocations work.
	export KS_URL KS_COMPUTE_URL KS_LOG
	cat >"$d/keystone.conf" <<EOF
[DEFAULT]
log_file = $KS_LOG
use_stderr = false
[database]
connection = sqlite:///$d/keystone.db
[token]
provider = fernet
expiration = ${KS_TOKEN_EXPIRATION:-3600}
[fernet_tokens]
key_repository = $d/fernet-keys
[fernet_receipts]
key_repository = $d/fernet-keys
[credential]
key_repository = $d/credential-keys
[identity]
password_hash_rounds = 4
[cache]
enabled = false
EOF
	# keystone-manage takes most of the setup time: its result (database, keys) is kept as a
	# template under TMPDIR and copied by later runs; only URLs differ between runs.
	local tpl key
	key=$( (cat "${BASH_SOURCE[0]}"; keystone-manage --version 2>/dev/null) | md5sum | cut -c1-12)
	tpl=${KS_TEMPLATE_DIR:-${TMPDIR:-/tmp}/hostagent-keystone-template-$(id -u)}-$key
	if [ -O "$tpl" ] && [ -f "$tpl/keystone.db" ]; then
		cp -r "$tpl/keystone.db" "$tpl/fernet-keys" "$tpl/credential-keys" "$d/" ||
			hard "cannot copy the keystone template $tpl"
	else
		local km=(keystone-manage --config-file "$d/keystone.conf")
		local u g
		u=$(id -un) g=$(id -gn)
		{
			"${km[@]}" db_sync &&
				"${km[@]}" fernet_setup --keystone-user "$u" --keystone-group "$g" &&
				"${km[@]}" credential_setup --keystone-user "$u" --keystone-group "$g" &&
				"${km[@]}" bootstrap --bootstrap-password "$KS_ADMIN_PASSWORD" \
					--bootstrap-username "$KS_ADMIN_USER" --bootstrap-project-name "$KS_ADMIN_PROJECT" \
					--bootstrap-role-name admin --bootstrap-service-name keystone \
					--bootstrap-region-id "$KS_REGION" \
					--bootstrap-public-url "$KS_URL/" --bootstrap-internal-url "$KS_URL/" &&
				"${km[@]}" bootstrap --bootstrap-password "$KS_AGENT_PASSWORD" \
					--bootstrap-username "$KS_AGENT_USER" --bootstrap-project-name system \
					--bootstrap-role-name admin &&
				"${km[@]}" bootstrap --bootstrap-password "$KS_OP_PASSWORD" \
					--bootstrap-username "$KS_OP_USER" --bootstrap-project-name system \
					--bootstrap-role-name admin &&
				"${km[@]}" bootstrap --bootstrap-password "$KS_MEMBER_PASSWORD" \
					--bootstrap-username "$KS_MEMBER_USER" --bootstrap-project-name system \
					--bootstrap-role-name member &&
				"${km[@]}" bootstrap --bootstrap-password "$KS_TENANT_PASSWORD" \
					--bootstrap-username "$KS_TENANT_USER" --bootstrap-project-name "$KS_TENANT_PROJECT" \
					--bootstrap-role-name admin
		} >"$d/manage.log" 2>&1 || { tail -n 30 "$d/manage.log" >&2; hard "keystone-manage failed"; }
		# Publish atomically: parallel tests may build the same template.
		if mkdir -p "$(dirname "$tpl")" && local tmp && tmp=$(mktemp -d "$tpl.XXXXXX"); then
			cp -r "$d/keystone.db" "$d/fernet-keys" "$d/credential-keys" "$tmp/" &&
				mv -T "$tmp" "$tpl" 2>/dev/null || rm -rf "$tmp"
		fi
	fi
	# The region service as Cloudpods registers it (three interfaces), plus a decoy endpoint in
	# another region. Written into the database before keystone starts: see above.
	python3 - "$d/keystone.db" "$KS_REGION" "$KS_COMPUTE_URL" "$KS_URL/" <<'PY' || hard "catalog setup failed"
import os, sqlite3, sys, uuid
db, region, url = sys.argv[1:4]
c = sqlite3.connect(db)
# The identity endpoints may come from a template made on another port.
c.execute("UPDATE endpoint SET url = ? WHERE service_id IN "
          "(SELECT id FROM service WHERE type = 'identity')", (sys.argv[4],))
sid = uuid.uuid4().hex
c.execute("INSERT INTO service (id, type, enabled, extra) VALUES (?, 'compute', 1, ?)",
          (sid, '{"name": "region2"}'))
c.execute("INSERT INTO region (id, description, extra) VALUES ('RegionOther', '', '{}')")
for itf, reg, u in (("public", region, url), ("internal", region, url), ("admin", region, url),
                    ("internal", "RegionOther", "http://127.0.0.1:9/other")):
    c.execute("INSERT INTO endpoint (id, interface, service_id, url, extra, enabled, region_id)"
              " VALUES (?, ?, ?, ?, '{}', 1, ?)", (uuid.uuid4().hex, itf, sid, u, reg))
# An image service (glance) when the test asks for one: KS_IMAGE_URL, ending in /v1 like glance.
img = os.environ.get("KS_IMAGE_URL")
if img:
    iid = uuid.uuid4().hex
    c.execute("INSERT INTO service (id, type, enabled, extra) VALUES (?, 'image', 1, ?)",
              (iid, '{"name": "glance"}'))
    for itf in ("public", "internal"):
        c.execute("INSERT INTO endpoint (id, interface, service_id, url, extra, enabled, region_id)"
                  " VALUES (?, ?, ?, ?, '{}', 1, ?)", (uuid.uuid4().hex, itf, iid, img, region))
c.commit()
PY
	OS_KEYSTONE_CONFIG_FILES=$d/keystone.conf keystone-wsgi-public --host 127.0.0.1 --port "$port" \
		>"$d/wsgi.log" 2>&1 &
	KS_PID=$!
	on_exit keystone_stop
	wait_for 60 curl -sf "$KS_URL" || { tail -n 30 "$d/wsgi.log" "$KS_LOG" >&2; hard "keystone did not come up"; }

	[ -n "$(ks_token "$KS_ADMIN_USER" "$KS_ADMIN_PASSWORD" "$KS_ADMIN_PROJECT")" ] ||
		hard "bootstrap admin cannot log in"
	KS_SETUP_SECONDS=$((SECONDS - started))
	export KS_SETUP_SECONDS
	echo "keystone: $KS_URL up in ${KS_SETUP_SECONDS}s (compute $KS_COMPUTE_URL)"
}

# fake_region_start PORT [--fail-first N]: serves {compute}/tasks/<id> on PORT, checking every
# delivery (method, path, token valid in keystone, JSON body shape) into $FR_RECORD.
fake_region_start() {
	local port=$1
	shift
	FR_RECORD=$T/fake-region.jsonl
	export FR_RECORD
	python3 "$top_srcdir/tests/integration/fake-region.py" --port "$port" --record "$FR_RECORD" \
		--keystone "$KS_URL" "$@" >"$T/fake-region.log" 2>&1 &
	FR_PID=$!
	on_exit "kill $FR_PID"
	wait_for 20 curl -sf -o /dev/null "http://127.0.0.1:$port/__ready" || hard "fake region did not start"
}

# region_ports: chooses free loopback ports: KS_PORT (exported) for keystone at KS_URL, FR_PORT
# for the fake region at FR, API_PORT for the agent's API at API.
region_ports() {
	KS_PORT=$(ks_free_port)
	KS_URL=http://127.0.0.1:$KS_PORT/v3
	export KS_PORT KS_URL
	FR_PORT=$(ks_free_port)
	FR=http://127.0.0.1:$FR_PORT
	API_PORT=$(ks_free_port)
	API=http://127.0.0.1:$API_PORT
}
# region_start [FAKE-REGION ARGS...]: region_ports, then keystone on KS_PORT with the fake
# region on FR_PORT as its compute endpoint FR.
region_start() {
	region_ports
	keystone_start "$FR"
	fake_region_start "$FR_PORT" "$@"
}

# The fake region's records ($FR_RECORD) and state:
#   fr_lines           how many records there are (a FROM for the next two)
#   fr_recs FROM EXPR  the records after line FROM for which EXPR (python, record r) holds, one
#                      JSON object per line
#   fr_has FROM EXPR   whether there is such a record
#   fr_state           GET $FR/__state (JSON)
fr_lines() { wc -l <"$FR_RECORD"; }
fr_recs() {
	python3 - "$FR_RECORD" "$1" "$2" <<'PY'
import json, sys
for i, line in enumerate(open(sys.argv[1])):
    r = json.loads(line)
    if i >= int(sys.argv[2]) and eval(sys.argv[3]):
        print(json.dumps(r))
PY
}
fr_has() { [ -n "$(fr_recs "$1" "$2")" ]; }
fr_state() { curl -sf "$FR/__state"; }
# fr_storage_ids: waits until the agent registered its storage and its image cache; sets ST and
# SC, the ids the region gave them (the region calls the disk routes with the storage id, the
# image cache with the storagecache id).
fr_storage_ids() {
	wait_for 60 fr_storage_known || fail "the agent did not register its storage"
	ST=$(fr_state | json 'list(j["storages"])[0]')
	SC=$(fr_state | json 'list(j["storagecaches"])[0]')
	[ -n "$ST" ] && [ -n "$SC" ] || fail "no storage or storagecache id in the region"
}
fr_storage_known() { [ "$(fr_state | json 'bool(j["storages"] and j["storagecaches"])')" = true ]; }

# fake_image_port: chooses FI_PORT (the service at FI) and exports KS_IMAGE_URL, so that the
# next keystone_start registers it as the image service.
fake_image_port() {
	FI_PORT=$(ks_free_port)
	FI=http://127.0.0.1:$FI_PORT
	export KS_IMAGE_URL=$FI/v1
}
# fake_image_start: serves the images on FI_PORT, checking every request (token valid in
# keystone) into FI_RECORD (default $T/fake-image.jsonl); sets FI_PID. Again after a kill, the
# same service (records appended).
fake_image_start() {
	FI_RECORD=${FI_RECORD:-$T/fake-image.jsonl}
	python3 "$top_srcdir/tests/integration/fake-image.py" --port "$FI_PORT" --record "$FI_RECORD" \
		--keystone "$KS_URL" >>"$T/fake-image.log" 2>&1 &
	FI_PID=$!
	on_exit "kill $FI_PID"
	wait_for 20 curl -sf -o /dev/null "$FI/__ready" || hard "fake image service did not start"
}

# fake_region_wait TASK_ID [SECONDS]: waits for a successful delivery of TASK_ID and prints its
# record; fails when a delivery for it had problems.
fake_region_wait() {
	local id=$1 t=${2:-30}
	local end=$((SECONDS + t)) out
	while [ $SECONDS -lt $end ]; do
		out=$(python3 - "$FR_RECORD" "$id" <<'PY'
import json, sys
bad = ok = None
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("task_id") != sys.argv[2]:
        continue
    if r["problems"]:
        bad = r
    elif r["status"] == 200:
        ok = r
if bad:
    print(json.dumps(bad)); sys.exit(2)
if ok:
    print(json.dumps(ok)); sys.exit(0)
sys.exit(1)
PY
		)
		case $? in
		0) printf '%s\n' "$out"; return 0 ;;
		2) echo "fake region: bad delivery for task $id: $out" >&2; return 2 ;;
		esac
		sleep 0.2
	done
	echo "fake region: no delivery for task $id within ${t}s" >&2
	return 1
}

# region_conf FILE API_PORT: writes (0600) a region-mode host.conf for an agent under $T that
# talks to the keystone at KS_URL (region_ports, keystone_start) as KS_AGENT_USER; extra YAML
# lines come from stdin.
region_conf() {
	local extra
	extra=$(cat)
	(
		umask 077
		cat >"$1" <<YAML
listen_address: 127.0.0.1
port: $2
state_dir: $T/state
servers_path: $T/servers
local_image_path: [$T/disks]
admin_socket: $T/admin.sock
auth_url: $KS_URL
admin_user: $KS_AGENT_USER
admin_password: $KS_AGENT_PASSWORD
admin_project: $KS_AGENT_PROJECT
region: $KS_REGION
zone: zone1
$extra
YAML
	)
}

# region_agent_start [ARGS...]: starts the agent on $T/host.conf (region_conf) with ARGS
# (default --log-level debug), appending to $T/agent.log, without the libvirtd lock (fd 9);
# sets AGENT_PID. On exit an agent still running (AGENT_PID not empty) gets SIGTERM.
region_agent_start() {
	[ $# -gt 0 ] || set -- --log-level debug
	REGION_AGENT_AUTHS=$(cat "$T/agent.log" 2>/dev/null | grep -c "Authenticated to keystone")
	"$HOSTAGENT" --config "$T/host.conf" "$@" >>"$T/agent.log" 2>&1 9>&- &
	AGENT_PID=$!
	if [ -z "${REGION_AGENT_ON_EXIT:-}" ]; then
		REGION_AGENT_ON_EXIT=1
		on_exit '[ -n "$AGENT_PID" ] && kill -TERM $AGENT_PID && wait $AGENT_PID'
	fi
}
# region_agent_wait_auth [SECONDS]: waits (default 60 s) until the agent region_agent_start
# started last logs that it authenticated to keystone; fails otherwise.
region_agent_wait_auth() {
	wait_for "${1:-60}" sh -c "[ \$(grep -c 'Authenticated to keystone' '$T/agent.log') -gt $REGION_AGENT_AUTHS ]" ||
		fail "the agent did not authenticate"
}
# region_agent_ready [SECONDS]: waits (default 30 s) until $API/readyz answers 200; fails
# otherwise.
region_agent_ready() {
	wait_for "${1:-30}" sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' $API/readyz)\" = 200 ]" ||
		fail "agent not ready: $(curl -s "$API/readyz")"
}
# region_agent_stop: SIGTERM to AGENT_PID, which must exit 0; clears AGENT_PID.
region_agent_stop() {
	kill -TERM "$AGENT_PID"
	local rc=0
	wait "$AGENT_PID" || rc=$?
	AGENT_PID=
	expect_eq "$rc" 0 "agent exit code after SIGTERM"
}

# op_token: TOKEN, an API caller's token (KS_OP_USER, project system).
op_token() {
	TOKEN=$(ks_token "$KS_OP_USER" "$KS_OP_PASSWORD" system)
	[ -n "$TOKEN" ] || hard "no operator token"
}
# call METHOD PATH [BODY] [TASK_ID]: a request to the agent's API at $API as the region makes
# it, with $TOKEN (and X-Task-Id when given); prints the body, leaves the status in $T/code
# (000 when there was no answer). A BODY of @FILE sends that file (bodies over 128 KiB cannot
# be one argument).
call() {
	local args=(-s -o "$T/body" -w '%{http_code}' -X "$1" -H "X-Auth-Token: $TOKEN" --max-time 120)
	[ -n "${3:-}" ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
	[ -n "${4:-}" ] && args+=(-H "X-Task-Id: $4")
	rm -f "$T/body"
	curl "${args[@]}" "$API$2" >"$T/code" || echo 000 >"$T/code"
	cat "$T/body" 2>/dev/null
}
# expect_call CODE METHOD PATH [BODY] [TASK_ID]: call, asserting the status; prints the body.
expect_call() {
	local want=$1 out
	shift
	out=$(call "$@")
	[ "$(last_code)" = "$want" ] || fail "$1 $2: expected HTTP $want, got $(last_code): $out"
	printf '%s' "$out"
}

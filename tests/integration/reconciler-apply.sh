#!/bin/bash
# ocreconciler against a fake Kubernetes API server (tests/integration/fake-kube.py): first
# run creates everything, second changes nothing, drift is repaired, a version bump rolls the
# images, a disabled component's objects (and only those) are deleted, a bad spec sends no
# request, and a 500 on one object fails the run, names the object and applies the others.
# Only 127.0.0.1; no libvirt, no podman. About 5 s.
. "$(dirname "$0")/lib.sh"
OCR=$top_builddir/ocreconciler
DATA=$top_srcdir/tests/data/reconciler
command -v python3 >/dev/null || skip "python3 not installed"
[ -x "$OCR" ] || hard "$OCR not built"

echo "test-token-$$" >"$T/token"
python3 "$top_srcdir/tests/integration/fake-kube.py" --port-file "$T/port" \
	--token "test-token-$$" --log "$T/requests.jsonl" 2>"$T/fake.log" &
FAKE=$!
on_exit "kill $FAKE"
wait_for 10 test -s "$T/port" || hard "fake-kube did not start: $(cat "$T/fake.log")"
URL=http://127.0.0.1:$(cat "$T/port")
fail_diag() {
	echo "--- stdout"; cat "$T/out" 2>/dev/null
	echo "--- stderr"; cat "$T/err" 2>/dev/null
	echo "--- fake-kube"; tail -n 20 "$T/fake.log"
}

# run SPEC: one pass; stdout in $T/out, stderr in $T/err, exit code in RC, and the requests
# of this run only in $T/req (JSONL).
run() {
	local before
	before=$(wc -l <"$T/requests.jsonl")
	RC=0
	"$OCR" -f "$1" --server "$URL" --token-file "$T/token" --once >"$T/out" 2>"$T/err" || RC=$?
	tail -n +"$((before + 1))" "$T/requests.jsonl" >"$T/req"
}
# count METHOD: requests of the last run with that method.
count() { grep -c "\"method\": \"$1\"" "$T/req" || true; }
lines() { grep -c -- "$1" "$T/out" || true; }
objects() { curl -sf "$URL/_control/objects"; }
# by_kind: "Kind=N ..." of the stored objects, sorted.
by_kind() {
	objects | python3 -c 'import json,sys,collections; c=collections.Counter(o["kind"] for o in json.load(sys.stdin)); print(" ".join(f"{k}={v}" for k,v in sorted(c.items())))'
}
image_of() { # DEPLOYMENT-NAME
	objects | python3 -c "import json,sys; print([o for o in json.load(sys.stdin) if o['kind']=='Deployment' and o['metadata']['name']=='$1'][0]['spec']['template']['spec']['containers'][0]['image'])"
}
DEP=/apis/apps/v1/namespaces/onecloud/deployments

# A bad spec: a clear error naming file, line and key; not one request.
sed 's/^    replicas: 2$/    replicas: -2/' "$DATA/full.yaml" >"$T/bad.yaml"
run "$T/bad.yaml"
[ "$RC" = 1 ] || fail "bad spec: exit $RC, expected 1"
expect_contains "$(cat "$T/err")" "$T/bad.yaml:20: spec.regionServer.replicas: must be >= 0" "bad spec message"
[ ! -s "$T/req" ] || fail "bad spec: requests were sent: $(cat "$T/req")"
ok "bad spec refused, no request sent"

# --dry-run prints and contacts nothing, even with a server given.
before=$(wc -l <"$T/requests.jsonl")
"$OCR" -f "$DATA/full.yaml" --server "$URL" --token-file "$T/token" --dry-run >"$T/out" 2>"$T/err" ||
	fail "--dry-run: $(cat "$T/err")"
expect_eq "$(grep -c '^---$' "$T/out")" 23 "--dry-run documents"
expect_eq "$(wc -l <"$T/requests.jsonl")" "$before" "--dry-run requests"
ok "--dry-run printed 23 objects, sent nothing"

# The API server checks the token.
echo wrong >"$T/badtoken"
"$OCR" -f "$DATA/full.yaml" --server "$URL" --token-file "$T/badtoken" --once >"$T/out" 2>"$T/err" &&
	fail "wrong token: exit 0"
expect_contains "$(cat "$T/err")" "HTTP 401" "wrong token"
ok "wrong token refused with the server's answer"

# First run: everything created, by server-side apply.
run "$DATA/full.yaml"
[ "$RC" = 0 ] || fail "first run: exit $RC"
expect_eq "$(lines ': created$')" 23 "first run: created lines"
expect_eq "$(by_kind)" "ConfigMap=6 CronJob=1 DaemonSet=1 Deployment=5 PersistentVolumeClaim=1 Secret=4 Service=5" "objects by kind"
expect_eq "$(count PATCH)" 23 "first run: apply requests"
bad=$(grep '"PATCH"' "$T/req" | grep -v '"content_type": "application/apply-patch+yaml"' || true)
[ -z "$bad" ] || fail "apply without apply-patch+yaml: $bad"
bad=$(grep '"PATCH"' "$T/req" | grep -v '"query": "fieldManager=ocreconciler&force=true"' || true)
[ -z "$bad" ] || fail "apply without fieldManager: $bad"
bad=$(grep -v '"status": 20[01]' "$T/req" | grep -v '"GET".*"status": 404' || true)
[ -z "$bad" ] || fail "first run: refused requests: $bad"
expect_contains "$(cat "$T/out")" "summary: created=23 updated=0 unchanged=0 deleted=0 failed=0" "summary"
ok "first run created 23 objects"

# The fake is as strict as the real server: what ocreconciler passed above would be refused
# had it been sent wrong.
cm=/api/v1/namespaces/onecloud/configmaps/default-keystone
body=$(objects | python3 -c 'import json,sys; o=[o for o in json.load(sys.stdin) if o["kind"]=="ConfigMap" and o["metadata"]["name"]=="default-keystone"][0]; m=o["metadata"]; print(json.dumps({"apiVersion":"v1","kind":"ConfigMap","metadata":{k:m[k] for k in ("name","namespace","labels","ownerReferences")},"data":o["data"]}))')
try() { # WANT-CODE CONTENT-TYPE QUERY BODY
	local got
	got=$(curl -s -o /dev/null -w '%{http_code}' -X PATCH -H "Authorization: Bearer test-token-$$" \
		-H "Content-Type: $2" --data-binary "$4" "$URL$cm?$3")
	expect_eq "$got" "$1" "fake-kube: PATCH $2 ?$3"
}
try 415 application/json "fieldManager=x&force=true" "$body"
try 400 application/apply-patch+yaml "force=true" "$body"
try 400 application/apply-patch+yaml "fieldManager=x" "${body/\"name\": \"default-keystone\"/\"name\": \"other\"}"
try 400 application/apply-patch+yaml "fieldManager=x" "${body/\"kind\": \"ConfigMap\"/\"kind\": \"Secret\"}"
try 422 application/apply-patch+yaml "fieldManager=x" "${body/ocreconciler/someone-else}"
try 422 application/apply-patch+yaml "fieldManager=x" "${body/\"controller\": true/\"controller\": false}"
try 200 application/apply-patch+yaml "fieldManager=x" "$body"
ok "fake-kube refuses wrong media type, no fieldManager, mismatched URL, unmanaged objects"

# Second run: nothing to do.
run "$DATA/full.yaml"
[ "$RC" = 0 ] || fail "second run: exit $RC"
expect_eq "$(lines ': unchanged$')" 23 "second run: unchanged lines"
expect_eq "$(count PATCH)" 0 "second run: apply requests"
expect_eq "$(count DELETE)" 0 "second run: delete requests"
ok "second run: all unchanged, no apply"

# Drift: someone scales the region Deployment to 5.
curl -sf -X POST -d "{\"path\": \"$DEP/default-region\", \"set\": {\"spec.replicas\": 5}}" \
	"$URL/_control/mutate" >/dev/null || hard "mutate failed"
run "$DATA/full.yaml"
[ "$RC" = 0 ] || fail "drift run: exit $RC"
expect_eq "$(count PATCH)" 1 "drift run: apply requests"
grep -q "\"PATCH\", \"path\": \"$DEP/default-region\"" "$T/req" || fail "drift: wrong object applied: $(cat "$T/req")"
expect_contains "$(cat "$T/out")" "Deployment onecloud/default-region: updated (drift)" "drift line"
expect_eq "$(lines ': unchanged$')" 22 "drift run: unchanged lines"
replicas=$(objects | python3 -c "import json,sys; print([o for o in json.load(sys.stdin) if o['metadata']['name']=='default-region' and o['kind']=='Deployment'][0]['spec']['replicas'])")
expect_eq "$replicas" 2 "replicas after drift repair"
ok "drift on one Deployment re-applied exactly that one"

# Version bump: the Deployments' images roll (webconsole pins its own image).
sed 's/^  version: v3.10.0$/  version: v3.11.0/' "$DATA/full.yaml" >"$T/bump.yaml"
run "$T/bump.yaml"
[ "$RC" = 0 ] || fail "bump run: exit $RC"
for d in keystone region scheduler glance; do
	expect_eq "$(image_of default-$d)" "registry.example.com/yunion/$d:v3.11.0" "image of $d"
done
expect_eq "$(image_of default-webconsole)" "registry.example.com/custom/webconsole:v3.10.0-fix1" "pinned webconsole image"
# The version label is on every object: all are re-applied.
expect_eq "$(count PATCH)" 23 "bump run: apply requests"
ok "version bump rolled the Deployments' images"

# Disable glance: its five objects go, nothing else is touched, not even another cluster's
# glance object in the same namespace.
decoy='{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other-glance", "namespace": "onecloud", "labels": {"app.kubernetes.io/name": "glance", "app.kubernetes.io/managed-by": "ocreconciler", "app.kubernetes.io/instance": "other"}, "ownerReferences": [{"apiVersion": "onecloud.yunion.io/v1alpha1", "kind": "OnecloudCluster", "name": "other", "uid": "u-other", "controller": true}]}, "data": {}}'
curl -sf -X PATCH -H "Authorization: Bearer test-token-$$" -H "Content-Type: application/apply-patch+yaml" \
	--data-binary "$decoy" "$URL/api/v1/namespaces/onecloud/configmaps/other-glance?fieldManager=other" >/dev/null ||
	hard "cannot create the other cluster's ConfigMap"
sed 's/^  glance:$/  glance:\n    disable: true/' "$T/bump.yaml" >"$T/noglance.yaml"
run "$T/noglance.yaml"
[ "$RC" = 0 ] || fail "disable run: exit $RC"
expect_eq "$(count DELETE)" 5 "disable run: delete requests"
bad=$(grep '"DELETE"' "$T/req" | grep -v '/default-glance' || true)
[ -z "$bad" ] || fail "disable deleted another component's object: $bad"
expect_eq "$(count PATCH)" 0 "disable run: apply requests"
expect_eq "$(lines ': deleted$')" 5 "disable run: deleted lines"
expect_eq "$(by_kind)" "ConfigMap=6 CronJob=1 DaemonSet=1 Deployment=4 Secret=3 Service=4" "objects after disable"
objects | grep -q default-glance && fail "a glance object is left"
objects | grep -q '"other-glance"' || fail "the other cluster's glance ConfigMap was deleted"
grep '"GET"' "$T/req" | grep -q 'labelSelector=app.kubernetes.io%2Fname%3Dglance%2Capp.kubernetes.io%2Fmanaged-by%3Docreconciler' ||
	fail "no list by label selector: $(cat "$T/req")"
ok "disabled glance: its 5 objects deleted, nothing else"

# The API server fails one object: nonzero exit naming it, the others still applied.
curl -sf -X POST -d '{"method": "PATCH", "path": "/api/v1/namespaces/onecloud/configmaps/default-keystone", "status": 500, "message": "etcdserver: request timed out"}' \
	"$URL/_control/fail" >/dev/null || hard "fail injection failed"
sed 's/^  version: v3.11.0$/  version: v3.12.0/' "$T/noglance.yaml" >"$T/fail.yaml"
run "$T/fail.yaml"
[ "$RC" != 0 ] || fail "500 run: exit 0"
expect_contains "$(cat "$T/err")" "ConfigMap onecloud/default-keystone: apply failed: HTTP 500: etcdserver: request timed out" "500 message"
expect_eq "$(count PATCH)" 18 "500 run: apply requests"
expect_contains "$(cat "$T/out")" "failed=1" "500 run summary"
for d in keystone region scheduler; do
	expect_eq "$(image_of default-$d)" "registry.example.com/yunion/$d:v3.12.0" "image of $d after a failed object"
done
ok "500 on one object: exit $RC, named, the other 17 applied"

# --interval: passes repeat until SIGTERM; drift between passes is repaired.
curl -sf -X POST "$URL/_control/reset-failures" >/dev/null || hard "reset failed"
"$OCR" -f "$T/fail.yaml" --server "$URL" --token-file "$T/token" --interval 1 >"$T/out" 2>"$T/err" &
LOOP=$!
on_exit "kill $LOOP"
wait_for 20 grep -q "summary: .*failed=0" "$T/out" || fail "--interval: no clean pass"
curl -sf -X POST -d "{\"path\": \"$DEP/default-keystone\", \"set\": {\"spec.replicas\": 7}}" \
	"$URL/_control/mutate" >/dev/null || hard "mutate failed"
wait_for 20 grep -q "Deployment onecloud/default-keystone: updated (drift)" "$T/out" ||
	fail "--interval: drift not repaired"
kill -TERM $LOOP
rc=0
wait $LOOP || rc=$?
expect_eq "$rc" 0 "--interval exit status after SIGTERM"
ok "--interval repaired drift between passes and stopped on SIGTERM"

# Without --server and outside a cluster: a usage error, no request.
env -u KUBERNETES_SERVICE_HOST -u KUBERNETES_SERVICE_PORT "$OCR" -f "$DATA/full.yaml" --once \
	>"$T/out" 2>"$T/err" && fail "no server: exit 0"
expect_contains "$(cat "$T/err")" "not in a cluster" "no server message"
# In a pod: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT and the service
# account's token. Here TLS to the plain-HTTP fake fails, which shows https was used.
if [ ! -e /var/run/secrets/kubernetes.io/serviceaccount/token ]; then
	KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=$(cat "$T/port") \
		"$OCR" -f "$DATA/full.yaml" --once >"$T/out" 2>"$T/err" && fail "in-cluster without a token: exit 0"
	expect_contains "$(cat "$T/err")" "Cannot read token file /var/run/secrets/kubernetes.io/serviceaccount/token" "in-cluster token"
fi
KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=$(cat "$T/port") \
	"$OCR" -f "$DATA/full.yaml" --token-file "$T/token" --once >"$T/out" 2>"$T/err" && fail "in-cluster over TLS to an HTTP server: exit 0"
expect_contains "$(cat "$T/err")" "Secret onecloud/default-keystone-db: get failed: Protocol error" "in-cluster https"
ok "in-cluster defaults: service account token, https to KUBERNETES_SERVICE_HOST:PORT"
echo "PASS: reconciler-apply"

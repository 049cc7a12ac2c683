#!/bin/bash
# Every object ocreconciler renders (full cluster, disabled components, version bump) against
# the Kubernetes OpenAPI schemas with tests/k8s-validate/validate.mjs (npm kubernetes-models,
# pinned by package-lock.json), which also runs the project's DaemonSet checks on the host agent
# DaemonSet; then a broken copy that must be refused (the check can fail). --dry-run needs no
# API server: it runs without --server and outside a cluster.
. "$(dirname "$0")/lib.sh"
OCR=$top_builddir/ocreconciler
DATA=$top_srcdir/tests/data/reconciler
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || skip "node/npm not installed"
[ -x "$OCR" ] || hard "$OCR not built"

# Outside the build and source trees, kept between runs; not manifest.sh's directory, so the two
# tests never run npm ci or copy validate.mjs into the same place at once.
work=${HOSTAGENT_CACHE_DIR:-/var/cache/hostagent}/k8s-validate-reconciler
mkdir -p "$work"
(
	flock -w 300 9 || exit 99
	if ! cmp -s "$top_srcdir/tests/k8s-validate/package-lock.json" "$work/package-lock.json" ||
		[ ! -d "$work/node_modules/kubernetes-models" ]; then
		cp "$top_srcdir/tests/k8s-validate/package.json" "$top_srcdir/tests/k8s-validate/package-lock.json" "$work/"
		(cd "$work" && npm ci --no-audit --no-fund --loglevel=error) || exit 99
	fi
) 9>"$work.lock" || hard "npm ci failed (is the npm registry reachable?)"
# Per run: a parallel run never sees a half-copied validator.
mkdir -p "$work/run.$$"
on_exit "rm -rf '$work/run.$$'"
cp "$top_srcdir/tests/k8s-validate/validate.mjs" "$work/run.$$/"
validate() { node "$work/run.$$/validate.mjs" "$@"; }

declare -A want=([full]=23 [disabled]=13 [bump]=23)
for f in full disabled bump; do
	env -u KUBERNETES_SERVICE_HOST -u KUBERNETES_SERVICE_PORT \
		"$OCR" --dry-run -f "$DATA/$f.yaml" >"$T/$f.out" 2>"$T/$f.err" ||
		fail "--dry-run $f.yaml: $(cat "$T/$f.err")"
	out=$(validate "$T/$f.out" 2>&1) || fail "$f.yaml: rendered objects invalid: $out"
	expect_contains "$out" "${want[$f]} object(s) valid" "$f.yaml object count"
	ok "$f.yaml: ${want[$f]} objects valid"
done

# The same checks refuse a broken rendering.
sed -e 's/"hostPID": true/"hostPID": false/' -e '0,/"replicas": 1,/s//"replicas": "1",/' \
	-e 's/"type": "NodePort"/"type": "NodePorts"/' -e 's/"readinessProbe"/"readynessProbe"/' \
	-e 's/"concurrencyPolicy"/"concurrency"/' "$T/full.out" >"$T/bad.out"
out=$(validate "$T/bad.out" 2>&1) && fail "a broken rendering passed: $out"
for w in "DaemonSet/default-hostagent: hostPID must be true" \
	"Deployment/default-keystone: data/spec/replicas must be integer" \
	"Service/default-keystone: data/spec/type must be equal to one of the allowed values" \
	"Deployment/default-region: spec.template.spec container region.readynessProbe: no such field" \
	"CronJob/default-keystone: spec.concurrency: no such field in IoK8sApiBatchV1CronJobSpec"; do
	expect_contains "$out" "$w" "broken rendering"
done
echo "PASS: reconciler-validate"

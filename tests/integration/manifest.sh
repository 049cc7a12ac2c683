#!/bin/sh
# The DaemonSet manifest against the Kubernetes OpenAPI schemas (npm kubernetes-models, pinned
# by tests/k8s-validate/package-lock.json) plus the settings issue 6 requires, and a broken
# copy that must be refused (the check can fail). npm ci runs once in a cache dir: about
# 5 s with the registry reachable, nothing on later runs.
set -u
src=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${top_builddir:-.}
manifest=$src/deploy/k8s/hostagent-daemonset.yaml
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
	{ echo "SKIP: node/npm not installed"; exit 77; }

# Outside the build and source trees (distcheck wants both clean), kept between runs.
work=${HOSTAGENT_CACHE_DIR:-/var/cache/hostagent}/k8s-validate
mkdir -p "$work"
if ! cmp -s "$src/tests/k8s-validate/package-lock.json" "$work/package-lock.json" ||
	[ ! -d "$work/node_modules/kubernetes-models" ]; then
	cp "$src/tests/k8s-validate/package.json" "$src/tests/k8s-validate/package-lock.json" "$work/"
	(cd "$work" && npm ci --no-audit --no-fund --loglevel=error) ||
		{ echo "ERROR: npm ci failed (is the npm registry reachable?)"; exit 99; }
fi
cp "$src/tests/k8s-validate/validate.mjs" "$work/"

node "$work/validate.mjs" "$manifest" || { echo "FAIL: $manifest"; exit 1; }

bad=$(mktemp)
trap 'rm -f "$bad"' EXIT
sed -e 's/hostPID: true/hostPID: "yes"/' -e 's/terminationGracePeriodSeconds: 45/terminationGracePeriodSeconds: 10/' \
	-e 's/^\(      hostIPC: true\)$/\1\n      cgroupNamespace: host/' "$manifest" >"$bad"
out=$(node "$work/validate.mjs" "$bad" 2>&1) && { echo "FAIL: a broken manifest passed"; exit 1; }
for want in "hostPID must be boolean" "terminationGracePeriodSeconds 10" "cgroupNamespace: no such field"; do
	echo "$out" | grep -q "$want" || { echo "FAIL: broken manifest: no '$want' in: $out"; exit 1; }
done
echo "PASS: manifest valid, broken copy refused"

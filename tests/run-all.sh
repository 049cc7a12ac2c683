#!/bin/bash
# Sets up a fresh Debian 12 machine and runs every test: format check, unit and integration
# tests (with -Werror, ASan and UBSan), then make distcheck. Idempotent; run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
# Test-only packages: a real Keystone, podman for the pod restart tests, clang for fuzzing.
export HOSTAGENT_EXTRA_PKGS="${HOSTAGENT_EXTRA_PKGS:-} python3-keystone python3-yaml podman runc
	mmdebstrap uidmap clang libclang-rt-14-dev util-linux wrk"
deploy/setup-host.sh
command -v node >/dev/null && command -v npm >/dev/null || {
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >/dev/null
}
deploy/image/setup-podman.sh

echo "== format check"
tests/check-format.sh

echo "== layout check (tests/layout.txt)"
tests/check-layout.sh

echo "== build (werror, sanitizers)"
deploy/build.sh --enable-werror --enable-sanitizers

echo "== make check"
export VERBOSE=1
time make -j"$(nproc)" check

echo "== fuzzing (router, request bodies, guest descriptors)"
time tests/fuzz/run.sh "${FUZZ_SECONDS:-60}"

echo "== make distcheck"
make -j"$(nproc)" distcheck DISTCHECK_CONFIGURE_FLAGS="--enable-werror" >/tmp/hostagent-distcheck.log 2>&1 ||
	{ tail -n 80 /tmp/hostagent-distcheck.log; exit 1; }
tail -n 4 /tmp/hostagent-distcheck.log
echo "== all tests passed"

#!/bin/bash
# Sets up a fresh Debian 12 machine and runs every test: format check, unit and integration
# tests (with -Werror, ASan and UBSan), then make distcheck. Idempotent; run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
export HOSTAGENT_EXTRA_PKGS="${HOSTAGENT_EXTRA_PKGS:-} valgrind"
deploy/setup-host.sh

echo "== format check"
tests/check-format.sh

echo "== build (werror, sanitizers)"
deploy/build.sh --enable-werror --enable-sanitizers

echo "== make check"
export VERBOSE=1
make -j"$(nproc)" check

echo "== make distcheck"
make -j"$(nproc)" distcheck DISTCHECK_CONFIGURE_FLAGS="--enable-werror" >/tmp/hostagent-distcheck.log 2>&1 ||
	{ tail -n 80 /tmp/hostagent-distcheck.log; exit 1; }
tail -n 4 /tmp/hostagent-distcheck.log
echo "== all tests passed"

#!/bin/bash
# Quick start on a fresh Debian 12 machine (root): installs what is needed, builds, and runs
# the agent on its embedded default configuration (API on 127.0.0.1:8885).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/setup-host.sh
deploy/build.sh
echo "== hostagent $(./hostagent --version | cut -d' ' -f2) starting (Ctrl-C stops it)"
exec ./hostagent --listen-address 127.0.0.1

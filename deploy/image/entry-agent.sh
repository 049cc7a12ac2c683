#!/bin/sh
# Entry point of the "agent" container: runs hostagent in the foreground (PID 1 of the
# container receives the SIGTERM from the runtime; hostagent drains within shutdown_timeout).
set -eu
mkdir -p /run/hostagent /var/lib/hostagent
exec /usr/local/sbin/hostagent "$@"

# A systemd "node" in a podman container (ENVIRONMENT.md): systemd as PID 1, D-Bus,
# systemd-machined. Shared by placement.sh and systemd-node.sh. Sourced; needs bash.
#
#   node_image PKG...           builds (cached) and imports localhost/hostagent-sdnode:HASH with
#                               PKG... (the list is the cache key: keep its order); sets NODE_IMAGE
#   node_start NAME [ARGS...]   podman run -d --privileged --systemd=always NODE_IMAGE with
#                               extra podman ARGS, waits for systemd; returns 1 on failure
# Both print "ERROR: ..." and return 1 when the node cannot be built or started.

node_src=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}

node_image() {
	local pkgs="$*" hash cache=${HOSTAGENT_IMAGE_CACHE:-/var/cache/hostagent-image}
	if ! command -v podman >/dev/null || ! command -v mmdebstrap >/dev/null ||
		! grep -q runc /etc/containers/containers.conf 2>/dev/null; then
		"$node_src/deploy/image/setup-podman.sh" || { echo "ERROR: podman setup failed"; return 1; }
	fi
	hash=$(echo $pkgs | sha256sum | cut -c1-16)
	NODE_IMAGE=localhost/hostagent-sdnode:$hash
	mkdir -p "$cache"
	# Node tarballs not used for 14 days go (the mtime is refreshed on every use).
	find "$cache" -maxdepth 1 -name 'sdnode-*.tar' ! -name "sdnode-$hash.tar" -mtime +14 -delete 2>/dev/null
	touch -c "$cache/sdnode-$hash.tar"
	podman image exists "$NODE_IMAGE" && return 0
	if [ ! -f "$cache/sdnode-$hash.tar" ]; then
		mmdebstrap --variant=minbase --mode=root --format=tar --quiet \
			--aptopt='APT::Install-Recommends "false"' --include="$(echo $pkgs | tr ' ' ',')" \
			bookworm "$cache/sdnode-$hash.tmp.tar" http://deb.debian.org/debian ||
			{ echo "ERROR: mmdebstrap of the systemd node image failed"; return 1; }
		mv "$cache/sdnode-$hash.tmp.tar" "$cache/sdnode-$hash.tar"
	fi
	podman import --change 'CMD=["/lib/systemd/systemd"]' "$cache/sdnode-$hash.tar" "$NODE_IMAGE" >/dev/null 2>&1 ||
		{ echo "ERROR: podman import failed"; return 1; }
}

node_start() {
	local node=$1 state=""
	shift
	podman run -d --name "$node" --privileged --systemd=always "$@" "$NODE_IMAGE" /lib/systemd/systemd >/dev/null ||
		{ echo "ERROR: cannot start a systemd container"; return 1; }
	for _ in $(seq 60); do
		state=$(podman exec "$node" systemctl is-system-running 2>/dev/null)
		case $state in running | degraded) return 0 ;; esac
		sleep 0.5
	done
	echo "ERROR: systemd in $node: $state"
	return 1
}

#!/bin/sh
# mmdebstrap customize hook: first-boot configuration by cloud-init from a NoCloud (cidata) or
# ConfigDrive seed, rendered for systemd-networkd. Each setting fixes a measured failure or stall
# (see guest-image.md in the project notes): without them cloud-init ends in "status: error" or
# waits ~14 s for IPv6 on every boot under TCG.
set -eu
R="$1"
mkdir -p "$R/etc/cloud/cloud.cfg.d"
printf 'datasource_list: [ NoCloud, ConfigDrive, None ]\n' >"$R/etc/cloud/cloud.cfg.d/90_dpkg.cfg"
printf 'system_info:\n  network:\n    renderers: [ networkd ]\n' >"$R/etc/cloud/cloud.cfg.d/91_renderer.cfg"
# No generated locales; sshd host keys made at package install are kept (clones share them:
# fine for a test image, ssh with StrictHostKeyChecking=no).
printf 'ssh_genkeytypes: []\nssh_deletekeys: false\nlocale: false\n' \
	>"$R/etc/cloud/cloud.cfg.d/92_test.cfg"
mkdir -p "$R/etc/systemd/system/systemd-networkd-wait-online.service.d"
printf '[Service]\nExecStart=\nExecStart=/lib/systemd/systemd-networkd-wait-online --any --ipv4 --timeout=30\n' \
	>"$R/etc/systemd/system/systemd-networkd-wait-online.service.d/any.conf"
for n in eth0 eth1; do
	mkdir -p "$R/etc/systemd/network/10-cloud-init-$n.network.d"
	printf '[Network]\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n' \
		>"$R/etc/systemd/network/10-cloud-init-$n.network.d/noipv6.conf"
done
# The ACPI power button: systemd-logind powers off (the default HandlePowerKey), said here so the
# image does not depend on the default.
mkdir -p "$R/etc/systemd/logind.conf.d"
printf '[Login]\nHandlePowerKey=poweroff\nHandlePowerKeyLongPress=poweroff\n' \
	>"$R/etc/systemd/logind.conf.d/power-key.conf"

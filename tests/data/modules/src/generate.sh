#!/bin/bash
# Regenerates the fixture module tree root/lib/modules/6.0.0-test from the tiny sources here:
# relocatable ELF objects with a .modinfo section, exported symbols in __ksymtab_strings and
# undefined symbols for dependencies, indexed by the real depmod (Debian package kmod).
# The output is committed; tests only read it. Run from anywhere: bash src/generate.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$here/../root
kver=6.0.0-test
dir=$root/lib/modules/$kver
rm -rf "$root"
mkdir -p "$dir"

# mod PATH EXPORTS USES MODINFO...: builds $dir/kernel/PATH.ko
mod() {
	local path=$1 exports=$2 uses=$3
	shift 3
	local c=$here/.build.c
	{
		if [ -n "$exports" ]; then
			printf '__attribute__((section("__ksymtab_strings"), used)) static const char ks[] = "'
			for s in $exports; do printf '%s\\0' "$s"; done
			printf '";\n'
			for s in $exports; do printf 'void %s(void) {}\n' "$s"; done
		fi
		for s in $uses; do printf 'extern void %s(void);\n' "$s"; done
		printf 'void init_module_fixture(void) {'
		for s in $uses; do printf ' %s();' "$s"; done
		printf ' }\n'
		printf '__attribute__((section(".modinfo"), used)) static const char mi[] = "license=GPL\\0'
		for m in "$@"; do printf '%s\\0' "$m"; done
		printf '";\n'
	} >"$c"
	mkdir -p "$dir/kernel/$(dirname "$path")"
	gcc -c -O0 -fno-asynchronous-unwind-tables -o "$dir/kernel/$path.ko" "$c"
	rm -f "$c"
}

mod drivers/net/tun "tun_get_socket" "" "alias=char-major-10-200" "alias=devname:net/tun"
mod drivers/vhost/vhost_iotlb "vhost_iotlb_add" ""
mod drivers/vhost/vhost "vhost_dev_init" "vhost_iotlb_add"
mod drivers/vhost/vhost_net "" "vhost_dev_init tun_get_socket" "alias=devname:vhost-net" \
	"parm=experimental_zcopytx:Enable Zero Copy TX;"
mod net/llc/llc "llc_sap_open" ""
mod net/802/stp "stp_proto_register" "llc_sap_open"
mod net/bridge/bridge "br_dev_queue_push_xmit" "stp_proto_register" "alias=rtnl-link-bridge"
mod net/bridge/br_netfilter "" "br_dev_queue_push_xmit" "softdep=pre: nf_conntrack"
mod net/netfilter/nf_conntrack "nf_ct_get" ""
mod arch/x86/kvm/kvm "kvm_init" "" "parm=halt_poll_ns:int"
mod arch/x86/kvm/kvm-intel "" "kvm_init" "alias=cpu:type:x86,ven*fam*mod*:feature:*0085*" \
	"parm=nested:bool"
mod arch/x86/kvm/kvm-amd "" "kvm_init" "alias=cpu:type:x86,ven*fam*mod*:feature:*00C2*"
mod crypto/crc32c_generic "" "" "alias=crc32c"
mod drivers/block/nbd "" "" "alias=block-major-43" "softdep=pre: crc32c" "parm=max_part:int"
mod drivers/block/broken "" "" "alias=fails-to-load"

printf '%s\n' kernel/drivers/net/veth.ko kernel/fs/overlayfs/overlay.ko kernel/net/ipv4/udp_tunnel.ko \
	>"$dir/modules.builtin"
depmod -b "$root" "$kver"
# Indexes only: the .ko bodies are never loaded by the tests, but libkmod reads their paths.
ls "$dir"

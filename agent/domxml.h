/* libvirt domain XML rendered from a validated guest descriptor with libxml2's writer: every name
 * and value is escaped by the writer, never pasted into markup. No state: any thread (rendered
 * on a worker during a create or start). */
#pragma once

#include <stdbool.h>

#include "agent/desc.h"

/* XML namespace of the <metadata> element that carries the guest's identity. */
#define DOMXML_NS_PREFIX "hostagent"
#define DOMXML_NS_URI	 "urn:hostagent:guest:1"

struct domxml_opts {
	bool kvm;		/* false: <domain type="qemu"> (TCG), for hosts without /dev/kvm */
	const char *emulator;	/* NULL: libvirt's default emulator */
	const char *cpu_mode;	/* "host-passthrough", "host-model"; NULL: the hypervisor's default
				 * model (the only one that boots under some nested hosts) */
	const char *vnc_listen; /* IP address for VNC/SPICE; NULL: 127.0.0.1 */
	const char *console_password; /* VNC/SPICE password (agent/console.h); NULL: none */
	const char *ovmf_code;	      /* UEFI firmware (read-only pflash); NULL: UEFI unavailable */
	const char *ovmf_vars;	      /* NVRAM template; NULL: libvirt picks */
	const char *nvram_dir;	  /* per-guest NVRAM is <nvram_dir>/<sid>_VARS.fd; NULL: libvirt */
	char *const *ovs_bridges; /* bridges that are Open vSwitch bridges (NULL-terminated) */
	const char *config_drive; /* the guest's NoCloud ISO (agent/deploy.h), attached as one more
				   * read-only CD-ROM on the first free unit; NULL: none */
	bool no_bandwidth; /* the kernel has no sfq qdisc, which libvirt's <bandwidth> needs: NIC
			    * limits are left out (the domain could not start with them) */
};

/* Renders the domain for guest sid (the domain is named by sid, the human name goes to <title>
 * and the metadata). Returns 0 and a NUL-terminated document in *ret_xml, or:
 * -EINVAL: sid is not a safe id or an option is invalid;
 * -EOPNOTSUPP: bios is UEFI but opts->ovmf_code is NULL, or a NIC asks for a VLAN tag on a
 *   bridge not listed in opts->ovs_bridges (a Linux bridge cannot tag per port; silently dropping
 *   the tag would put the guest on the wrong network);
 * -ENOMEM. When ret_error is not NULL a message naming the field is returned on refusal. */
int domxml_render(const struct guest_desc *d, const char *sid, const struct domxml_opts *o,
		  char **ret_xml, char **ret_error);

/* Host probes for filling struct domxml_opts. */
bool domxml_kvm_available(void);
/* Whether the kernel has the sfq qdisc (loaded, built in, or a module file it can load on
 * demand): libvirt shapes a NIC's <bandwidth> with htb + sfq and fails the start without it. */
bool domxml_sfq_available(void);
/* Whether config virt_type ("kvm" or "qemu") asks for KVM domains. */
bool domxml_virt_is_kvm(const char *virt_type);
/* Startup check of virt_type against the host: -ENODEV with a message naming the key and the
 * fix when virt_type is kvm and kvm_dev (normally /dev/kvm) cannot be opened read-write;
 * -EINVAL for a virt_type that is neither kvm nor qemu. */
int domxml_virt_check(const char *virt_type, const char *kvm_dev, char **ret_error);
/* Finds an installed OVMF firmware pair (Debian's ovmf package paths first). Returns 0 with
 * static strings, -ENOENT when none is installed. */
int domxml_find_ovmf(const char **ret_code, const char **ret_vars);

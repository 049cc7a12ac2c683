/* Guest descriptor: the Cloudpods GuestJsonDesc subset, parsed and validated into a typed model.
 * Nothing here touches the host beyond resolving paths (symlinks) under the disk roots. No state:
 * any thread (the API parses on the loop, operations on the worker pool). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/macros.h"

/* Limits on untrusted input. */
#define GUEST_DESC_MAX	     (4 * 1024 * 1024) /* bytes of a stored descriptor (hostctl's file too) */
#define GUEST_NAME_MAX	     128
#define GUEST_ID_MAX	     64 /* uuid, sid, disk_id */
#define GUEST_CPU_MAX	     240
#define GUEST_MEM_MAX	     (16 * 1024 * 1024) /* MiB: 16 TiB */
#define GUEST_MACHINE_MAX    64
#define GUEST_DISKS_MAX	     16
#define GUEST_DISK_INDEX_MAX 25			/* vda .. vdz */
#define GUEST_DISK_SIZE_MAX  (64 * 1024 * 1024) /* MiB: 64 TiB */
#define GUEST_NICS_MAX	     16
#define GUEST_NIC_INDEX_MAX  31
#define GUEST_NIC_BW_MAX     400000 /* Mbps */
#define GUEST_CDROMS_MAX     4
#define GUEST_BOOT_INDEX_MAX 63
#define GUEST_IFNAME_MAX     15 /* IFNAMSIZ - 1 */
#define GUEST_NIC_DNS_MAX    8	/* DNS servers per NIC */
#define GUEST_NIC_ROUTES_MAX 32 /* static routes per NIC */
/* Real guests carry all their metadata (the whole QEMU command line, user data, login keys) */
#define GUEST_META_MAX	     1024 /* entries */
#define GUEST_META_KEY_MAX   128
#define GUEST_META_VALUE_MAX (256 * 1024)  /* bytes per value */
#define GUEST_META_TOTAL_MAX (1024 * 1024) /* bytes of keys and values together */

enum guest_bios {
	GUEST_BIOS_BIOS, /* SeaBIOS */
	GUEST_BIOS_UEFI, /* OVMF */
};

enum guest_vdi {
	GUEST_VDI_VNC,
	GUEST_VDI_SPICE,
};

enum disk_format {
	DISK_FORMAT_QCOW2,
	DISK_FORMAT_RAW,
};

enum disk_bus {
	DISK_BUS_VIRTIO,
	DISK_BUS_SCSI, /* virtio-scsi controller */
	DISK_BUS_SATA,
	DISK_BUS_IDE,
};

struct guest_disk {
	char *disk_id; /* safe id */
	int index;     /* 0..GUEST_DISK_INDEX_MAX, unique; picks the target dev (vda, sdb, ...) */
	char *path;    /* resolved absolute path below a disk root */
	enum disk_format format;
	int64_t size_mb; /* 0: not given (the size of the backing image) */
	enum disk_bus bus;
	char *cache_mode; /* none, writeback, writethrough, directsync, unsafe, default */
	char *image_path; /* resolved backing image below a root, or NULL */
	int boot_index;	  /* -1: not a boot device */
	char dev[8];	  /* target dev: vda, sdb, hdc */
};

struct guest_cdrom {
	char *path;	/* resolved ISO path below a root, or NULL for an empty drive */
	int boot_index; /* -1: not a boot device */
	char dev[8];	/* target dev: hdc (pc) or sdX (q35, SATA) */
};

/* A static route the region gives a NIC (Cloudpods SRoute: ["10.0.0.0/8", "192.168.1.1"]). */
struct guest_route {
	char *prefix; /* network address, IPv4 or IPv6, host bits clear */
	int len;      /* prefix length */
	char *gateway;
};

struct guest_nic {
	int index;    /* 0..GUEST_NIC_INDEX_MAX, unique */
	char mac[18]; /* lower case aa:bb:cc:dd:ee:ff, unicast */
	char *ip; /* validated IPv4/IPv6 or NULL; an IPv4 one gets a DHCP lease (agent/dhcp.h) */
	/* The region's IPAM for the guest's DHCP (CONTRACT.md 2.3); all optional. */
	int masklen;   /* prefix length of ip: 0 when not given, else 1..32 (IPv4), ..128 */
	char *gateway; /* IPv4 address or NULL */
	char **dns;    /* IP addresses (Cloudpods sends "a,b"; a list is accepted), or NULL */
	char *domain;  /* DNS search domain or NULL */
	struct guest_route *routes;
	size_t n_routes;
	bool is_default; /* the NIC with the default route */
	char *ifname;	 /* tap device name or NULL (libvirt picks vnetN) */
	char *bridge;
	int vlan;	 /* 0 or 1: untagged; 2..4094: tagged (needs an Open vSwitch bridge) */
	int64_t bw_mbps; /* 0: unlimited */
	int mtu;	 /* 0: bridge default */
	char *driver;	 /* virtio, e1000, rtl8139, vmxnet3 */
};

struct guest_meta {
	char *key, *value;
};

struct guest_desc {
	char *uuid;	/* canonical lower-case 8-4-4-4-12 */
	char *name;	/* human name, valid UTF-8, no control characters */
	char *hostname; /* hostname_is_valid() (common/parse.h), or NULL */
	int cpu, cpu_sockets;
	int64_t mem_mb;
	char *machine; /* pc, q35, pc-i440fx-7.2, ... */
	enum guest_bios bios;
	char *boot_order; /* subset of "cdn" (disk, cdrom, network) in order, no repeats */
	char *vga;	  /* libvirt video model: vga, cirrus, vmvga, qxl, virtio, none */
	enum guest_vdi vdi;
	struct guest_disk *disks; /* sorted by index */
	size_t n_disks;
	struct guest_cdrom *cdroms;
	size_t n_cdroms;
	struct guest_nic *nics; /* sorted by index */
	size_t n_nics;
	struct guest_meta *metadata; /* sorted by key */
	size_t n_metadata;
};

/* Parses and validates j. disk_roots (NULL-terminated, at least one) confine every disk, backing
 * image and ISO path; a disk without "path" lives at <disk_roots[0]>/<disk_id>. Unknown fields
 * are ignored. On a refusal returns -EINVAL and, when ret_error is not NULL, a message that
 * names the field and the reason ("disks[1].format: unsupported value \"vmdkx\"").
 * Other negative errnos: -ENOMEM. */
int guest_desc_parse(json_t *j, char *const *disk_roots, struct guest_desc **ret, char **ret_error);
struct guest_desc *guest_desc_free(struct guest_desc *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct guest_desc *, guest_desc_free)
#define _cleanup_guest_desc_ _cleanup_(guest_desc_freep)

/* NICs that arrive without a bridge (Cloudpods leaves it out when its host netif has none
 * recorded) take the bridge of the host network on their wire_id. *ret is a filled-in copy
 * of desc, or NULL when no NIC needed one. -EINVAL with a message naming the NIC when a NIC
 * has neither a bridge nor a wire_id of a host network. */
struct hostnets;
int guest_desc_fill_bridges(json_t *desc, const struct hostnets *h, json_t **ret, char **ret_error);

/* The normalized descriptor as JSON (resolved paths, defaults filled in). */
json_t *guest_desc_to_json(const struct guest_desc *d);

/* What the workspace stores (L7 of the security review): a copy of j, the descriptor d was
 * parsed from, with every disk, backing image and ISO path replaced by its resolved absolute
 * path, so a later load does not depend on the order of the roots or on symlinks as they are
 * then. NULL on out of memory. */
json_t *guest_desc_resolved_json(const json_t *j, const struct guest_desc *d);
/* For a stored descriptor: 0 when every absolute path in j still resolves to itself in d (the
 * parse of j), -EPERM otherwise (a directory became a symlink, say) with a message naming the
 * field. Relative paths (stored before L7) are not checked. */
int guest_desc_check_resolved(const json_t *j, const struct guest_desc *d, char **ret_error);

/* True for a canonical UUID (8-4-4-4-12 hex digits). */
bool guest_uuid_is_valid(const char *s);
/* True for a Linux network interface name we accept: 1..15 of [A-Za-z0-9._-], not starting
 * with '.' or '-'. */
bool guest_ifname_is_valid(const char *s);

const char *disk_format_to_string(enum disk_format f);
const char *disk_bus_to_string(enum disk_bus b);

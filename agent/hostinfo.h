/* Host information in the shape Cloudpods' region keeps for a host (cpu_count, mem_size,
 * storage_size, access_ip, ...). Reading it touches /proc, /sys and libvirt: worker pool. */
#pragma once

#include <jansson.h>

#include "agent/ops.h"
#include "agent/virt.h"
#include "common/config.h"

struct hostnets;

/* Collects the host info; node (from virt_node_facts()) may be NULL (libvirt fields left out).
 * root: "/" or a fixture tree for tests (reads <root>/proc/cpuinfo, <root>/proc/meminfo,
 * <root>/etc/os-release). */
int hostinfo_collect(const struct config *cfg, const char *root, const struct virt_node_facts *node,
		     json_t **ret);
/* Capacity of a local_image_path root as the region's storage wants it: {capacity_mb,
 * used_mb, free_mb, medium_type ("ssd" or "rotate" from the block device's rotational flag),
 * is_root_partition}. */
int hostinfo_storage(const char *root, json_t **ret);
/* Loop thread: adds access_ip/access_mac (agent/hostnet.h, from the networks configuration)
 * to a collected host object. */
void hostinfo_set_access(const struct hostnets *hn, json_t *host);

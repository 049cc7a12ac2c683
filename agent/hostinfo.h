/* Host facts (CPU, memory, storage, kernel, libvirt, access address) as typed records, and
 * their JSON only at the edge (host_info_to_json()). Reading them touches /proc, /sys and
 * libvirt: worker pool. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent/virt.h"
#include "common/config.h"
#include "common/macros.h"

struct hostnets;

/* Capacity of one local_image_path root, in MiB. */
struct host_storage {
	bool known; /* false: statvfs or stat of the root failed, nothing below is set */
	int64_t capacity_mb, used_mb, free_mb;
	bool rotational; /* the block device under it spins (queue/rotational) */
	bool is_root_partition;
};

/* The region's medium_type of a storage: "rotate" or "ssd". */
static inline const char *host_storage_medium(const struct host_storage *s)
{
	return s->rotational ? "rotate" : "ssd";
}

/* sys_info: strings are NULL when unknown. */
struct host_sys_info {
	char *kernel, *arch; /* uname release and machine */
	char *virt_type;     /* config virt_type: the domain type guests get */
	char *libvirt_version, *qemu_version;
	char *os; /* PRETTY_NAME of os-release */
};

/* Numbers are -1 when unknown, strings NULL. */
struct host_info {
	char *name;		/* uname nodename */
	char *cpu_architecture; /* uname machine (the region's CPU_ARCH_* are the kernel's) */
	char *cpu_desc;		/* cpuinfo model name */
	int64_t cpu_count;	/* online CPUs (sysconf, -1 when it fails) */
	int64_t cpu_mhz;
	int64_t mem_size_mb;	 /* MemTotal */
	int64_t mem_reserved_mb; /* what the region picks when none is given: min(mem/8, 4 GiB) */
	int64_t page_size_kb;
	int64_t kvm_cap_max_vcpu; /* KVM_CAP_MAX_VCPUS of /dev/kvm */
	bool kvm;		  /* /dev/kvm usable */
	int64_t node_count;	  /* NUMA nodes from libvirt */
	char *libvirt_uri;
	struct host_sys_info sys;
	/* One per cfg->local_image_path root, in its order; storage_size_mb and storage_free_mb
	 * are the sums over the known ones. */
	struct host_storage *storages;
	size_t n_storages;
	int64_t storage_size_mb, storage_free_mb;
	/* Set on the loop thread by hostinfo_set_access(); NULL until then. */
	char *access_ip, *access_mac;
};

struct host_info *host_info_free(struct host_info *hi);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct host_info *, host_info_free)

/* Collects the host facts; node (from virt_node_facts()) may be NULL (libvirt facts unknown).
 * root: "/" or a fixture tree for tests (reads <root>/proc/cpuinfo, <root>/proc/meminfo,
 * <root>/etc/os-release). */
int hostinfo_collect(const struct config *cfg, const char *root, const struct virt_node_facts *node,
		     struct host_info **ret);
/* Capacity of a local_image_path root as the region's storage wants it; ret->known says
 * whether it could be read (-errno returned then as well). */
int hostinfo_storage(const char *root, struct host_storage *ret);
/* Loop thread: sets access_ip/access_mac (agent/hostnet.h, from the networks configuration);
 * left unset while either is unknown. -ENOMEM. */
int hostinfo_set_access(const struct hostnets *hn, struct host_info *hi);
/* The host facts as the API shows them (the shape Cloudpods' region keeps for a host:
 * cpu_count, mem_size, storage_size, access_ip, sys_info, ...; unknown facts left out). */
json_t *host_info_to_json(const struct host_info *hi);

/* A sample of /proc/stat's aggregate CPU line, in clock ticks. */
struct host_cpu_sample {
	uint64_t total, idle;
};

/* Figures of the heartbeat; -1 when unknown. */
struct host_stats {
	int64_t memory_used_mb;	  /* MemTotal - MemAvailable */
	double cpu_usage_percent; /* busy share since *prev (since boot when prev is zero) */
};

/* Reads <root>/proc/meminfo and <root>/proc/stat; *prev is the previous CPU sample and gets
 * the current one (left as is when /proc/stat cannot be read). */
void hostinfo_stats(const char *root, struct host_cpu_sample *prev, struct host_stats *ret);

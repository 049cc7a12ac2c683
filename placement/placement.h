/* QEMU cgroup placement: every QEMU thread must live in a host cgroup, outside the cgroup of
 * the pod the agent runs in, in every hierarchy (v1, v2, hybrid), or the runtime kills the VM
 * together with the container. Detects the layout and the agent's container cgroup, checks
 * a QEMU pid and moves a misplaced one: through the host's systemd over sd-bus (transient
 * scope in machine.slice) when it answers, through cgroupfs writes otherwise.
 * ARCHITECTURE.md "VMs survive the agent's container restart". */
#pragma once

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

enum placement_layout {
	PLACEMENT_LAYOUT_V1,
	PLACEMENT_LAYOUT_V2,
	PLACEMENT_LAYOUT_HYBRID,
};

enum placement_systemd {
	PLACEMENT_SYSTEMD_AUTO, /* use the host's systemd when the system bus answers */
	PLACEMENT_SYSTEMD_NO,
	PLACEMENT_SYSTEMD_YES, /* placement_new() fails when systemd cannot be reached */
};

struct placement_opts {
	const char *cgroup_root;    /* host cgroup hierarchy mount; NULL: /sys/fs/cgroup */
	const char *proc_root;	    /* NULL: /proc */
	const char *host_partition; /* NULL: /machine */
	/* The cgroup (host view, the same path in every hierarchy) QEMU must stay out of. NULL:
	 * derived from the agent's own cgroup: its container cgroup, or the parent of that when the
	 * parent is a pod-level cgroup (its name contains "pod": kubepods .../pod<uid>,
	 * kubepods-...-pod<uid>.slice, podman's libpod_parent), so that a QEMU inside the libvirt
	 * container of the same pod counts too. "/" means: not in a container, nothing to check. */
	const char *container_cgroup;
	pid_t self_pid; /* 0: getpid(); the agent runs with hostPID, so this is a host pid */
	enum placement_systemd systemd;
	const char *bus_address;     /* NULL: the default system bus (the host's socket) */
	unsigned systemd_timeout_ms; /* waiting for the scope job; 0: 10 s */
};

struct placement;

struct placement_report {
	unsigned n_threads;   /* threads of the process examined */
	unsigned n_misplaced; /* (thread, hierarchy) pairs found inside the container cgroup */
	unsigned n_moved;     /* pairs written to a host cgroup (cgroupfs) */
	unsigned n_left;      /* pairs still inside after the check (and fix) */
	bool systemd_used;    /* the process was moved into a systemd scope */
	int error;	      /* first cgroupfs write that failed (negative errno), or 0 */
	char *target;	      /* host cgroup (or systemd unit) it was moved to, or NULL */
	char *violation;      /* "tid=N hierarchy=H cgroup=PATH" of one pair left, or NULL */
};

/* Detects the layout under cgroup_root and the container cgroup from proc_root/<self>/cgroup
 * (scanning the hierarchy for the agent's pid in cgroup.procs when the agent's cgroup
 * namespace hides the host path). Returns -ENOENT when no cgroup hierarchy is found,
 * -ENOTCONN when systemd was required and is not reachable. */
int placement_new(const struct placement_opts *o, struct placement **ret);
struct placement *placement_free(struct placement *p);
static inline void placement_freep(struct placement **p)
{
	placement_free(*p);
}
#define _cleanup_placement_ __attribute__((cleanup(placement_freep)))

enum placement_layout placement_layout(const struct placement *p);
const char *placement_layout_to_string(enum placement_layout l);
/* The host-view cgroup QEMU must stay out of ("/" when there is none). */
const char *placement_container_cgroup(const struct placement *p);

/* Checks every thread of pid in every hierarchy; with fix, moves misplaced ones into the
 * host partition (systemd scope "hostagent-qemu-<name>.scope" in machine.slice, or the
 * cgroup <host_partition>/qemu-<name>.hostagent). Blocks up to systemd_timeout_ms waiting for
 * systemd; a placement object is not thread-safe (one sd-bus connection): call it from one
 * thread at a time. Records the outcome for vm_name in the
 * violation summary. Returns -ESRCH when the process is gone (its record is dropped),
 * another negative errno when the check itself failed; a placement that could not be fixed
 * is not an error: see ret->n_left. ret may be NULL. */
int placement_check_pid(struct placement *p, pid_t pid, const char *vm_name, bool fix,
			struct placement_report *ret);
void placement_report_done(struct placement_report *r);

/* Drops the record of a VM that stopped or was undefined and removes its per-VM host cgroups
 * when they are empty (a systemd scope goes away by itself). */
void placement_forget(struct placement *p, const char *vm_name);
/* Number of VMs with a violation left (the metric; not ready while > 0). */
unsigned placement_violations(const struct placement *p);
/* One-line readiness reason naming the first VMs left in the container's cgroup, or -ENOENT
 * when there is no violation. */
int placement_violation_reason(const struct placement *p, char **ret);
/* key=value description of the layout and hierarchies, for the startup log. */
void placement_describe(const struct placement *p, FILE *f);

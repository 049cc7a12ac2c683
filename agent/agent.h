/* The one context object of the daemon: owns the event loop and every subsystem.
 * Threads: built, run and freed on the main thread, which runs the event loop; each subsystem's
 * header says what of it runs elsewhere. */
#pragma once

#include <jansson.h>
#include <systemd/sd-event.h>

#include "agent/api.h"
#include "common/config.h"
#include "common/macros.h"

struct tasks;
struct virt;
struct guests;
struct metrics;
struct api;
struct auth;
struct region;
struct agent_modules;
struct qemu_placement;
struct report;
struct storages;
struct hostnets;
struct imagecache;
struct claims;
struct dhcp;
struct diskops;
struct readiness;

struct agent {
	struct config cfg;
	sd_event *event;
	sd_event_source *sigterm, *sigint, *sighup;
	struct tasks *tasks;		       /* worker pool (agent/tasks.h) */
	struct virt *virt;		       /* libvirt connection (agent/virt.h) */
	struct guests *guests;		       /* guest table and operations (agent/guests.h) */
	struct agent_modules *modules;	       /* kernel modules (agent/modules.h) */
	struct qemu_placement *qemu_placement; /* QEMU cgroup placement (agent/qemu-placement.h) */
	struct metrics *metrics;	       /* Prometheus registry (agent/metrics.h) */
	struct readiness *readiness;	       /* why the node is not ready (agent/readiness.h) */
	struct api *api;		       /* HTTP API (agent/api.h) */
	struct api_deps api_deps;	       /* what the API serves (outlives it and its calls) */
	struct auth *auth;		       /* API token validation (agent/auth.h) */
	struct region *region;	       /* keystone session, task callbacks (agent/region.h) */
	struct report *report;	       /* host and guest reports to the region (agent/report.h) */
	struct storages *storages;     /* local storages and their image caches (agent/storage.h) */
	struct hostnets *hostnets;     /* configured host networks (agent/hostnet.h) */
	struct imagecache *imagecache; /* image cache downloads (agent/imagecache.h) */
	struct claims *claims;	       /* disk paths owned by guests (agent/claims.h) */
	struct dhcp *dhcp;	       /* guest DHCP, a dnsmasq per bridge (agent/dhcp.h) */
	struct diskops *diskops;       /* the region's disk routes (agent/diskops.h) */
	sd_event_source *drain_timer;
	uint64_t drain_deadline;
	bool stopping;
	int exit_code;
};

/* Takes ownership of *cfg (cleared on success). */
int agent_new(struct config *cfg, struct agent **ret);
struct agent *agent_free(struct agent *a);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct agent *, agent_free)
int agent_start(struct agent *a);
int agent_run(struct agent *a);
/* Readiness: NULL when ready, else a JSON array of reason strings (caller owns). */
json_t *agent_not_ready_reasons(struct agent *a);
/* Begins a graceful stop: no new work, then the loop exits. */
void agent_stop(struct agent *a, int code);

/* Reporting the host and its guests to the region (Cloudpods protocol), region mode only:
 * registration (CONTRACT.md 1.1: wires of the configured networks, find or create the host
 * record, one netif per network, per local_image_path root a storagecache, a storage and the
 * host link, then online; region ids kept in state_dir/region-ids.json), the
 * heartbeat (POST /hosts/<id>/ping), guest status through the persistent outbox
 * (agent/outbox.h) and offline on a graceful stop. In standalone mode every call is a no-op.
 * Loop thread only. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <systemd/sd-event.h>

#include "agent/ops.h"
#include "common/config.h"

struct report;
struct guests;
struct host_info;
struct host_stats;
struct host_storage;
struct hostnets;
struct metrics;
struct region;
struct storages;
struct tasks;
struct virt;
struct agent_modules;
struct readiness;

/* What the reporter uses; all of it outlives the reporter. */
struct report_deps {
	sd_event *event;
	const struct config *cfg;
	struct virt *virt;	   /* node facts (on a worker) */
	struct region *region;	   /* the session and the region's HTTP client */
	struct storages *storages; /* registered with their region ids */
	struct hostnets *hostnets; /* the wires and netifs */
	struct metrics *metrics;
	struct guests *guests; /* the guest state hook; which guests are managed or being created */
	struct tasks *tasks;   /* host facts and statistics are read on the worker pool */
	struct agent_modules *modules; /* the module states a host sync answers with */
	struct readiness *readiness;   /* gets "region: not registered (...)" */
};

/* Opens the outbox (state_dir/outbox) and installs the guest state hook: call before the
 * guest table is first built so that adopted guests are reported too. */
int report_new(const struct report_deps *deps, struct report **ret);
struct report *report_free(struct report *rp);
/* Starts registering (retried with backoff while the region is unreachable). */
int report_start(struct report *rp);
/* Graceful stop: stops the heartbeat and deliveries (undelivered statuses stay in the outbox)
 * and posts offline once. report_busy() is true while that post is in flight. */
void report_stop(struct report *rp);
bool report_busy(struct report *rp);
/* The region's id of this host once known (registered, or read from state_dir), else NULL. */
const char *report_host_id(struct report *rp);
/* Fresh host facts (hostinfo_collect() with the access address), taken over (freed when
 * unusable, NULL rp included): re-reported with PUT /hosts/<id> when registered, used by the
 * next registration otherwise. */
void report_host_info(struct report *rp, struct host_info *hostinfo);
/* POST /hosts/<hid>/sync (also standalone): re-reads the host facts on the worker pool and
 * answers cb with {"host": {...}} (with the kernel modules and the access address), then
 * re-reports them as report_host_info() does. cb is called exactly once unless < 0. */
int report_host_sync(struct report *rp, op_done_fn cb, void *userdata);

/* Exposed for unit tests. */
struct hostnet;
struct storage;
/* {"host": {...}} (api.HostCreateInput) for create (generate_name, mem_reserved) or update
 * (neither) from the host facts with the access address; -ENODATA without an access_mac or
 * access_ip. */
int report_host_body(const struct host_info *hi, const struct config *cfg, bool create,
		     json_t **ret);
/* add-netif {"host": {mac, vlan_id, wire, bridge, interface, link_up, ip_addr, reserve,
 * nic_type ("admin" for the access network)}}; -ENODATA before the wire is known. */
int report_netif_body(const struct hostnet *hn, bool access, json_t **ret);
/* {"storage": {...}} from hostinfo_storage()'s facts: create carries name and zone, update
 * neither; -ENODATA without the storagecache id or known facts. */
int report_storage_body(const struct storage *st, const struct host_storage *facts,
			const char *zone, bool create, json_t **ret);
/* SHostPingInput {"host": {memory_used_mb, cpu_usage_percent (the known ones), storage_stats,
 * qga_running_guests, with_data}}. */
int report_ping_body(const struct host_stats *stats, json_t *storages, json_t **ret);
/* The body of POST /servers/<sid>/status for an outbox entry: {"server": {status (a Cloudpods
 * state, guest_status_cloudpods()), power_states, host_id (when known), reason (crashed)}}. */
struct outbox_entry;
json_t *report_status_body(const struct outbox_entry *e, const char *host_id);
/* Cloudpods power state for a guest status: "on" while QEMU runs, "off" otherwise. */
const char *report_power_state(const char *status);

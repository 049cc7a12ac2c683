/* Reporting the host and its guests to the region (Cloudpods protocol), region mode only:
 * registration (find or create the host record, update it, add its NICs, online), the
 * heartbeat (POST /hosts/<id>/ping), guest status through the persistent outbox
 * (agent/outbox.h) and offline on a graceful stop. In standalone mode every call is a no-op.
 * Loop thread only. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "common/config.h"

struct agent;
struct report;

/* Opens the outbox (state_dir/outbox) and installs the guest state hook: call before the
 * guest table is first built so that adopted guests are reported too. */
int report_new(struct agent *a, struct report **ret);
struct report *report_free(struct report *rp);
/* Starts registering (retried with backoff while the region is unreachable). */
int report_start(struct report *rp);
/* Graceful stop: stops the heartbeat and deliveries (undelivered statuses stay in the outbox)
 * and posts offline once. report_busy() is true while that post is in flight. */
void report_stop(struct report *rp);
bool report_busy(struct report *rp);
/* Appends "region: not registered (...)" while a region is configured and the host is not
 * registered. */
void report_reasons(struct report *rp, json_t *reasons);
/* Fresh host information (hostinfo_collect() shape): re-reported with PUT /hosts/<id> when
 * registered, used by the next registration otherwise. */
void report_host_info(struct report *rp, json_t *hostinfo);

/* Exposed for unit tests. */
/* {"host": {...}} for create and update from hostinfo_collect()'s object; -ENODATA without an
 * access_mac or access_ip. */
int report_host_body(json_t *hostinfo, const struct config *cfg, json_t **ret);
/* Cloudpods power state for a guest status: "on" while QEMU runs, "off" otherwise. */
const char *report_power_state(const char *status);

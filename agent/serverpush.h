/* What the server routes tell the region besides task callbacks, with the agent's service
 * token: guest metadata after a QEMU started (POST /servers/<sid>/metadata, which the region's
 * VNC parsing reads) and the bulk status upload (POST /servers/upload-status), through the
 * region client r; callers pass NULL in standalone mode (nothing is sent). Loop thread only. */
#pragma once

#include <jansson.h>

#include "agent/region.h"

/* {"server": {"__qemu_version": "x.y.z", "__vnc_port": N[, "__vnc_password": "..."]}}: the
 * body of POST /servers/<sid>/metadata. vnc_port < 0 and vnc_password NULL are left out. */
json_t *serverpush_metadata_body(const char *qemu_version, int vnc_port, const char *vnc_password);

/* A QEMU of sid started (start or cold reboot): posts its metadata, once, and logs a failure
 * (the next start posts it again). vnc_password: the guest's console password (security
 * review H1, agent/console.h) or NULL while it has none. */
void serverpush_started(struct region *r, const char *sid, const char *qemu_version, int vnc_port,
			const char *vnc_password);

/* {"servers": {"guests": guests}}: guests is {<sid>: {status, power_states, host_id}}. done
 * runs on the loop with the region's answer; -ESHUTDOWN without a region, -ENOTCONN before
 * the agent has a token. */
int serverpush_upload_status(struct region *r, json_t *guests, region_http_done_fn done,
			     void *userdata);

/* The HTTP API (ARCHITECTURE.md "HTTP API"): libmicrohttpd driven from the agent's sd-event
 * loop, on TCP (HTTPS when tls_cert_file/tls_key_file are set) and on the local admin unix
 * socket, both served by the same router (agent/api-routes.c).
 *
 * Event-loop design: each listener is an MHD daemon started with MHD_USE_EPOLL and no thread of
 * its own. MHD's epoll fd is an sd-event io source, and a one-shot CLOCK_MONOTONIC timer is
 * re-armed from MHD_get_timeout() after every MHD_run(), so MHD never blocks and connection
 * timeouts fire. A request that needs slow work (token validation, guest operations, libvirt
 * statistics) suspends its connection (MHD_suspend_connection) and is resumed from the
 * completion callback on the loop thread; the resume wakes MHD through its ITC, which is part
 * of the same epoll set. */
#pragma once

#include <systemd/sd-event.h>

#include "agent/ops.h"
#include "common/macros.h"

struct agent_modules;
struct auth;
struct config;
struct diskops;
struct guests;
struct imagecache;
struct metrics;
struct region;
struct report;
struct tasks;
struct virt;

/* What the API serves; owned by the agent, outliving the api and the calls it leaves behind
 * (task outcomes still reach the region after the api is gone). */
struct api_deps {
	sd_event *event;
	const struct config *cfg;
	struct tasks *tasks;
	struct metrics *metrics;
	struct virt *virt; /* guest statistics of /metrics */
	struct region *region;
	struct report *report; /* the host id, host sync, registration state */
	struct guests *guests;
	struct auth *auth;
	struct diskops *diskops;
	struct imagecache *imagecache;
	struct agent_modules *modules; /* NULL: kernel modules are not managed */
	/* /readyz: NULL when ready, else a JSON array of reasons (the caller's). */
	json_t *(*not_ready)(void *ud);
	void *not_ready_ud;
};
struct api;

int api_new(const struct api_deps *deps, struct api **ret);
/* Binds the listeners and starts serving. */
int api_start(struct api *api);
/* Stops accepting new connections (listeners closed); requests in flight still complete and
 * /readyz answers 503. */
void api_stop_accepting(struct api *api);
/* Answers requests still waiting with 503, stops the daemons, removes the admin socket.
 * Completions of operations still running later only post their task callbacks. */
struct api *api_free(struct api *api);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct api *, api_free)

/* Reloads the TLS certificate and key (SIGHUP); a failed reload keeps the pair in use. */
int api_reload(struct api *api);

/* The TCP port actually bound (useful with port 0), 0 before api_start(). */
int api_port(struct api *api);

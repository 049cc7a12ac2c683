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

#include "agent/ops.h"

struct agent;
struct api;

int api_new(struct agent *a, struct api **ret);
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

/* The one context object of the daemon: owns the event loop and every subsystem. */
#pragma once

#include <systemd/sd-event.h>

#include "common/config.h"
#include "common/macros.h"

struct agent {
	struct config cfg;
	sd_event *event;
	sd_event_source *sigterm, *sigint;
	bool stopping;
	int exit_code;
};

/* Takes ownership of *cfg (cleared on success). */
int agent_new(struct config *cfg, struct agent **ret);
struct agent *agent_free(struct agent *a);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct agent *, agent_free)
int agent_start(struct agent *a);
int agent_run(struct agent *a);
/* Begins a graceful stop: no new work, then the loop exits. */
void agent_stop(struct agent *a, int code);

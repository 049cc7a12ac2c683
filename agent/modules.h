/* Kernel modules the node needs, ensured at startup and on request (agent side of kmod/).
 * Results feed readiness, metrics and the host info. */
#pragma once

#include <jansson.h>

#include "agent/ops.h"

struct config;
struct tasks;
struct metrics;
struct readiness;
struct agent_modules;

/* cfg (its kernel module list and module options) must outlive the result; metrics and
 * readiness may be NULL. Readiness gets the required modules missing or failed, or "not
 * checked yet". */
int agent_modules_new(const struct config *cfg, struct tasks *tasks, struct metrics *metrics,
		      struct readiness *readiness, struct agent_modules **ret);
struct agent_modules *agent_modules_free(struct agent_modules *m);
/* Runs the first ensure on the worker pool. */
int agent_modules_start(struct agent_modules *m);
/* Ensures again (hostctl modules ensure); cb gets {"modules": [...], "ok": bool}. */
int agent_modules_ensure(struct agent_modules *m, op_done_fn cb, void *userdata);
/* {"modules": [...], "ok": bool} of the last run, or {"modules": null} before the first. */
json_t *agent_modules_json(struct agent_modules *m);

/* Kernel modules the node needs, ensured at startup and on request (agent side of kmod/).
 * Results feed readiness, metrics and the host info. Loop thread, except the ensure itself (on
 * the worker pool) and the last report, which the metrics collector reads under its lock. */
#pragma once

#include <jansson.h>

#include "agent/ops.h"

struct config;
struct tasks;
struct metrics;
struct readiness;
struct agent_modules;
struct modload_request;

/* cfg (its kernel module list and module options) must outlive the result; metrics and
 * readiness may be NULL. Readiness gets the required modules missing or failed, or "not
 * checked yet". */
int agent_modules_new(const struct config *cfg, struct tasks *tasks, struct metrics *metrics,
		      struct readiness *readiness, struct agent_modules **ret);
struct agent_modules *agent_modules_free(struct agent_modules *m);
/* The request for kmod from cfg's module list: CONFIG_MODULE_KVM_VENDOR becomes this CPU's
 * module (cpuinfo_path: NULL for /proc/cpuinfo), or is left out on a CPU without one. The
 * names point into cfg. */
int agent_modules_request(const struct config *cfg, const char *cpuinfo_path,
			  struct modload_request **ret, size_t *ret_n);
/* Runs the first ensure on the worker pool. */
int agent_modules_start(struct agent_modules *m);
/* Ensures again (hostctl modules ensure); cb gets {"modules": [...], "ok": bool}. */
int agent_modules_ensure(struct agent_modules *m, op_done_fn cb, void *userdata);
/* {"modules": [...], "ok": bool} of the last run, or {"modules": null} before the first. */
json_t *agent_modules_json(struct agent_modules *m);

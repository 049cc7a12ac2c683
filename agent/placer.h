/* Agent side of agent/placement.h: checks every QEMU after it starts and every adopted one,
 * moves misplaced ones out of the container's cgroup (enforce_placement), and keeps the
 * result for readiness and metrics. All placement calls run on the worker pool under one key
 * (the placement object is not thread-safe). */
#pragma once

#include <jansson.h>

struct config;
struct tasks;
struct guests;
struct metrics;
struct placer;
struct readiness;

/* Reads cfg's cgroup settings and enforce_placement now; metrics may be NULL. */
int placer_new(const struct config *cfg, struct tasks *tasks, struct guests *guests,
	       struct metrics *metrics, struct readiness *readiness, struct placer **ret);
struct placer *placer_free(struct placer *p);
/* Installs the guest hooks, the metrics collector and its readiness (QEMUs left in the
 * agent's container cgroup). */
int placer_start(struct placer *p);

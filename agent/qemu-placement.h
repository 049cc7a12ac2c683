/* Agent side of placement/placement.h: checks every QEMU after it starts and every adopted one,
 * moves misplaced ones out of the container's cgroup (enforce_placement), and keeps the
 * result for readiness and metrics. All placement calls run on the worker pool under one key
 * (the placement object is not thread-safe). */
#pragma once

#include <jansson.h>

struct config;
struct tasks;
struct guests;
struct metrics;
struct qemu_placement;
struct readiness;

/* Reads cfg's cgroup settings and enforce_placement now; metrics may be NULL. */
int qemu_placement_new(const struct config *cfg, struct tasks *tasks, struct guests *guests,
		       struct metrics *metrics, struct readiness *readiness,
		       struct qemu_placement **ret);
struct qemu_placement *qemu_placement_free(struct qemu_placement *p);
/* Installs the guest hooks, the metrics collector and its readiness (QEMUs left in the
 * agent's container cgroup). */
int qemu_placement_start(struct qemu_placement *p);

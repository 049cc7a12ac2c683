/* Readiness (GET /readyz): each subsystem registers what keeps the node from being ready, the
 * way it registers a metrics collector (agent/metrics.h); the probe asks them all, in
 * registration order. Loop thread only. */
#pragma once

#include <jansson.h>

struct readiness;

/* Appends a string per reason this subsystem is not ready ("libvirt: not connected to ..."). */
typedef void (*readiness_fn)(void *userdata, json_t *reasons);

int readiness_new(struct readiness **ret);
struct readiness *readiness_free(struct readiness *r);
/* r may be NULL (a subsystem built without readiness, in a unit test): then nothing is
 * registered. */
int readiness_add(struct readiness *r, readiness_fn fn, void *userdata);
/* Removes every function registered with userdata (its owner goes away first). NULL-safe. */
void readiness_remove(struct readiness *r, void *userdata);
/* NULL when ready, else a JSON array of reason strings (the caller's). */
json_t *readiness_reasons(struct readiness *r);

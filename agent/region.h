/* The region side: Keystone session (password auth, token renewed at half its life, compute
 * endpoint from the catalog) and task callbacks. Implemented in agent/region.c. In standalone
 * mode (no auth_url) every call is a successful no-op. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

struct agent;
struct region;

int region_new(struct agent *a, struct region **ret);
struct region *region_free(struct region *r);
int region_start(struct region *r);

/* Posts the outcome of an asynchronous operation to {compute}/tasks/<task_id>, retrying with
 * backoff until the region accepts it (bounded). body is the operation's result; on failure
 * it carries "__status__": "error" and "__reason__". Takes a reference on body; never blocks
 * the loop. */
int region_task_callback(struct region *r, const char *task_id, json_t *body);

/* The agent's own service token and the compute endpoint, for other modules; NULL when not
 * (yet) authenticated. Strings are owned by the region object; call on the loop thread. */
const char *region_token(struct region *r);
const char *region_compute_url(struct region *r);

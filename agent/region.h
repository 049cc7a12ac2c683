/* The region side: Keystone session (password auth, token renewed at half its life, compute
 * endpoint from the catalog) and task callbacks. Implemented in agent/region.c. In standalone
 * mode (no auth_url) every call is a successful no-op. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

struct config;
struct region;

/* cfg (the agent's) and event outlive the region. */
int region_new(sd_event *event, const struct config *cfg, struct region **ret);
struct region *region_free(struct region *r);
int region_start(struct region *r);

/* Posts the outcome of an asynchronous operation to {compute}/tasks/<task_id>, retrying with
 * backoff until the region accepts it (bounded). body is the operation's result; on failure
 * it carries "__status__": "error" and "__reason__". Takes a reference on body; never blocks
 * the loop. -EINVAL for a task id that is not id_is_valid(.., REGION_ID_MAX): it reaches a URL. */
int region_task_callback(struct region *r, const char *task_id, json_t *body);

/* The agent's own service token and the compute endpoint, for other modules; NULL when not
 * (yet) authenticated. Strings are owned by the region object; call on the loop thread. */
const char *region_token(struct region *r);
/* Task callbacks not yet accepted by the region (the drain at shutdown waits for them). */
size_t region_pending_callbacks(struct region *r);
const char *region_compute_url(struct region *r);
/* The image service (catalog type "image", e.g. http://glance:9292/v1), NULL when none. */
const char *region_image_url(struct region *r);

/* Asks for a new service token now (Keystone answered 401 to the current one). */
void region_token_invalid(struct region *r);

/* Asynchronous HTTP to keystone and the region for agent modules: the request runs on the
 * event loop (agent/httploop.h), done runs there later, never from inside the submit.
 * -ESHUTDOWN in standalone mode, -EBUSY when too many requests are in flight. r < 0 when no
 * response came. */
struct http_response;
struct region_http;
typedef void (*region_http_done_fn)(int r, const struct http_response *resp, void *userdata);
/* headers and body are copied. *ret_handle (optional) lets the caller cancel: done is then
 * never called (a request already on the wire may still reach the server). The handle is
 * valid until done runs or region_http_cancel(). */
int region_http_submit(struct region *r, const char *method, const char *url, char *const *headers,
		       const char *body, long timeout_ms, region_http_done_fn done, void *userdata,
		       struct region_http **ret_handle);
void region_http_cancel(struct region_http *h);
/* The same for a token validation (GET), with a cap in flight of its own: validations asked
 * for by API callers never stop the agent's own requests. -EBUSY at the cap. */
int region_validation_submit(struct region *r, const char *url, char *const *headers,
			     long timeout_ms, region_http_done_fn done, void *userdata,
			     struct region_http **ret_handle);

/* Keystone v3 parsing, exposed for unit tests. */
/* "2026-11-25T18:14:15.000000Z" (or without fraction, or "+00:00") -> microseconds since
 * the epoch. */
int keystone_parse_time(const char *s, uint64_t *ret_usec);
/* From a token body ({"token": {...}}): the URL of the first endpoint of a service whose type
 * is one of types, in region (NULL: any), with interface ("internal", "public", "admin"). */
int keystone_catalog_find(json_t *token_body, const char *const *types, const char *region,
			  const char *interface, char **ret_url);
/* Token lifetime from a token body, microseconds since the epoch. */
int keystone_token_times(json_t *token_body, uint64_t *ret_issued, uint64_t *ret_expires);
/* 0 when the token carries one of roles, -EPERM when it carries none, -EBADMSG when the body
 * has no role list. */
int keystone_token_has_role(json_t *token_body, char *const *roles);

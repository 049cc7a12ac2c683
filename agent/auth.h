/* API authentication. Standalone mode (no auth_url): one random token kept in api_token_file
 * (0600, created at first start). Region mode: tokens validated against Keystone v3
 * (GET /v3/auth/tokens with X-Subject-Token, using the agent's own service token), valid
 * results cached for token_cache_seconds (never beyond the token's expiry), refused ones for a
 * few seconds (a flood of bogus tokens costs one validation each per window), at most 64
 * validations in flight, on a pool of their own (agent/region.h); the token must carry one of
 * api_roles. Implemented in agent/auth.c. Loop thread only: a validation is an HTTP transfer
 * driven by the loop (region_http, agent/httploop.h) and answered there. */
#pragma once

#include <jansson.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

struct config;
struct region;
struct auth;

/* cfg (the agent's) and region (its token, the validation pool) outlive the auth object. */
int auth_new(const struct config *cfg, struct region *region, struct auth **ret);
struct auth *auth_free(struct auth *au);
/* Loads or creates the standalone token; in region mode, nothing blocking. */
int auth_start(struct auth *au);

/* Result of a validation: 0 valid; -EACCES missing/invalid/expired/revoked token (HTTP 401);
 * -EPERM valid token without an allowed role (HTTP 403); other negative errno: Keystone
 * unreachable (HTTP 503). */
typedef void (*auth_done_fn)(int result, void *userdata);

/* Validates token (may be NULL). When the answer is known at once (standalone mode, a
 * malformed token, cache hits, no keystone session, too many validations in flight) it is
 * returned as above and cb is never called; otherwise this returns AUTH_PENDING and cb runs
 * exactly once, later, on the event loop. */
#define AUTH_PENDING 1
int auth_validate(struct auth *au, const char *token, auth_done_fn cb, void *userdata);

/* Internals, exposed for unit tests. Times are CLOCK_REALTIME microseconds (Keystone's
 * expires_at is wall-clock time). */
struct auth_cache;
int auth_cache_new(size_t max_entries, struct auth_cache **ret);
struct auth_cache *auth_cache_free(struct auth_cache *c);
/* Remembers token as valid until until_usec; a full cache drops expired entries first, then
 * the one expiring soonest. */
int auth_cache_put(struct auth_cache *c, const char *token, uint64_t until_usec, uint64_t now_usec);
/* True when token is cached and still valid at now_usec (expired entries are dropped). */
bool auth_cache_get(struct auth_cache *c, const char *token, uint64_t now_usec);
size_t auth_cache_size(const struct auth_cache *c);
/* How long a validation may be trusted: now + cache_seconds, never past expires_usec;
 * 0 when it must not be cached. */
uint64_t auth_cache_until(uint64_t now_usec, unsigned cache_seconds, uint64_t expires_usec);
/* Constant-time string equality (time depends only on the length of expected). */
bool auth_token_equal(const char *given, const char *expected);
/* Tokens reach an HTTP header: printable ASCII without spaces, at most 8 KiB. */
bool auth_token_wellformed(const char *token);
/* Who may call the API, beyond holding a token Keystone validates. The region forwards the
 * requesting user's token (Cloudpods' STask.GetTaskRequestHeader), so with neither list set
 * any valid token passes, as with the Go agent. projects (api_projects): the token must be
 * scoped to one of them, named by id, by "DOMAIN/NAME", or by a bare name in own_domain.
 * roles (api_roles): the token must carry one of them in its own scope, and that scope must
 * be one of projects (when set), else the agent's own project (own_project in own_domain)
 * or the whole system: a role held in a tenant's project counts for nothing here. */
struct auth_policy {
	char *const *roles;
	char *const *projects;
	const char *own_project;
	const char *own_domain;
};
/* 0 when the validated token body passes policy, -EPERM when not, -EBADMSG when malformed. */
int auth_token_allowed(json_t *token_body, const struct auth_policy *policy);
/* Maps Keystone's answer to GET /v3/auth/tokens to a validation result (see auth_done_fn);
 * on 0 *ret_expires is the token's expires_at. */
int auth_check_validation(long status, const char *body, size_t body_len,
			  const struct auth_policy *policy, uint64_t *ret_expires);

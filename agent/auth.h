/* API authentication. Standalone mode (no auth_url): one random token kept in api_token_file
 * (0600, created at first start). Region mode: tokens validated against Keystone v3
 * (GET /v3/auth/tokens with X-Subject-Token, using the agent's own service token), valid
 * results cached for token_cache_seconds (never beyond the token's expiry), invalid ones never
 * cached; the token must carry one of api_roles. Implemented in agent/auth.c. */
#pragma once

#include <systemd/sd-event.h>

struct agent;
struct auth;

int auth_new(struct agent *a, struct auth **ret);
struct auth *auth_free(struct auth *au);
/* Loads or creates the standalone token; in region mode, nothing blocking. */
int auth_start(struct auth *au);

/* Result of a validation: 0 valid; -EACCES missing/invalid/expired/revoked token (HTTP 401);
 * -EPERM valid token without an allowed role (HTTP 403); other negative errno: Keystone
 * unreachable (HTTP 503). */
typedef void (*auth_done_fn)(int result, void *userdata);

/* Validates token (may be NULL). cb runs on the event loop, possibly before this returns
 * (standalone mode, cache hits). Returns < 0 only when cb will not be called. */
int auth_validate(struct auth *au, const char *token, auth_done_fn cb, void *userdata);

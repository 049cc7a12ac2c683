/* The workspaces of the guests: <servers_path>/<sid>/ with the stored descriptor (desc) the
 * agent accepted for sid, the ground truth of what a guest should be next to libvirt's domain.
 * Files only, no state: safe from any thread. Implemented in agent/workspace.c. */
#pragma once

#include <jansson.h>

struct config;
struct guest_desc;

/* <servers_path>/<sid> and <servers_path>/<sid>/desc (NULL on OOM; free() them). */
char *workspace_dir(const struct config *cfg, const char *sid);
char *workspace_desc(const struct config *cfg, const char *sid);
/* Loads and parses the stored descriptor; -ENOENT when there is no workspace. The paths it
 * stored must resolve as they did (L7): else the error, with the reason in *ret_error. Outputs
 * (each optional) are written only on success. */
int workspace_load_desc(const struct config *cfg, const char *sid, json_t **ret_json,
			struct guest_desc **ret_desc, char **ret_error);
/* Replaces the stored descriptor of sid with text (atomically, 0600). */
int workspace_store_desc(const struct config *cfg, const char *sid, const char *text);
/* The ids (valid guest ids) of the workspaces, in directory order; none when servers_path does
 * not exist. -errno when it cannot be read, -ENOMEM with what was listed so far: the callers
 * log it and go on with what there is. */
int workspace_list(const struct config *cfg, char ***ret_sids);

/* Command-line parsing of hostagent, separate from main() so tests can drive it. Main thread,
 * before the event loop exists. */
#pragma once

#include <stdbool.h>

#include "common/config.h"

struct agent_args {
	const char *config_path; /* NULL: default path if it exists, else embedded defaults */
	bool config_explicit;
	bool print_config;
	bool show_version;
	bool show_help;
	char **overrides; /* key, value, key, value, ... NULL */
};

/* Returns 0, or -EINVAL with *ret_error naming the bad argument. */
int agent_args_parse(int argc, char **argv, struct agent_args *ret, char **ret_error);
void agent_args_done(struct agent_args *a);
/* Builds the effective configuration: defaults, file, environment, flags. */
int agent_config_build(const struct agent_args *a, char **env, struct config *ret,
		       char **ret_error);
void agent_print_help(const char *prog);

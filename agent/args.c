#include <stdio.h>
#include <sys/stat.h>

#include "agent/args.h"
#include "common/macros.h"

void agent_args_done(struct agent_args *a)
{
	a->overrides = strv_free(a->overrides);
}

int agent_args_parse(int argc, char **argv, struct agent_args *ret, char **ret_error)
{
	struct agent_args a = {0};
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		if (streq(arg, "--help") || streq(arg, "-h"))
			a.show_help = true;
		else if (streq(arg, "--version"))
			a.show_version = true;
		else if (streq(arg, "--print-config"))
			a.print_config = true;
		else if (streq(arg, "--config") || streq(arg, "-c") ||
			 strneq(arg, "--config=", 9)) {
			const char *v = strneq(arg, "--config=", 9) ? arg + 9 : NULL;
			if (!v && i + 1 >= argc)
				goto missing;
			a.config_path = v ? v : argv[++i];
			a.config_explicit = true;
		} else if (strneq(arg, "--", 2)) {
			_cleanup_free_ char *key = strdup(arg + 2);
			if (!key)
				goto oom;
			char *eq = strchr(key, '=');
			const char *value;
			if (eq) {
				*eq = 0;
				value = eq + 1;
			} else if (i + 1 < argc)
				value = argv[++i];
			else
				goto missing;
			if (!config_has_key(key)) {
				if (ret_error &&
				    asprintf(ret_error, "unknown option '%s'", arg) < 0)
					*ret_error = NULL;
				agent_args_done(&a);
				return -EINVAL;
			}
			if (strv_extend(&a.overrides, key) < 0 ||
			    strv_extend(&a.overrides, value) < 0)
				goto oom;
		} else {
			if (ret_error && asprintf(ret_error, "unexpected argument '%s'", arg) < 0)
				*ret_error = NULL;
			agent_args_done(&a);
			return -EINVAL;
		}
		continue;
	missing:
		if (ret_error && asprintf(ret_error, "option '%s' needs a value", arg) < 0)
			*ret_error = NULL;
		agent_args_done(&a);
		return -EINVAL;
	}
	*ret = a;
	return 0;
oom:
	agent_args_done(&a);
	return -ENOMEM;
}

int agent_config_build(const struct agent_args *a, char **env, struct config *ret, char **ret_error)
{
	struct config cfg;
	int r = config_init(&cfg);
	if (r < 0)
		return r;
	const char *path = a->config_path;
	if (!path) {
		/* The default file is optional: without it the embedded defaults run. */
		struct stat st;
		if (stat(CONFIG_DEFAULT_PATH, &st) == 0)
			path = CONFIG_DEFAULT_PATH;
	}
	if (path)
		r = config_load_file(&cfg, path, ret_error);
	if (r >= 0)
		r = config_load_env(&cfg, env, ret_error);
	for (char **o = a->overrides; r >= 0 && o && o[0] && o[1]; o += 2) {
		char origin[128];
		snprintf(origin, sizeof(origin), "option --%s", o[0]);
		r = config_set(&cfg, o[0], o[1], origin, ret_error);
	}
	if (r >= 0)
		r = config_finish(&cfg, ret_error);
	if (r < 0) {
		config_done(&cfg);
		return r;
	}
	*ret = cfg;
	return 0;
}

void agent_print_help(const char *prog)
{
	printf("%s [OPTIONS]\n\n"
	       "Compute-node agent: runs KVM guests through libvirt and serves the host API.\n\n"
	       "  -h --help             show this help\n"
	       "     --version          show the version\n"
	       "  -c --config PATH      configuration file (default " CONFIG_DEFAULT_PATH
	       " if present)\n"
	       "     --print-config     print the effective configuration and exit\n\n"
	       "Every configuration key is also an option (--key=value) and an environment\n"
	       "variable (HOSTAGENT_KEY=value); options win over the environment, which wins\n"
	       "over the file. Keys:\n",
	       prog);
	config_print_keys(stdout);
}

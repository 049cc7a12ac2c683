#include <libvirt/libvirt.h>
#include <libxml/parser.h>
#include <systemd/sd-daemon.h>

#include "agent/agent.h"
#include "agent/args.h"
#include "common/log.h"

extern char **environ;

static void log_settings(const struct config *c)
{
	log_kv(LOG_INFO, "Effective configuration", "version", PACKAGE_VERSION, "mode",
	       config_standalone(c) ? "standalone" : "region", "listen", c->listen_address,
	       "libvirt_uri", c->libvirt_uri, "servers_path", c->servers_path, "state_dir",
	       c->state_dir, "admin_socket", c->admin_socket, "auth_url", strempty(c->auth_url),
	       "log_level", c->log_level, NULL);
}

int main(int argc, char **argv)
{
	struct agent_args args;
	_cleanup_free_ char *err = NULL;
	log_open();
	int r = agent_args_parse(argc, argv, &args, &err);
	if (r < 0) {
		fprintf(stderr, "hostagent: %s (see --help)\n", err ? err : strerror(-r));
		return 2;
	}
	if (args.show_help) {
		agent_print_help(argv[0]);
		agent_args_done(&args);
		return 0;
	}
	if (args.show_version) {
		printf("hostagent %s\n", PACKAGE_VERSION);
		agent_args_done(&args);
		return 0;
	}
	struct config cfg;
	r = agent_config_build(&args, environ, &cfg, &err);
	bool print = args.print_config;
	agent_args_done(&args);
	if (r < 0) {
		fprintf(stderr, "hostagent: invalid configuration: %s\n", err ? err : strerror(-r));
		return 2;
	}
	if (print) {
		config_print(&cfg, stdout);
		config_done(&cfg);
		return 0;
	}
	log_set_max_level(log_level_from_string(cfg.log_level));
	log_set_format(streq(cfg.log_format, "json") ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT);
	log_settings(&cfg);
	/* Both libraries are used from worker threads: initialize them before any thread. */
	xmlInitParser();
	if (virInitialize() < 0) {
		config_done(&cfg);
		log_error("Cannot initialize libvirt");
		return 1;
	}

	_cleanup_(agent_freep) struct agent *a = NULL;
	r = agent_new(&cfg, &a);
	if (r < 0) {
		config_done(&cfg);
		log_error_errno(r, "Failed to set up the agent: %m");
		return 1;
	}
	r = agent_start(a);
	if (r < 0) {
		log_error_errno(r, "Failed to start the agent: %m");
		return 1;
	}
	sd_notify(0, "READY=1\nSTATUS=Running");
	r = agent_run(a);
	sd_notify(0, "STOPPING=1");
	if (r < 0) {
		log_error_errno(r, "Event loop failed: %m");
		return 1;
	}
	log_info("Stopped");
	return r;
}

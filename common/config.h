/* The agent's configuration: one YAML file, HOSTAGENT_<KEY> environment variables and
 * --key=value flags, applied in that order over the embedded defaults. */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#define CONFIG_DEFAULT_PATH "/etc/yunion/host.conf"
/* admin_socket's default: where hostctl looks too. */
#define CONFIG_DEFAULT_ADMIN_SOCKET "/run/hostagent/admin.sock"

/* A kernel module name that stands for this CPU's KVM module (kvm_intel or kvm_amd from the
 * vendor in /proc/cpuinfo), resolved when the modules are ensured (agent/modules.c). */
#define CONFIG_MODULE_KVM_VENDOR "kvm-vendor"

struct config_module {
	char *name;
	char *params; /* "max_part=16 foo=bar" or NULL */
	bool required;
};

struct config {
	char *listen_address;
	int port;
	char *servers_path;
	char **local_image_path;
	char **networks; /* "IFNAME/BRIDGE[/IP]", the access network first */
	char *state_dir;
	char *libvirt_uri;
	char *admin_socket;
	char *api_token_file;
	char *tls_cert_file;
	char *tls_key_file;
	char *auth_url;
	char *admin_user;
	char *admin_password;
	char *admin_domain;
	char *admin_project;
	char *admin_project_domain;
	char *region;
	char *zone;
	char *session_endpoint_type;
	int ping_region_interval;
	struct config_module *kernel_modules;
	size_t n_kernel_modules;
	char *modules_dir;
	bool modprobe_fallback;
	int modules_host_pid;
	char *log_level;
	char *log_format;
	char *vnc_listen;
	char *cpu_mode;
	char *virt_type; /* "kvm" or "qemu" */
	char *qemu_user; /* NAME or UID:GID QEMU runs as; NULL/empty: root */
	int api_max_body;
	int api_max_connections;
	int api_max_connections_per_ip;
	int api_rate_limit;
	int api_request_timeout;
	int token_cache_seconds;
	char **api_roles;
	char **api_projects;
	bool metrics_require_token;
	int task_workers;
	int guest_view_reconcile_seconds;
	bool enforce_placement;
	char *cgroup_root;
	char *host_cgroup_partition;
	int shutdown_timeout;
	bool dhcp;	    /* guest DHCP from the descriptors (agent/dhcp.h) */
	char *dhcp_dnsmasq; /* program name (searched in PATH) or absolute path */
};

/* Fills cfg with the embedded defaults (a standalone agent). */
int config_init(struct config *cfg);
void config_done(struct config *cfg);
/* Loads a YAML file over cfg. On error returns negative errno and sets *ret_error to a
 * message naming file, line and key. */
int config_load_file(struct config *cfg, const char *path, char **ret_error);
/* Applies HOSTAGENT_<KEY> variables from environ. */
int config_load_env(struct config *cfg, char **environ_, char **ret_error);
/* Applies one override "key" = "value" (key with '-' or '_'), as from a --key=value flag. */
int config_set(struct config *cfg, const char *key, const char *value, const char *origin,
	       char **ret_error);
/* True when key names a configuration key (for the flag parser). */
bool config_has_key(const char *key);
/* Derived defaults (api_token_file under state_dir) and cross-key checks. */
int config_finish(struct config *cfg, char **ret_error);
/* Writes the effective configuration as YAML; secrets are masked. */
void config_print(const struct config *cfg, FILE *f);
/* Documentation of every key, one per line, for --help. */
void config_print_keys(FILE *f);
bool config_standalone(const struct config *cfg);

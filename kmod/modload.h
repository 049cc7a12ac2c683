/* Kernel module manager on libkmod: resolve names and aliases against a modules tree, detect
 * built-in and already loaded modules, load the rest with dependencies, soft dependencies and
 * parameters, and report per requested module. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/macros.h"

struct kmod_module;

/* One module to ensure: a name or alias, its parameters, whether the node needs it. */
struct modload_request {
	const char *name;
	const char *params; /* "max_part=16 foo=bar" or NULL */
	bool required;
};

enum modload_status {
	MODLOAD_BUILTIN,
	MODLOAD_ALREADY_LOADED,
	MODLOAD_LOADED_NOW,
	MODLOAD_MISSING,
	MODLOAD_FAILED,
};

/* The system seam: what actually changes the kernel. Tests record the calls. */
struct modload_ops {
	/* Inserts one module (its dependencies were handled before). 0, -EEXIST when it
	 * raced with another loader, or a negative errno. */
	int (*insert)(void *userdata, struct kmod_module *mod, const char *options);
	/* Fallback without a modules tree: modprobe NAME PARAMS... on the host.
	 * 0, -ENOENT when the host has no such module, or a negative errno. */
	int (*modprobe)(void *userdata, const char *name, char *const *params);
};

struct modload_opts {
	const char *modules_dir; /* NULL: /lib/modules/$(uname -r) */
	const char *sysfs_root;	 /* NULL: /sys (reads <root>/module/<name>) */
	const char *proc_root;	 /* NULL: /proc (reads <root>/modules) */
	/* modprobe.d style config files for libkmod; NULL: libkmod's defaults
	 * (/etc/modprobe.d, /run/modprobe.d, /lib/modprobe.d); an empty vector: none. */
	const char *const *config_paths;
	/* Without a modules tree: run modprobe in the mount namespace of this host
	 * process (0: PID 1) through the nsenter library. */
	bool modprobe_fallback;
	pid_t host_pid;
	int modprobe_timeout_ms;       /* <= 0: 30 s */
	const struct modload_ops *ops; /* NULL: the real syscalls / modprobe */
	void *ops_userdata;
};

struct modload_result {
	char *name;	/* as requested */
	char *resolved; /* module the name or alias resolved to; NULL when missing */
	char *params;	/* as requested */
	bool required;
	enum modload_status status;
	int error;	  /* positive errno when FAILED */
	char *failed_dep; /* module that failed to load when it was a dependency */
	char **inserted;  /* modules inserted for this request, in order (strv) */
};

struct modload_report {
	struct modload_result *results;
	size_t n_results;
	bool tree_available; /* false: the fallback or sysfs alone decided */
};

struct modload;

int modload_new(const struct modload_opts *o, struct modload **ret);
struct modload *modload_free(struct modload *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct modload *, modload_free);
/* The directory in use (resolved default included). */
const char *modload_modules_dir(const struct modload *m);

/* Ensures every module; per-module problems go into the report, not the return value.
 * Returns 0 or a negative errno for a failure to run at all (-ENOMEM). */
int modload_ensure(struct modload *m, const struct modload_request *mods, size_t n,
		   struct modload_report **ret);
struct modload_report *modload_report_free(struct modload_report *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct modload_report *, modload_report_free);

const char *modload_status_to_string(enum modload_status s);
/* True when every required module is built in or loaded. */
bool modload_report_ok(const struct modload_report *r);
/* Readiness reasons, one per required module that is missing or failed:
 * "required kernel module nbd is missing" (strv, maybe empty). */
int modload_report_reasons(const struct modload_report *r, char ***ret);
/* Warnings for optional modules that are missing or failed (strv, maybe empty). */
int modload_report_warnings(const struct modload_report *r, char ***ret);
/* One line per module: "nbd: loaded now (params max_part=16; inserted nbd)". */
int modload_report_to_text(const struct modload_report *r, char **ret);
/* "kvm_intel" or "kvm_amd" from /proc/cpuinfo's vendor_id (cpuinfo path for tests);
 * -EOPNOTSUPP for other vendors. */
int modload_kvm_module(const char *cpuinfo_path, const char **ret);

/* Running commands in the namespaces of another process (the host's, through PID 1 by default).
 * Namespaces are entered only in a forked single-threaded child, as util-linux nsenter does. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/spawn.h"

enum {
	NS_MNT = 1 << 0,
	NS_UTS = 1 << 1,
	NS_IPC = 1 << 2,
	NS_NET = 1 << 3,
	NS_PID = 1 << 4,
	NS_CGROUP = 1 << 5,
	NS_ALL = NS_MNT | NS_UTS | NS_IPC | NS_NET | NS_PID | NS_CGROUP,
};

/* The PATH of the clean environment commands get on the host. */
#define NS_HOST_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* Where a failure happened, so callers can word it: "command not found" is only EXEC. */
enum ns_step {
	NS_STEP_NONE = 0,
	NS_STEP_TARGET, /* opening the target process or its namespace files */
	NS_STEP_SETNS,	/* entering the namespaces */
	NS_STEP_CWD,	/* changing to the working directory inside the target's mounts */
	NS_STEP_FORK,	/* forking into the PID namespace */
	NS_STEP_EXEC,	/* starting the command */
};

struct ns_exec_opts {
	pid_t target;	     /* 0: PID 1 */
	unsigned namespaces; /* NS_* mask; 0: NS_ALL */
	char *const *env;    /* NULL: clean environment with PATH=NS_HOST_PATH */
	const char *cwd;     /* inside the target's mount namespace; NULL: its root */
	int timeout_ms;	     /* as spawn_opts */
	bool capture;
	size_t capture_max;
	const char *stdin_data;
	bool inherit_stdin;
};

/* "mnt,uts,net" -> NS_* mask. -EINVAL naming nothing: the caller prints the input. */
int ns_parse_list(const char *s, unsigned *ret);
/* "mnt" for NS_MNT; NULL for anything but a single flag. */
const char *ns_name(unsigned flag);
const char *ns_step_to_string(enum ns_step s);

/* Runs argv in the namespaces of o->target and waits for it (spawn_run semantics).
 * Errors: -ESRCH no such target, -EPERM not allowed to enter, -EOPNOTSUPP a namespace the
 * kernel does not have, -ENOENT (step EXEC) command missing on the host, -EINVAL bad
 * arguments. ret_step (may be NULL) tells where a failure happened. */
int ns_exec_full(const struct ns_exec_opts *o, char *const *argv, struct spawn_result *ret,
		 enum ns_step *ret_step);
int ns_exec(const struct ns_exec_opts *o, char *const *argv, struct spawn_result *ret);

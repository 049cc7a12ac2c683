/* Process spawning without a shell: argv vectors, O_CLOEXEC, pidfds, timeouts, capped capture.
 * (libvirt's virCommand idea.) Implemented in common/spawn.c. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct spawn_opts {
	char *const *env;   /* NULL: a clean environment with PATH=/usr/sbin:/usr/bin:/sbin:/bin */
	const char *cwd;    /* NULL: unchanged */
	int timeout_ms;	    /* <= 0: none; else SIGTERM at timeout, SIGKILL 2 s later */
	bool capture;	    /* capture stdout/stderr into the result instead of inheriting */
	size_t capture_max; /* per stream; 0 means 1 MiB; excess is dropped, truncated flag set */
	const char *stdin_data; /* written to the child's stdin when set (else /dev/null) */
	bool inherit_stdin;	/* without stdin_data: the caller's stdin instead of /dev/null */
	/* Runs in the child after fork, before exec (single-threaded child). Returns 0 or a
	 * negative errno, which aborts the exec and is reported as spawn failure. */
	int (*child_setup)(void *userdata);
	void *userdata;
};

struct spawn_result {
	int exit_status; /* exit code; 128+n when killed by signal n */
	int term_signal; /* 0 unless killed by a signal */
	bool timed_out;
	char *out, *err; /* NUL-terminated when capture was requested, else NULL */
	size_t out_len, err_len;
	bool out_truncated, err_truncated;
};

/* Runs argv[0] (looked up in PATH of opts->env) to completion.
 * Returns 0 when the child ran (whatever its exit status), -ENOENT when the command does not
 * exist, another negative errno when it could not be started or child_setup failed. */
int spawn_run(char *const *argv, const struct spawn_opts *opts, struct spawn_result *ret);
void spawn_result_done(struct spawn_result *r);
/* Starts argv[0] and returns once it was executed (or failed to be): for long-running children
 * the caller supervises. stdin is /dev/null, stdout and stderr are the caller's (capture,
 * stdin_data and timeout_ms are not used). *ret_pidfd is a pidfd of the child (readable when
 * it exits; the caller reaps it with waitpid()). -ENOENT when the command does not exist. */
int spawn_start(char *const *argv, const struct spawn_opts *opts, pid_t *ret_pid, int *ret_pidfd);
/* pidfd_open(2); -ENOSYS on kernels without it. */
int spawn_pidfd_open(pid_t pid);

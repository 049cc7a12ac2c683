/* Process spawning: fork + execve without a shell, pidfd waiting, capped capture. */
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <linux/close_range.h>

#include "common/macros.h"
#include "common/spawn.h"

#define SPAWN_DEFAULT_PATH    "/usr/sbin:/usr/bin:/sbin:/bin"
#define SPAWN_CAPTURE_DEFAULT (1024 * 1024)
#define SPAWN_KILL_GRACE_MS   2000
#define SPAWN_DRAIN_MS	      200

static char spawn_default_path_env[] = "PATH=" SPAWN_DEFAULT_PATH;
static char *const spawn_default_env[] = {spawn_default_path_env, NULL};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int pidfd_open_compat(pid_t pid)
{
#ifdef SYS_pidfd_open
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0)
		return negative_errno();
	return fd;
#else
	return -ENOSYS;
#endif
}

int spawn_pidfd_open(pid_t pid)
{
	return pidfd_open_compat(pid);
}

static void spawn_kill(int pidfd, pid_t pid, int sig)
{
#ifdef SYS_pidfd_send_signal
	if (pidfd >= 0 && syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) == 0)
		return;
#endif
	(void)kill(pid, sig);
}

/* Child side: async-signal-safe only from here on (no malloc, no stdio). */
static _Noreturn void child_fail(int errfd, int error)
{
	int e = error > 0 ? -error : error;
	ssize_t _unused_ n = write(errfd, &e, sizeof(e));
	_exit(127);
}

static const char *env_path(char *const *env)
{
	for (size_t i = 0; env && env[i]; i++)
		if (strneq(env[i], "PATH=", 5))
			return env[i] + 5;
	return SPAWN_DEFAULT_PATH;
}

/* execvpe() searches the caller's PATH; we search the PATH of the environment we pass. */
static int exec_in_path(char *const *argv, char *const *env)
{
	const char *cmd = argv[0];
	char buf[4096];
	int saved = ENOENT;

	if (strchr(cmd, '/')) {
		execve(cmd, argv, env);
		return -errno;
	}
	size_t clen = strlen(cmd);
	for (const char *p = env_path(env); p;) {
		const char *end = strchr(p, ':');
		size_t dlen = end ? (size_t)(end - p) : strlen(p);
		if (dlen == 0) {
			dlen = 1;
			p = ".";
		}
		if (dlen + 1 + clen + 1 <= sizeof(buf)) {
			memcpy(buf, p, dlen);
			buf[dlen] = '/';
			memcpy(buf + dlen + 1, cmd, clen + 1);
			execve(buf, argv, env);
			/* Keep looking on "not here"; remember a more meaningful error. */
			if (errno != ENOENT && errno != ENOTDIR)
				saved = errno;
		}
		p = end ? end + 1 : NULL;
	}
	return -saved;
}

static int move_fd(int from, int to)
{
	if (from < 0)
		return 0;
	if (from == to)
		return fcntl(to, F_SETFD, 0);
	return dup2(from, to) < 0 ? -1 : 0;
}

static _Noreturn void spawn_child(char *const *argv, const struct spawn_opts *o, int errfd,
				  int in_fd, int out_fd, int err_fd)
{
	sigset_t all;
	struct sigaction sa = {.sa_handler = SIG_DFL};

	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			(void)sigaction(sig, &sa, NULL);
	sigemptyset(&all);
	(void)sigprocmask(SIG_SETMASK, &all, NULL);

	/* Nothing but stdio crosses exec, whatever the parent leaked. */
	(void)close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
	if (move_fd(in_fd, STDIN_FILENO) < 0 || move_fd(out_fd, STDOUT_FILENO) < 0 ||
	    move_fd(err_fd, STDERR_FILENO) < 0)
		child_fail(errfd, errno);

	if (o->cwd && chdir(o->cwd) < 0)
		child_fail(errfd, errno);
	if (o->child_setup) {
		int r = o->child_setup(o->userdata);
		if (r < 0)
			child_fail(errfd, r);
	}
	child_fail(errfd, exec_in_path(argv, o->env ? o->env : spawn_default_env));
}

struct capture {
	int fd;
	char *buf;
	size_t len, max;
	bool truncated;
};

/* Reads what is available; returns 1 at EOF, 0 otherwise, negative errno on failure. */
static int capture_read(struct capture *c)
{
	char tmp[16384];
	ssize_t n = read(c->fd, tmp, sizeof(tmp));
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	if (n == 0)
		return 1;
	size_t take = MIN((size_t)n, c->max - c->len);
	if (take < (size_t)n)
		c->truncated = true;
	if (take > 0) {
		memcpy(c->buf + c->len, tmp, take);
		c->len += take;
		c->buf[c->len] = '\0';
	}
	return 0;
}

static int make_pipe(int p[2])
{
	if (pipe2(p, O_CLOEXEC) < 0)
		return negative_errno();
	return 0;
}

static const struct spawn_opts spawn_defaults = {0};

/* Checks argv and opens the pipe on which a child that cannot exec reports the errno (it
 * closes on exec: O_CLOEXEC). */
static int exec_error_pipe(char *const *argv, int *ret_r, int *ret_w)
{
	int p[2], r;
	if (!argv || !argv[0] || !*argv[0])
		return -EINVAL;
	if ((r = make_pipe(p)) < 0)
		return r;
	*ret_r = p[0];
	*ret_w = p[1];
	return 0;
}

void spawn_result_done(struct spawn_result *r)
{
	if (!r)
		return;
	free(r->out);
	free(r->err);
	*r = (struct spawn_result){0};
}

static int status_to_result(int status, struct spawn_result *res)
{
	if (WIFEXITED(status)) {
		res->exit_status = WEXITSTATUS(status);
		res->term_signal = 0;
	} else if (WIFSIGNALED(status)) {
		res->term_signal = WTERMSIG(status);
		res->exit_status = 128 + res->term_signal;
	} else
		return -EIO;
	return 0;
}

int spawn_run(char *const *argv, const struct spawn_opts *opts, struct spawn_result *ret)
{
	const struct spawn_opts *o = opts ? opts : &spawn_defaults;
	_cleanup_close_ int errp_r = -1, errp_w = -1, in_r = -1, in_w = -1, out_r = -1, out_w = -1,
			    err_r = -1, err_w = -1, pidfd = -1, null_fd = -1;
	struct capture out = {.fd = -1}, err = {.fd = -1};
	struct spawn_result res = {0};
	int p[2], r;

	if ((r = exec_error_pipe(argv, &errp_r, &errp_w)) < 0)
		return r;

	if (o->stdin_data) {
		/* A socket rather than a pipe: send(MSG_NOSIGNAL) never raises SIGPIPE. */
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) < 0)
			return negative_errno();
		in_r = p[0];
		in_w = p[1];
		(void)shutdown(in_r, SHUT_WR);
		(void)shutdown(in_w, SHUT_RD);
	} else if (!o->inherit_stdin) {
		null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (null_fd < 0)
			return negative_errno();
	}
	if (o->capture) {
		size_t max = o->capture_max ? o->capture_max : SPAWN_CAPTURE_DEFAULT;
		if ((r = make_pipe(p)) < 0)
			return r;
		out_r = p[0];
		out_w = p[1];
		if ((r = make_pipe(p)) < 0)
			return r;
		err_r = p[0];
		err_w = p[1];
		out.max = err.max = max;
		out.buf = calloc(1, max + 1);
		err.buf = calloc(1, max + 1);
		if (!out.buf || !err.buf) {
			free(out.buf);
			free(err.buf);
			return -ENOMEM;
		}
	}

	pid_t pid = fork();
	if (pid < 0) {
		free(out.buf);
		free(err.buf);
		return negative_errno();
	}
	if (pid == 0)
		spawn_child(argv, o, errp_w, in_r >= 0 ? in_r : null_fd, out_w, err_w);

	errp_w = safe_close(errp_w);
	in_r = safe_close(in_r);
	out_w = safe_close(out_w);
	err_w = safe_close(err_w);
	null_fd = safe_close(null_fd);
	out.fd = out_r;
	err.fd = err_r;

	pidfd = pidfd_open_compat(pid);
	for (int *fd = (int[]){errp_r, in_w, out_r, err_r, -1}; *fd != -1; fd++)
		(void)fcntl(*fd, F_SETFL, O_NONBLOCK);

	const char *in_data = o->stdin_data;
	size_t in_left = in_data ? strlen(in_data) : 0;
	if (in_w >= 0 && in_left == 0)
		in_w = safe_close(in_w);

	int64_t start = now_ms();
	int64_t term_at = o->timeout_ms > 0 ? start + o->timeout_ms : -1;
	int64_t kill_at = -1, drain_until = -1;
	int child_err = 0;
	size_t child_err_got = 0;
	bool exited = false;
	int status = 0;

	for (;;) {
		struct pollfd pfd[5];
		int n = 0, idx_pid = -1, idx_errp = -1, idx_in = -1, idx_out = -1, idx_err = -1;
		int64_t now = now_ms(), deadline = -1;

		if (!exited) {
			if (term_at >= 0 && now >= term_at && kill_at < 0) {
				res.timed_out = true;
				spawn_kill(pidfd, pid, SIGTERM);
				kill_at = now + SPAWN_KILL_GRACE_MS;
			}
			if (kill_at >= 0 && now >= kill_at) {
				spawn_kill(pidfd, pid, SIGKILL);
				kill_at = INT64_MAX;
			}
			if (kill_at < 0)
				deadline = term_at;
			else if (kill_at != INT64_MAX)
				deadline = kill_at;
		} else {
			if (now >= drain_until)
				break;
			deadline = drain_until;
		}
		if (!exited) {
			if (pidfd >= 0) {
				idx_pid = n;
				pfd[n++] = (struct pollfd){.fd = pidfd, .events = POLLIN};
			} else if (deadline < 0 || deadline > now + 20)
				deadline = now + 20; /* no pidfd: poll waitpid() */
		}
		if (errp_r >= 0) {
			idx_errp = n;
			pfd[n++] = (struct pollfd){.fd = errp_r, .events = POLLIN};
		}
		if (in_w >= 0) {
			idx_in = n;
			pfd[n++] = (struct pollfd){.fd = in_w, .events = POLLOUT};
		}
		if (out.fd >= 0) {
			idx_out = n;
			pfd[n++] = (struct pollfd){.fd = out.fd, .events = POLLIN};
		}
		if (err.fd >= 0) {
			idx_err = n;
			pfd[n++] = (struct pollfd){.fd = err.fd, .events = POLLIN};
		}
		if (exited && n == 0)
			break;

		int wait_ms = deadline < 0 ? -1 : (int)MAX(0, MIN(deadline - now, INT32_MAX));
		int k = poll(pfd, n, wait_ms);
		if (k < 0 && errno != EINTR) {
			r = negative_errno();
			goto fail_kill;
		}
		if (k > 0) {
			if (idx_errp >= 0 && pfd[idx_errp].revents) {
				ssize_t m = 0;
				if (child_err_got < sizeof(child_err))
					m = read(errp_r, (char *)&child_err + child_err_got,
						 sizeof(child_err) - child_err_got);
				if (m > 0)
					child_err_got += (size_t)m;
				else if (m == 0 || (errno != EAGAIN && errno != EINTR))
					errp_r = safe_close(errp_r);
			}
			if (idx_in >= 0 && pfd[idx_in].revents) {
				ssize_t m =
				    send(in_w, in_data, in_left, MSG_NOSIGNAL | MSG_DONTWAIT);
				if (m > 0) {
					in_data += m;
					in_left -= (size_t)m;
				}
				if (in_left == 0 || (m < 0 && errno != EAGAIN && errno != EINTR))
					in_w = safe_close(in_w);
			}
			if (idx_out >= 0 && pfd[idx_out].revents) {
				r = capture_read(&out);
				if (r != 0)
					out.fd = out_r = safe_close(out_r);
			}
			if (idx_err >= 0 && pfd[idx_err].revents) {
				r = capture_read(&err);
				if (r != 0)
					err.fd = err_r = safe_close(err_r);
			}
		}
		if (!exited && (pidfd < 0 || (idx_pid >= 0 && k > 0 && pfd[idx_pid].revents))) {
			pid_t w = waitpid(pid, &status, pidfd < 0 ? WNOHANG : 0);
			if (w == pid) {
				exited = true;
				in_w = safe_close(in_w);
				/* Pipes may still hold output; a descendant keeping them open must
				 * not hold us forever. */
				drain_until = now_ms() + SPAWN_DRAIN_MS;
			} else if (w < 0 && errno != EINTR) {
				r = negative_errno();
				goto fail_kill;
			}
		}
	}

	/* Collect a late exec error report still sitting in the pipe. */
	if (errp_r >= 0 && child_err_got < sizeof(child_err)) {
		ssize_t m = read(errp_r, (char *)&child_err + child_err_got,
				 sizeof(child_err) - child_err_got);
		if (m > 0)
			child_err_got += (size_t)m;
	}
	if (child_err_got == sizeof(child_err) && child_err < 0) {
		free(out.buf);
		free(err.buf);
		return child_err;
	}
	r = status_to_result(status, &res);
	if (r < 0) {
		free(out.buf);
		free(err.buf);
		return r;
	}
	if (o->capture) {
		res.out = out.buf;
		res.out_len = out.len;
		res.out_truncated = out.truncated;
		res.err = err.buf;
		res.err_len = err.len;
		res.err_truncated = err.truncated;
	}
	if (ret)
		*ret = res;
	else {
		free(res.out);
		free(res.err);
	}
	return 0;

fail_kill:
	spawn_kill(pidfd, pid, SIGKILL);
	(void)waitpid(pid, NULL, 0);
	free(out.buf);
	free(err.buf);
	return r;
}

int spawn_start(char *const *argv, const struct spawn_opts *opts, pid_t *ret_pid, int *ret_pidfd)
{
	const struct spawn_opts *o = opts ? opts : &spawn_defaults;
	_cleanup_close_ int errp_r = -1, errp_w = -1, null_fd = -1;
	int r;

	if ((r = exec_error_pipe(argv, &errp_r, &errp_w)) < 0)
		return r;
	null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (null_fd < 0)
		return negative_errno();
	pid_t pid = fork();
	if (pid < 0)
		return negative_errno();
	if (pid == 0)
		spawn_child(argv, o, errp_w, null_fd, -1, -1);
	errp_w = safe_close(errp_w);
	/* The pipe closes on exec (O_CLOEXEC) or carries the errno of a failed one. */
	int child_err = 0;
	ssize_t n;
	do
		n = read(errp_r, &child_err, sizeof(child_err));
	while (n < 0 && errno == EINTR);
	if (n == (ssize_t)sizeof(child_err) && child_err < 0) {
		(void)waitpid(pid, NULL, 0);
		return child_err;
	}
	int pidfd = pidfd_open_compat(pid);
	if (pidfd < 0) {
		spawn_kill(-1, pid, SIGKILL);
		(void)waitpid(pid, NULL, 0);
		return pidfd;
	}
	*ret_pid = pid;
	*ret_pidfd = pidfd;
	return 0;
}

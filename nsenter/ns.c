/* Namespace entry: pidfd_open + setns(pidfd, flags) where the kernel has it, the files under
 * /proc/<pid>/ns otherwise; always in the single-threaded child spawn_run() forks. */
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "common/macros.h"
#include "nsenter/ns.h"

/* Entry order of util-linux nsenter: the mount namespace last, so /proc stays the caller's
 * while the other files are used. */
static const struct {
	unsigned flag;
	int clone_flag;
	const char *name;
} ns_table[] = {
    {NS_CGROUP, CLONE_NEWCGROUP, "cgroup"}, {NS_IPC, CLONE_NEWIPC, "ipc"},
    {NS_UTS, CLONE_NEWUTS, "uts"},	    {NS_NET, CLONE_NEWNET, "net"},
    {NS_PID, CLONE_NEWPID, "pid"},	    {NS_MNT, CLONE_NEWNS, "mnt"},
};
#define N_NS ELEMENTSOF(ns_table)

/* The child reports a failure as -(step << NS_STEP_SHIFT | errno) through spawn's error pipe. */
#define NS_STEP_SHIFT 12
#define NS_ERRNO_MASK ((1 << NS_STEP_SHIFT) - 1)

static char ns_host_path_env[] = "PATH=" NS_HOST_PATH;
static char *const ns_host_env[] = {ns_host_path_env, NULL};

struct ns_ctx {
	int pidfd;
	int fds[N_NS];
	unsigned mask;
	const char *cwd;
};

static void ns_ctx_done(struct ns_ctx *c)
{
	c->pidfd = safe_close(c->pidfd);
	for (size_t i = 0; i < N_NS; i++)
		c->fds[i] = safe_close(c->fds[i]);
}

const char *ns_name(unsigned flag)
{
	for (size_t i = 0; i < N_NS; i++)
		if (ns_table[i].flag == flag)
			return ns_table[i].name;
	return NULL;
}

static const char *const step_names[] = {
    [NS_STEP_NONE] = "none", [NS_STEP_TARGET] = "target", [NS_STEP_SETNS] = "setns",
    [NS_STEP_CWD] = "cwd",   [NS_STEP_FORK] = "fork",	  [NS_STEP_EXEC] = "exec",
};

DEFINE_STRING_TABLE_TO(ns_step, enum ns_step, step_names, "unknown")

int ns_parse_list(const char *s, unsigned *ret)
{
	unsigned mask = 0;

	if (isempty(s))
		return -EINVAL;
	for (const char *p = s; p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		bool found = false;

		if (len == 3 && strneq(p, "all", 3)) {
			mask |= NS_ALL;
			found = true;
		}
		for (size_t i = 0; !found && i < N_NS; i++)
			if (strlen(ns_table[i].name) == len && strneq(p, ns_table[i].name, len)) {
				mask |= ns_table[i].flag;
				found = true;
			}
		/* util-linux spells it "mount" as well as "mnt". */
		if (!found && len == 5 && strneq(p, "mount", 5)) {
			mask |= NS_MNT;
			found = true;
		}
		if (!found)
			return -EINVAL;
		p = end ? end + 1 : NULL;
	}
	*ret = mask;
	return 0;
}

static bool proc_pid_exists(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	return access(path, F_OK) == 0;
}

/* Parent side: open everything first, so errors are precise and happen before any fork. */
static int ns_prepare(pid_t target, unsigned mask, struct ns_ctx *c)
{
	c->pidfd = spawn_pidfd_open(target);
	if (c->pidfd < 0 && c->pidfd != -ENOSYS)
		return c->pidfd == -ESRCH || c->pidfd == -EINVAL ? -ESRCH : c->pidfd;

	for (size_t i = 0; i < N_NS; i++) {
		char path[64];

		if (!(mask & ns_table[i].flag))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)target, ns_table[i].name);
		c->fds[i] = open(path, O_RDONLY | O_CLOEXEC);
		if (c->fds[i] >= 0)
			continue;
		switch (errno) {
		case ENOENT:
			return proc_pid_exists(target) ? -EOPNOTSUPP : -ESRCH;
		case EACCES:
		case EPERM:
			return -EPERM;
		default:
			return negative_errno();
		}
	}
	/* The process we opened files of is still the one the pidfd names (no PID reuse). */
	if (c->pidfd >= 0 && syscall(SYS_pidfd_send_signal, c->pidfd, 0, NULL, 0) < 0 &&
	    errno == ESRCH)
		return -ESRCH;
	return 0;
}

static int child_error(enum ns_step step, int error)
{
	int e = error < 0 ? -error : error;
	return -(int)(((unsigned)step << NS_STEP_SHIFT) | (unsigned)(e & NS_ERRNO_MASK));
}

static int ns_enter(const struct ns_ctx *c)
{
	int flags = 0;

	for (size_t i = 0; i < N_NS; i++)
		if (c->mask & ns_table[i].flag)
			flags |= ns_table[i].clone_flag;
	/* One atomic switch (Linux >= 5.8); EINVAL from older kernels means "not a ns fd". */
	if (c->pidfd >= 0) {
		if (setns(c->pidfd, flags) == 0)
			return 0;
		if (errno != EINVAL)
			return -errno;
	}
	for (size_t i = 0; i < N_NS; i++)
		if (c->fds[i] >= 0 && setns(c->fds[i], ns_table[i].clone_flag) < 0)
			return -errno;
	return 0;
}

/* Re-raises a child's death signal on ourselves so our parent sees the same status. */
static _Noreturn void exit_like(int status)
{
	if (WIFEXITED(status))
		_exit(WEXITSTATUS(status));
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);
		struct rlimit no_core = {0, 0};
		struct sigaction sa = {.sa_handler = SIG_DFL};
		sigset_t set;

		(void)setrlimit(RLIMIT_CORE, &no_core);
		(void)sigaction(sig, &sa, NULL);
		sigemptyset(&set);
		sigaddset(&set, sig);
		(void)sigprocmask(SIG_UNBLOCK, &set, NULL);
		(void)raise(sig);
		_exit(128 + sig);
	}
	_exit(127);
}

/* Entering a PID namespace applies to children only: fork once more. The middle process
 * forwards termination signals and mirrors the command's exit status. */
static int ns_fork_pid(void)
{
	static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
	sigset_t set, old;
	pid_t parent = getpid();

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	for (size_t i = 0; i < ELEMENTSOF(forwarded); i++)
		sigaddset(&set, forwarded[i]);
	if (sigprocmask(SIG_BLOCK, &set, &old) < 0)
		return -errno;

	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		(void)sigprocmask(SIG_SETMASK, &old, NULL);
		/* Die with the middle process, which dies with a timeout's SIGKILL. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
			_exit(127);
		return 0;
	}
	for (;;) {
		siginfo_t si;
		int status;

		if (sigwaitinfo(&set, &si) < 0)
			continue;
		if (si.si_signo != SIGCHLD) {
			(void)kill(pid, si.si_signo);
			continue;
		}
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			exit_like(status);
		if (w < 0 && errno == ECHILD)
			_exit(127);
	}
}

static int ns_child_setup(void *userdata)
{
	struct ns_ctx *c = userdata;
	int r;

	r = ns_enter(c);
	if (r < 0)
		return child_error(NS_STEP_SETNS, r);
	if (c->cwd && chdir(c->cwd) < 0)
		return child_error(NS_STEP_CWD, errno);
	if (c->mask & NS_PID) {
		r = ns_fork_pid();
		if (r < 0)
			return child_error(NS_STEP_FORK, r);
	}
	return 0;
}

int ns_exec_full(const struct ns_exec_opts *o, char *const *argv, struct spawn_result *ret,
		 enum ns_step *ret_step)
{
	struct ns_ctx c = {.pidfd = -1};
	pid_t target = o && o->target ? o->target : 1;
	unsigned mask = o && o->namespaces ? o->namespaces : NS_ALL;
	enum ns_step step = NS_STEP_NONE;
	int r;

	for (size_t i = 0; i < N_NS; i++)
		c.fds[i] = -1;
	if (ret_step)
		*ret_step = NS_STEP_NONE;
	if (!argv || !argv[0] || !*argv[0] || target < 1 || (mask & ~(unsigned)NS_ALL))
		return -EINVAL;

	c.mask = mask;
	c.cwd = o ? o->cwd : NULL;
	r = ns_prepare(target, mask, &c);
	if (r < 0) {
		step = NS_STEP_TARGET;
		goto finish;
	}

	struct spawn_opts so = {
	    .env = o && o->env ? o->env : ns_host_env,
	    .child_setup = ns_child_setup,
	    .userdata = &c,
	};
	if (o) {
		so.timeout_ms = o->timeout_ms;
		so.capture = o->capture;
		so.capture_max = o->capture_max;
		so.stdin_data = o->stdin_data;
		so.inherit_stdin = o->inherit_stdin;
	}
	r = spawn_run(argv, &so, ret);
	if (r < 0) {
		int e = -r;
		step = (enum ns_step)(e >> NS_STEP_SHIFT);
		if (step == NS_STEP_NONE)
			step = NS_STEP_EXEC;
		r = -(e & NS_ERRNO_MASK);
	}
finish:
	ns_ctx_done(&c);
	if (r < 0 && ret_step)
		*ret_step = step;
	return r;
}

int ns_exec(const struct ns_exec_opts *o, char *const *argv, struct spawn_result *ret)
{
	return ns_exec_full(o, argv, ret, NULL);
}

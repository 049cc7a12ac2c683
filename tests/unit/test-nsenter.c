/* ns_exec(): namespace list parsing, error reporting, entering a UTS namespace of a helper
 * process, PID-namespace forwarding of exit codes, signals and timeouts. */
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

#include "nsenter/ns.h"
#include "tests/unit/test-common.h"

#define ARGV(...) ((char *[]){__VA_ARGS__, NULL})

static void test_parse_list(void **state)
{
	unsigned m = 0;
	assert_int_equal(ns_parse_list("mnt,uts,net", &m), 0);
	assert_int_equal(m, NS_MNT | NS_UTS | NS_NET);
	assert_int_equal(ns_parse_list("pid", &m), 0);
	assert_int_equal(m, NS_PID);
	assert_int_equal(ns_parse_list("mount,ipc,cgroup", &m), 0);
	assert_int_equal(m, NS_MNT | NS_IPC | NS_CGROUP);
	assert_int_equal(ns_parse_list("all", &m), 0);
	assert_int_equal(m, NS_ALL);
	m = 42;
	assert_int_equal(ns_parse_list("mnt,bogus", &m), -EINVAL);
	assert_int_equal(ns_parse_list("", &m), -EINVAL);
	assert_int_equal(ns_parse_list("mnt,", &m), -EINVAL);
	assert_int_equal(ns_parse_list("user", &m), -EINVAL);
	assert_int_equal(m, 42);
	assert_string_equal(ns_name(NS_CGROUP), "cgroup");
	assert_null(ns_name(NS_MNT | NS_UTS));
	assert_string_equal(ns_step_to_string(NS_STEP_EXEC), "exec");
}

static pid_t dead_pid(void)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	return pid;
}

static void test_errors(void **state)
{
	struct ns_exec_opts o = {.target = dead_pid()};
	struct spawn_result r;
	enum ns_step step;

	assert_int_equal(ns_exec_full(&o, ARGV("true"), &r, &step), -ESRCH);
	assert_int_equal(step, NS_STEP_TARGET);
	o.target = -3;
	assert_int_equal(ns_exec(&o, ARGV("true"), &r), -EINVAL);
	o.target = getpid();
	o.namespaces = 1u << 20;
	assert_int_equal(ns_exec(&o, ARGV("true"), &r), -EINVAL);
	o.namespaces = NS_UTS;
	assert_int_equal(ns_exec(&o, ARGV(""), &r), -EINVAL);
}

static bool have_root(void)
{
	return geteuid() == 0;
}

static void test_in_self(void **state)
{
	struct ns_exec_opts o = {.target = getpid(), .capture = true};
	struct spawn_result r;
	enum ns_step step;

	if (!have_root())
		skip();
	assert_int_equal(ns_exec_full(&o, ARGV("sh", "-c", "echo $PATH; exit 5"), &r, &step), 0);
	assert_int_equal(r.exit_status, 5);
	assert_string_equal(r.out, NS_HOST_PATH "\n");
	spawn_result_done(&r);

	assert_int_equal(ns_exec_full(&o, ARGV("no-such-command-hostagent"), &r, &step), -ENOENT);
	assert_int_equal(step, NS_STEP_EXEC);

	o.cwd = "/nonexistent-dir";
	assert_int_equal(ns_exec_full(&o, ARGV("true"), &r, &step), -ENOENT);
	assert_int_equal(step, NS_STEP_CWD);
	o.cwd = "/etc";
	assert_int_equal(ns_exec(&o, ARGV("pwd"), &r), 0);
	assert_string_equal(r.out, "/etc\n");
	spawn_result_done(&r);
}

static void test_pid_namespace_status(void **state)
{
	struct ns_exec_opts o = {.target = getpid(), .namespaces = NS_PID | NS_MNT};
	struct spawn_result r;

	if (!have_root())
		skip();
	/* The middle process mirrors exit codes and death signals. */
	assert_int_equal(ns_exec(&o, ARGV("sh", "-c", "exit 9"), &r), 0);
	assert_int_equal(r.exit_status, 9);
	assert_int_equal(ns_exec(&o, ARGV("sh", "-c", "kill -USR2 $$"), &r), 0);
	assert_int_equal(r.term_signal, SIGUSR2);
	assert_int_equal(r.exit_status, 128 + SIGUSR2);
	/* A timeout's SIGTERM is forwarded to the command. */
	o.timeout_ms = 200;
	assert_int_equal(ns_exec(&o, ARGV("sleep", "10"), &r), 0);
	assert_true(r.timed_out);
	assert_int_equal(r.exit_status, 128 + SIGTERM);
}

/* A helper in its own UTS namespace with its own hostname, standing for "the host". */
static pid_t start_uts_helper(int ready_fd[2])
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char c = 'x';
		if (unshare(CLONE_NEWUTS) < 0 || sethostname("ns-helper", 9) < 0)
			_exit(1);
		if (write(ready_fd[1], &c, 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	return pid;
}

static void test_enter_uts(void **state)
{
	int p[2];
	char c;

	if (!have_root())
		skip();
	assert_int_equal(pipe(p), 0);
	pid_t helper = start_uts_helper(p);
	assert_int_equal(read(p[0], &c, 1), 1);
	close(p[0]);
	close(p[1]);

	struct ns_exec_opts o = {.target = helper, .namespaces = NS_UTS, .capture = true};
	struct spawn_result r;
	assert_int_equal(ns_exec(&o, ARGV("hostname"), &r), 0);
	assert_string_equal(r.out, "ns-helper\n");
	spawn_result_done(&r);

	kill(helper, SIGKILL);
	waitpid(helper, NULL, 0);
}

TEST_MAIN(cmocka_unit_test(test_parse_list), cmocka_unit_test(test_errors),
	  cmocka_unit_test(test_in_self), cmocka_unit_test(test_pid_namespace_status),
	  cmocka_unit_test(test_enter_uts))

/* spawn_run(): exit codes, signals, capture, stdin, timeouts, missing commands. */
#include <signal.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "common/fs.h"
#include "common/spawn.h"
#include "tests/unit/test-common.h"

#define ARGV(...) ((char *[]){__VA_ARGS__, NULL})

static void test_exit_codes(void **state)
{
	struct spawn_result r;
	assert_int_equal(spawn_run(ARGV("true"), NULL, &r), 0);
	assert_int_equal(r.exit_status, 0);
	assert_null(r.out);
	assert_int_equal(spawn_run(ARGV("sh", "-c", "exit 3"), NULL, &r), 0);
	assert_int_equal(r.exit_status, 3);
	assert_int_equal(r.term_signal, 0);
	assert_false(r.timed_out);
	assert_int_equal(spawn_run(ARGV("sh", "-c", "kill -USR1 $$"), NULL, &r), 0);
	assert_int_equal(r.term_signal, SIGUSR1);
	assert_int_equal(r.exit_status, 128 + SIGUSR1);
}

static void test_capture(void **state)
{
	struct spawn_opts o = {.capture = true};
	struct spawn_result r;
	assert_int_equal(spawn_run(ARGV("sh", "-c", "echo out; echo err >&2; exit 1"), &o, &r), 0);
	assert_int_equal(r.exit_status, 1);
	assert_string_equal(r.out, "out\n");
	assert_string_equal(r.err, "err\n");
	assert_int_equal(r.out_len, 4);
	assert_false(r.out_truncated);
	spawn_result_done(&r);
	assert_null(r.out);

	/* Empty output is an empty string, not NULL. */
	assert_int_equal(spawn_run(ARGV("true"), &o, &r), 0);
	assert_non_null(r.out);
	assert_string_equal(r.out, "");
	spawn_result_done(&r);
}

static void test_capture_cap(void **state)
{
	struct spawn_opts o = {.capture = true, .capture_max = 10};
	struct spawn_result r;
	/* 200 KiB: more than a pipe buffer, so the loop must keep reading past the cap. */
	assert_int_equal(spawn_run(ARGV("head", "-c", "204800", "/dev/zero"), &o, &r), 0);
	assert_int_equal(r.exit_status, 0);
	assert_int_equal(r.out_len, 10);
	assert_true(r.out_truncated);
	assert_false(r.err_truncated);
	spawn_result_done(&r);
}

static void test_stdin(void **state)
{
	struct spawn_opts o = {.capture = true, .stdin_data = "hello\nworld\n"};
	struct spawn_result r;
	assert_int_equal(spawn_run(ARGV("cat"), &o, &r), 0);
	assert_string_equal(r.out, "hello\nworld\n");
	spawn_result_done(&r);

	/* Without stdin data the child reads /dev/null. */
	o.stdin_data = NULL;
	assert_int_equal(spawn_run(ARGV("cat"), &o, &r), 0);
	assert_string_equal(r.out, "");
	spawn_result_done(&r);

	/* A child that never reads its stdin does not make the parent fail or hang. */
	_cleanup_free_ char *big = malloc(1 << 20);
	assert_non_null(big);
	memset(big, 'x', (1 << 20) - 1);
	big[(1 << 20) - 1] = '\0';
	o.stdin_data = big;
	assert_int_equal(spawn_run(ARGV("true"), &o, &r), 0);
	assert_int_equal(r.exit_status, 0);
	spawn_result_done(&r);
}

static void test_missing(void **state)
{
	struct spawn_result r = {.exit_status = 42};
	assert_int_equal(spawn_run(ARGV("no-such-command-hostagent"), NULL, &r), -ENOENT);
	assert_int_equal(r.exit_status, 42); /* untouched on failure */
	assert_int_equal(spawn_run(ARGV("/nonexistent/bin/x"), NULL, &r), -ENOENT);
	assert_int_equal(spawn_run(ARGV("/tmp"), NULL, &r), -EACCES);
	assert_int_equal(spawn_run(ARGV(""), NULL, &r), -EINVAL);
}

static void test_env_and_cwd(void **state)
{
	struct spawn_opts o = {.capture = true, .cwd = "/"};
	struct spawn_result r;
	assert_int_equal(spawn_run(ARGV("env"), &o, &r), 0);
	assert_string_equal(r.out, "PATH=/usr/sbin:/usr/bin:/sbin:/bin\n");
	spawn_result_done(&r);
	assert_int_equal(spawn_run(ARGV("pwd"), &o, &r), 0);
	assert_string_equal(r.out, "/\n");
	spawn_result_done(&r);

	o.env = (char *[]){"PATH=/nonexistent", "FOO=bar", NULL};
	assert_int_equal(spawn_run(ARGV("env"), &o, &r), -ENOENT);
	assert_int_equal(spawn_run(ARGV("/usr/bin/env"), &o, &r), 0);
	assert_string_equal(r.out, "PATH=/nonexistent\nFOO=bar\n");
	spawn_result_done(&r);

	o.cwd = "/nonexistent";
	assert_int_equal(spawn_run(ARGV("/usr/bin/env"), &o, &r), -ENOENT);
}

static int setup_fail(void *userdata)
{
	return -EPERM;
}

static int setup_write(void *userdata)
{
	return setenv("UNUSED", "x", 1) < 0 ? -errno : 0;
}

static void test_child_setup(void **state)
{
	struct spawn_opts o = {.child_setup = setup_fail};
	struct spawn_result r;
	assert_int_equal(spawn_run(ARGV("true"), &o, &r), -EPERM);
	o.child_setup = setup_write;
	assert_int_equal(spawn_run(ARGV("true"), &o, &r), 0);
	assert_int_equal(r.exit_status, 0);
	/* The hook ran in the child: the parent's environment is unchanged. */
	assert_null(getenv("UNUSED"));
}

static void test_timeout(void **state)
{
	struct spawn_opts o = {.timeout_ms = 200};
	struct spawn_result r;
	assert_int_equal(spawn_run(ARGV("sleep", "10"), &o, &r), 0);
	assert_true(r.timed_out);
	assert_int_equal(r.term_signal, SIGTERM);
	assert_int_equal(r.exit_status, 128 + SIGTERM);

	/* A child ignoring SIGTERM gets SIGKILL after the grace period. */
	o.timeout_ms = 100;
	assert_int_equal(spawn_run(ARGV("sh", "-c", "trap '' TERM; sleep 10 & wait; wait"), &o, &r),
			 0);
	assert_true(r.timed_out);
	assert_int_equal(r.term_signal, SIGKILL);
	assert_int_equal(r.exit_status, 137);

	/* Finishing in time is not a timeout. */
	o.timeout_ms = 5000;
	assert_int_equal(spawn_run(ARGV("true"), &o, &r), 0);
	assert_false(r.timed_out);
}

static void test_background_holder(void **state)
{
	/* A background grandchild holding stdout open must not keep us waiting. */
	struct spawn_opts o = {.capture = true};
	struct spawn_result r;
	assert_int_equal(spawn_run(ARGV("sh", "-c", "echo hi; sleep 3 & exit 0"), &o, &r), 0);
	assert_string_equal(r.out, "hi\n");
	spawn_result_done(&r);
}

/* A supervised child: returned once executed, its pidfd readable when it exits. */
static void test_start(void **state)
{
	pid_t pid = 0;
	int pidfd = -1;
	assert_int_equal(spawn_start(ARGV("sleep", "30"), NULL, &pid, &pidfd), 0);
	assert_true(pid > 0);
	assert_true(pidfd >= 0);
	struct pollfd p = {.fd = pidfd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 100), 0); /* still running */
	assert_int_equal(kill(pid, SIGTERM), 0);
	assert_int_equal(poll(&p, 1, 5000), 1);
	int status = 0;
	assert_int_equal(waitpid(pid, &status, WNOHANG), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
	close(pidfd);
	assert_int_equal(spawn_start(ARGV("no-such-command-hagd"), NULL, &pid, &pidfd), -ENOENT);
}

TEST_MAIN(cmocka_unit_test(test_start), cmocka_unit_test(test_exit_codes),
	  cmocka_unit_test(test_capture), cmocka_unit_test(test_capture_cap),
	  cmocka_unit_test(test_stdin), cmocka_unit_test(test_missing),
	  cmocka_unit_test(test_env_and_cwd), cmocka_unit_test(test_child_setup),
	  cmocka_unit_test(test_timeout), cmocka_unit_test(test_background_holder))

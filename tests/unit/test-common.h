/* Shared helpers for the cmocka unit tests. */
#pragma once

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "common/macros.h"

/* A fresh temporary directory, removed by the caller with rm_rf(). */
char *test_tmpdir(void);
/* A fresh temporary directory (absolute, links resolved; removed by the caller with rm_rf())
 * with subdirectories: pairs of a name and where its path goes, NULL after the last pair.
 * test_tmpdir_with("sys", &sys, "proc", &proc, NULL). */
char *test_tmpdir_with(const char *name, char **ret_path, ...) _sentinel_;
/* Absolute path of a fixture under tests/data. */
char *test_data(const char *rel);
/* Entries of dir, "." and ".." not counted. */
int test_count_entries(const char *dir);
/* Writes text to dir/name and returns the path. */
char *test_write(const char *dir, const char *name, const char *text);
/* A TCP socket listening on 127.0.0.1 at a free port (*ret_port). */
int test_listen_loopback(int backlog, int *ret_port);

/* What write put on a memory stream, as a string; write must return 0. */
char *test_memstream(int (*write)(FILE *f, void *userdata), void *userdata);

/* A fresh temporary directory dir (absolute, links resolved) with the subdirectories disks and
 * images, the roots a test's guests may use (roots: disks, images, NULL), and outside, a
 * directory outside them. As a cmocka fixture: test_roots_setup() makes one in *state,
 * test_roots_teardown() removes and frees it (none made is fine). */
struct test_roots {
	char *dir, *disks, *images, *outside;
	char *roots[3];
};
int test_roots_setup(void **state);
int test_roots_teardown(void **state);

static inline int test_run(const char *name, const struct CMUnitTest *tests, size_t n)
{
	cmocka_set_message_output(CM_OUTPUT_TAP);
	return _cmocka_run_group_tests(name, tests, n, NULL, NULL);
}
/* Runs tests, each with setup and teardown (a fresh fixture per test). */
static inline int test_run_each(const char *name, struct CMUnitTest *tests, size_t n,
				CMFixtureFunction setup, CMFixtureFunction teardown)
{
	for (size_t i = 0; i < n; i++) {
		tests[i].setup_func = setup;
		tests[i].teardown_func = teardown;
	}
	return test_run(name, tests, n);
}
#define TEST_MAIN_EACH(setup, teardown, ...)                                                       \
	int main(void)                                                                             \
	{                                                                                          \
		struct CMUnitTest tests[] = {__VA_ARGS__};                                         \
		return test_run_each(__FILE__, tests, ELEMENTSOF(tests), setup, teardown);         \
	}
#define TEST_MAIN(...)                                                                             \
	int main(void)                                                                             \
	{                                                                                          \
		const struct CMUnitTest tests[] = {__VA_ARGS__};                                   \
		return test_run(__FILE__, tests, ELEMENTSOF(tests));                               \
	}

/* Shared helpers for the cmocka unit tests. */
#pragma once

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/macros.h"

/* A fresh temporary directory, removed by the caller with rm_rf(). */
char *test_tmpdir(void);
/* Absolute path of a fixture under tests/data. */
char *test_data(const char *rel);
/* Entries of dir, "." and ".." not counted. */
int test_count_entries(const char *dir);
/* Writes text to dir/name and returns the path. */
char *test_write(const char *dir, const char *name, const char *text);
/* A fresh temporary directory (absolute, links resolved) with the subdirectories disks and
 * images, the roots a test's guests may use; test_roots_remove() removes and frees them. */
void test_roots_make(char **ret_dir, char **ret_disks, char **ret_images);
void test_roots_remove(char *dir, char *disks, char *images);

static inline int test_run(const char *name, const struct CMUnitTest *tests, size_t n)
{
	cmocka_set_message_output(CM_OUTPUT_TAP);
	return _cmocka_run_group_tests(name, tests, n, NULL, NULL);
}
#define TEST_MAIN(...)                                                                             \
	int main(void)                                                                             \
	{                                                                                          \
		const struct CMUnitTest tests[] = {__VA_ARGS__};                                   \
		return test_run(__FILE__, tests, ELEMENTSOF(tests));                               \
	}

/* agent/console.c: per-guest console passwords (security review H1). */
#include <sys/stat.h>

#include "agent/console.h"
#include "common/fs.h"
#include "test-common.h"

static void test_generate(void **state)
{
	char a[CONSOLE_PASSWORD_LEN + 1], b[CONSOLE_PASSWORD_LEN + 1];
	assert_int_equal(console_password_generate(a), 0);
	assert_int_equal(console_password_generate(b), 0);
	assert_int_equal(strlen(a), CONSOLE_PASSWORD_LEN);
	assert_true(console_password_valid(a));
	assert_true(console_password_valid(b));
	assert_string_not_equal(a, b);
	assert_false(console_password_valid("short"));
	assert_false(console_password_valid("abcdefg0")); /* look-alike 0 not in the alphabet */
	assert_false(console_password_valid("abcd\"<>&"));
	assert_false(console_password_valid(NULL));
}

static void test_ensure(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir();
	_cleanup_free_ char *p = strjoin(dir, "/" CONSOLE_PASSWORD_FILE);
	_cleanup_free_ char *pw = NULL, *again = NULL, *read = NULL;
	assert_int_equal(console_password_read(dir, &read), -ENOENT);
	assert_int_equal(console_password_ensure(dir, &pw), 0);
	assert_true(console_password_valid(pw));
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	/* Stable: the same password on every start. */
	assert_int_equal(console_password_ensure(dir, &again), 0);
	assert_string_equal(pw, again);
	assert_int_equal(console_password_read(dir, &read), 0);
	assert_string_equal(pw, read);
	/* A malformed file (hand-edited, truncated) is replaced, never used as it is. */
	assert_int_equal(write_file_atomic(p, "x\"<y", 4, 0600), 0);
	_cleanup_free_ char *fresh = NULL, *bad = NULL;
	assert_int_equal(console_password_read(dir, &bad), -EBADMSG);
	assert_int_equal(console_password_ensure(dir, &fresh), 0);
	assert_true(console_password_valid(fresh));
	rm_rf(dir);
}

TEST_MAIN(cmocka_unit_test(test_generate), cmocka_unit_test(test_ensure))

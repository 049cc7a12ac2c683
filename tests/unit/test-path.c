#include <fcntl.h>
#include <limits.h>
#include <unistd.h>
#include <sys/stat.h>

#include "common/fs.h"
#include "common/path.h"
#include "tests/unit/test-common.h"

/* The roots fixture with one root, disks (test_second_root adds outside), holding sub, and the
 * links out (escapes to outside) and in (to sub, stays inside). */
static int setup(void **state)
{
	test_roots_setup(state);
	struct test_roots *f = *state;
	f->roots[1] = NULL;
	_cleanup_free_ char *sub = strjoin(f->disks, "/sub");
	mkdir_p(sub, 0755);
	_cleanup_free_ char *out = strjoin(f->disks, "/out");
	_cleanup_free_ char *in = strjoin(f->disks, "/in");
	assert_int_equal(symlink(f->outside, out), 0); /* escapes */
	assert_int_equal(symlink(sub, in), 0);	       /* stays inside */
	return 0;
}

static int confine(struct test_roots *f, const char *rel, char **ret)
{
	_cleanup_free_ char *p = rel[0] == '/' ? strdup(rel) : strjoin(f->disks, "/", rel);
	return path_confine(f->roots, p, ret);
}

static void test_inside(void **state)
{
	struct test_roots *f = *state;
	_cleanup_free_ char *r = NULL;
	assert_int_equal(confine(f, "a.qcow2", &r), 0);
	_cleanup_free_ char *expect = strjoin(f->disks, "/a.qcow2");
	_cleanup_free_ char *real = realpath(f->disks, NULL);
	free(expect);
	expect = strjoin(real, "/a.qcow2");
	assert_string_equal(r, expect);
	free(r);
	r = NULL;
	/* Not-yet-existing directories below the root are fine. */
	assert_int_equal(confine(f, "new/dir/disk", &r), 0);
	free(r);
	r = NULL;
	/* A symlink that stays inside resolves to its target. */
	assert_int_equal(confine(f, "in/x", &r), 0);
	assert_non_null(strstr(r, "/disks/sub/x"));
	free(r);
	r = NULL;
	/* Relative paths are taken relative to the first root. */
	assert_int_equal(path_confine(f->roots, "rel.img", &r), 0);
	assert_non_null(strstr(r, "/disks/rel.img"));
}

static void test_escapes(void **state)
{
	struct test_roots *f = *state;
	char *r = NULL;
	assert_int_equal(confine(f, "../outside/x", &r), -EPERM);
	assert_int_equal(confine(f, "sub/../../outside/x", &r), -EPERM);
	assert_int_equal(confine(f, "nonexist/../../x", &r), -EPERM);
	assert_int_equal(confine(f, "out/x", &r), -EPERM); /* symlink out */
	assert_int_equal(confine(f, "out", &r), -EPERM);
	assert_int_equal(confine(f, "/etc/passwd", &r), -EPERM);	/* absolute elsewhere */
	assert_int_equal(path_confine(f->roots, f->disks, &r), -EPERM); /* the root itself */
	assert_int_equal(path_confine(f->roots, "", &r), -EINVAL);
	assert_int_equal(path_confine(f->roots, "a\nb", &r), -EINVAL);
	char *huge = malloc(PATH_MAX + 10);
	memset(huge, 'a', PATH_MAX + 9);
	huge[PATH_MAX + 9] = 0;
	assert_int_equal(path_confine(f->roots, huge, &r), -ENAMETOOLONG);
	free(huge);
	assert_null(r);
}

static void test_second_root(void **state)
{
	struct test_roots *f = *state;
	f->roots[1] = f->outside;
	_cleanup_free_ char *r = NULL;
	assert_int_equal(confine(f, "out/x", &r), 0); /* now inside the second root */
	f->roots[1] = NULL;
}

/* M6: opened below the root without following any symlink, even one that stays inside. */
static void test_open_beneath(void **state)
{
	struct test_roots *f = *state;
	_cleanup_free_ char *real = strjoin(f->disks, "/sub/a.img"),
			    *via_in = strjoin(f->disks, "/in/b.img"),
			    *via_out = strjoin(f->disks, "/out/c.img"),
			    *outside = strjoin(f->outside, "/d.img"),
			    *in_link = strjoin(f->disks, "/in");
	int fd = path_open_beneath(f->roots, real, O_RDWR | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(access(real, F_OK), 0);
	/* Already there: O_EXCL holds. */
	assert_int_equal(path_open_beneath(f->roots, real, O_RDWR | O_CREAT | O_EXCL, 0600),
			 -EEXIST);
	/* A symlinked directory on the way, inside or out: refused, nothing created. */
	fd = path_open_beneath(f->roots, via_in, O_RDWR | O_CREAT | O_EXCL, 0600);
	assert_true(fd == -ELOOP || fd == -EXDEV);
	fd = path_open_beneath(f->roots, via_out, O_RDWR | O_CREAT | O_EXCL, 0600);
	assert_true(fd == -ELOOP || fd == -EXDEV);
	_cleanup_free_ char *c_out = strjoin(f->outside, "/c.img"),
			    *b_in = strjoin(f->disks, "/sub/b.img");
	assert_int_equal(access(c_out, F_OK), -1);
	assert_int_equal(access(b_in, F_OK), -1);
	/* The final component a symlink: not followed either. */
	_cleanup_free_ char *e = strjoin(f->disks, "/sub/e.img");
	assert_int_equal(symlink(outside, e), 0);
	fd = path_open_beneath(f->roots, e, O_RDWR | O_CREAT, 0600);
	assert_true(fd == -ELOOP || fd == -EXDEV);
	assert_int_equal(access(outside, F_OK), -1);
	/* Below no root. */
	assert_int_equal(path_open_beneath(f->roots, outside, O_RDONLY, 0), -EPERM);
	/* Removal through the parent: a symlinked parent is refused, the real one works. */
	_cleanup_free_ char *real_via_in = strjoin(f->disks, "/in/a.img");
	int r = path_unlink_beneath(f->roots, real_via_in);
	assert_true(r == -ELOOP || r == -EXDEV);
	assert_int_equal(access(real, F_OK), 0);
	assert_int_equal(path_unlink_beneath(f->roots, real), 0);
	assert_int_equal(access(real, F_OK), -1);
	assert_int_equal(path_unlink_beneath(f->roots, real), -ENOENT);
}

static void test_ids(void **state)
{
	assert_true(id_is_valid("a1b2-c3_d4.e", 64));
	assert_true(id_is_valid("0b3f5d2e-6c1a-4f7e-9d2b-123456789abc", 64));
	assert_false(id_is_valid("", 64));
	assert_false(id_is_valid(".", 64));
	assert_false(id_is_valid("..", 64));
	assert_false(id_is_valid("a/b", 64));
	assert_false(id_is_valid("-rf", 64));
	assert_false(id_is_valid("%2e%2e", 64));
	assert_false(id_is_valid("abc def", 64));
	assert_false(id_is_valid("aaaaa", 4));
}

TEST_MAIN(cmocka_unit_test_setup_teardown(test_inside, setup, test_roots_teardown),
	  cmocka_unit_test_setup_teardown(test_escapes, setup, test_roots_teardown),
	  cmocka_unit_test_setup_teardown(test_second_root, setup, test_roots_teardown),
	  cmocka_unit_test_setup_teardown(test_open_beneath, setup, test_roots_teardown),
	  cmocka_unit_test(test_ids))

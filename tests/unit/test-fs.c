#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "common/fs.h"
#include "tests/unit/test-common.h"

static void test_write_and_read(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir();
	_cleanup_free_ char *p = strjoin(dir, "/desc");
	assert_int_equal(write_file_atomic(p, "hello", 5, 0600), 0);
	_cleanup_free_ char *buf = NULL;
	size_t len;
	assert_int_equal(read_file(p, 100, &buf, &len), 0);
	assert_int_equal(len, 5);
	assert_string_equal(buf, "hello");
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(test_count_entries(dir), 1);
	free(buf);
	buf = NULL;
	assert_int_equal(read_file(p, 3, &buf, &len), -EFBIG);
	assert_int_equal(read_file("/nonexistent/x", 3, &buf, &len), -ENOENT);
	rm_rf(dir);
}

static int fail_hook(const char *tmp)
{
	return -EIO;
}

static int crash_hook(const char *tmp)
{
	_exit(3); /* the process dies between writing the temp file and the rename */
}

static int dirsync_fail_hook(int dfd)
{
	(void)dfd;
	errno = EIO;
	return -1;
}

/* L10: the rename has happened when the directory fsync fails: the new content is in place, so
 * the write is reported as done (1: durability unknown), never as a failure to roll back. */
static void test_dirsync_failure_after_rename(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir();
	_cleanup_free_ char *p = strjoin(dir, "/desc");
	assert_int_equal(write_file_atomic(p, "old", 3, 0600), 0);
	fs_dirsync_hook = dirsync_fail_hook;
	int r = write_file_atomic(p, "new content", 11, 0600);
	fs_dirsync_hook = NULL;
	assert_int_equal(r, 1);
	_cleanup_free_ char *buf = NULL;
	assert_int_equal(read_file(p, 100, &buf, NULL), 0);
	assert_string_equal(buf, "new content");
	assert_int_equal(test_count_entries(dir), 1);
	rm_rf(dir);
}

static void test_interrupted_write_keeps_old(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir();
	_cleanup_free_ char *p = strjoin(dir, "/desc");
	assert_int_equal(write_file_atomic(p, "old content", 11, 0644), 0);

	/* A failing step: error returned, old content intact, no temp file left. */
	fs_atomic_hook = fail_hook;
	assert_int_equal(write_file_atomic(p, "new", 3, 0644), -EIO);
	fs_atomic_hook = NULL;
	_cleanup_free_ char *buf = NULL;
	assert_int_equal(read_file(p, 100, &buf, NULL), 0);
	assert_string_equal(buf, "old content");
	assert_int_equal(test_count_entries(dir), 1);

	/* A crash midway: old content intact. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fs_atomic_hook = crash_hook;
		write_file_atomic(p, "torn new content", 16, 0644);
		_exit(0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(WEXITSTATUS(status), 3);
	free(buf);
	buf = NULL;
	assert_int_equal(read_file(p, 100, &buf, NULL), 0);
	assert_string_equal(buf, "old content");
	rm_rf(dir);
}

static void test_mkdir_rm(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir();
	_cleanup_free_ char *deep = strjoin(dir, "/a/b/c");
	assert_int_equal(mkdir_p(deep, 0755), 0);
	assert_int_equal(mkdir_p(deep, 0755), 0);
	_cleanup_free_ char *f = test_write(deep, "file", "x");
	/* rm_rf does not follow a symlink out of the tree. */
	_cleanup_free_ char *outside = test_tmpdir();
	_cleanup_free_ char *keep = test_write(outside, "keep", "x");
	_cleanup_free_ char *link = strjoin(dir, "/a/link");
	assert_int_equal(symlink(outside, link), 0);
	assert_int_equal(rm_rf(dir), 0);
	struct stat st;
	assert_int_equal(stat(dir, &st), -1);
	assert_int_equal(stat(keep, &st), 0);
	assert_int_equal(rm_rf(dir), 0); /* gone already: fine */
	rm_rf(outside);
}

/* qemu_user: NAME or UID:GID; unset, the helpers leave files alone. */
static void test_qemu_owner(void **state)
{
	uid_t u = 1;
	gid_t g = 1;
	assert_int_equal(fs_qemu_owner_set(NULL), 0);
	assert_false(fs_qemu_owner(&u, &g));
	assert_int_equal(fs_qemu_owner_set("64107:64108"), 0);
	assert_true(fs_qemu_owner(&u, &g));
	assert_int_equal(u, 64107);
	assert_int_equal(g, 64108);
	assert_int_equal(fs_qemu_owner_set("root"), 0);
	assert_true(fs_qemu_owner(&u, &g));
	assert_int_equal(u, 0);
	assert_int_equal(g, 0);
	assert_int_equal(fs_qemu_owner_set("64107:"), -EINVAL);
	assert_false(fs_qemu_owner(NULL, NULL));
	assert_int_equal(fs_qemu_owner_set("-1:5"), -EINVAL);
	assert_int_equal(fs_qemu_owner_set("no-such-user-hostagent"), -ESRCH);

	_cleanup_free_ char *dir = test_tmpdir();
	_cleanup_free_ char *f = test_write(dir, "disk", "x");
	int fd = open(f, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(fchmod(fd, 0600), 0);
	struct stat st;
	assert_int_equal(fs_qemu_owner_set(""), 0);
	assert_int_equal(fs_give_to_qemu(fd), 0);
	assert_int_equal(fs_share_with_qemu(fd, 0640), 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600); /* unset: untouched */
	if (geteuid() == 0) {
		assert_int_equal(fs_qemu_owner_set("64107:64108"), 0);
		assert_int_equal(fs_give_to_qemu(fd), 0);
		assert_int_equal(fstat(fd, &st), 0);
		assert_int_equal(st.st_uid, 64107);
		assert_int_equal(st.st_gid, 64108);
		assert_int_equal(st.st_mode & 0777, 0600);
		assert_int_equal(fs_share_with_qemu(fd, 0640), 0);
		assert_int_equal(fstat(fd, &st), 0);
		assert_int_equal(st.st_uid, 0);
		assert_int_equal(st.st_gid, 64108);
		assert_int_equal(st.st_mode & 0777, 0640);
	}
	/* Traversal from the mode bits: a 0700 root directory stops QEMU, 0711 does not. */
	assert_int_equal(fs_qemu_owner_set("64107:64108"), 0);
	_cleanup_free_ char *sub = strjoin(dir, "/a/b");
	assert_int_equal(mkdir_p(sub, 0755), 0);
	assert_int_equal(chmod(dir, 0711), 0);
	assert_int_equal(fs_qemu_can_traverse(sub, NULL), 1);
	assert_int_equal(chmod(dir, 0700), 0);
	_cleanup_free_ char *blocker = NULL;
	assert_int_equal(fs_qemu_can_traverse(sub, &blocker), 0);
	assert_string_equal(blocker, dir);
	assert_int_equal(fs_qemu_owner_set(NULL), 0);
	assert_int_equal(fs_qemu_can_traverse(sub, NULL), 1);
	fs_qemu_owner_set(NULL);
	close(fd);
	rm_rf(dir);
}

TEST_MAIN(cmocka_unit_test(test_write_and_read), cmocka_unit_test(test_interrupted_write_keeps_old),
	  cmocka_unit_test(test_dirsync_failure_after_rename), cmocka_unit_test(test_mkdir_rm),
	  cmocka_unit_test(test_qemu_owner))

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <pwd.h>
#include <sys/stat.h>

#include "common/fs.h"
#include "common/log.h"
#include "common/macros.h"
#include "common/parse.h"

int (*fs_atomic_hook)(const char *tmp_path);
int (*fs_dirsync_hook)(int dir_fd);

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	_cleanup_free_ char *dir_buf = strdup(path), *tmp = NULL;
	if (!dir_buf)
		return -ENOMEM;
	const char *dir = dirname(dir_buf);
	if (asprintf_safe(&tmp, "%s.tmp.%d.XXXXXX", path, (int)getpid()) < 0)
		return -ENOMEM;
	_cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	int r = write_all(fd, data, len);
	if (r >= 0 && fchmod(fd, mode) < 0)
		r = negative_errno();
	if (r >= 0 && fsync(fd) < 0)
		r = negative_errno();
	if (r >= 0 && fs_atomic_hook)
		r = fs_atomic_hook(tmp);
	if (r >= 0 && rename(tmp, path) < 0)
		r = negative_errno();
	if (r < 0) {
		unlink(tmp);
		return r;
	}
	/* The rename has replaced the file: from here a failure only means the new name may not
	 * be durable yet, never that the old content is still there. */
	_cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return 1;
	if (fs_dirsync_hook ? fs_dirsync_hook(dfd) < 0 : fsync(dfd) < 0) {
		log_debug("fsync of directory %s failed after replacing %s: %m", dir, path);
		return 1;
	}
	return 0;
}

int read_file(const char *path, size_t max, char **ret, size_t *ret_len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return negative_errno();
	size_t cap = 4096, len = 0;
	_cleanup_free_ char *buf = malloc(cap + 1);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		if (len == cap) {
			if (cap > max)
				return -EFBIG;
			cap *= 2;
			char *n = realloc(buf, cap + 1);
			if (!n)
				return -ENOMEM;
			buf = n;
		}
		ssize_t k = read(fd, buf + len, cap - len);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
		if (k == 0)
			break;
		len += (size_t)k;
		if (len > max)
			return -EFBIG;
	}
	buf[len] = 0;
	if (ret_len)
		*ret_len = len;
	*ret = TAKE_PTR(buf);
	return 0;
}

int mkdir_p(const char *path, mode_t mode)
{
	_cleanup_free_ char *p = strdup(path);
	if (!p)
		return -ENOMEM;
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, mode) < 0 && errno != EEXIST)
			return negative_errno();
		*s = '/';
	}
	if (mkdir(p, mode) < 0 && errno != EEXIST)
		return negative_errno();
	struct stat st;
	if (stat(p, &st) < 0)
		return negative_errno();
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

static int rm_rf_at(int dfd, const char *name, dev_t dev)
{
	struct stat st;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : negative_errno();
	if (!S_ISDIR(st.st_mode))
		return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? negative_errno() : 0;
	if (st.st_dev != dev)
		return -EXDEV;
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return negative_errno();
	}
	int r = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (streq(de->d_name, ".") || streq(de->d_name, ".."))
			continue;
		int k = rm_rf_at(dirfd(d), de->d_name, dev);
		if (k < 0 && r == 0)
			r = k;
	}
	closedir(d);
	if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
		r = negative_errno();
	return r;
}

int rm_rf(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : negative_errno();
	return rm_rf_at(AT_FDCWD, path, st.st_dev);
}

static bool qemu_owner_set;
static uid_t qemu_uid;
static gid_t qemu_gid;

int fs_qemu_owner_set(const char *spec)
{
	qemu_owner_set = false;
	if (!spec || !*spec)
		return 0;
	const char *colon = strchr(spec, ':');
	int u, g;
	if (colon) {
		_cleanup_free_ char *us = strndup(spec, (size_t)(colon - spec));
		if (!us)
			return -ENOMEM;
		if (parse_int(us, 0, INT32_MAX, &u) < 0 ||
		    parse_int(colon + 1, 0, INT32_MAX, &g) < 0)
			return -EINVAL;
	} else {
		struct passwd pw, *res = NULL;
		char buf[4096];
		int r = getpwnam_r(spec, &pw, buf, sizeof(buf), &res);
		if (r != 0)
			return -r;
		if (!res)
			return -ESRCH;
		u = (int)pw.pw_uid;
		g = (int)pw.pw_gid;
	}
	qemu_uid = (uid_t)u;
	qemu_gid = (gid_t)g;
	qemu_owner_set = true;
	return 0;
}

bool fs_qemu_owner(uid_t *ret_uid, gid_t *ret_gid)
{
	if (qemu_owner_set) {
		if (ret_uid)
			*ret_uid = qemu_uid;
		if (ret_gid)
			*ret_gid = qemu_gid;
	}
	return qemu_owner_set;
}

int fs_give_to_qemu(int fd)
{
	if (!qemu_owner_set)
		return 0;
	return fchown(fd, qemu_uid, qemu_gid) < 0 ? negative_errno() : 0;
}

int fs_share_with_qemu(int fd, mode_t mode)
{
	if (!qemu_owner_set)
		return 0;
	if (fchown(fd, 0, qemu_gid) < 0 || fchmod(fd, mode) < 0)
		return negative_errno();
	return 0;
}

int fs_qemu_can_traverse(const char *path, char **ret_blocker)
{
	if (!qemu_owner_set || qemu_uid == 0)
		return 1;
	_cleanup_free_ char *p = strdup(path);
	if (!p)
		return -ENOMEM;
	size_t n = strlen(p);
	for (size_t i = 1; i <= n; i++) {
		if (p[i] != '/' && p[i] != 0)
			continue;
		char c = p[i];
		p[i] = 0;
		struct stat st;
		if (stat(p, &st) < 0)
			return negative_errno();
		bool ok = st.st_uid == qemu_uid	  ? (st.st_mode & S_IXUSR)
			  : st.st_gid == qemu_gid ? (st.st_mode & S_IXGRP)
						  : (st.st_mode & S_IXOTH);
		if (!ok) {
			if (ret_blocker && !(*ret_blocker = strdup(p)))
				return -ENOMEM;
			return 0;
		}
		p[i] = c;
	}
	return 1;
}

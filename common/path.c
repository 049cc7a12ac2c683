#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/macros.h"
#include "common/path.h"

bool id_is_valid(const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > max || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* True when path lies strictly below root (both absolute and resolved). */
static bool path_is_below(const char *root, const char *path)
{
	size_t n = strlen(root);
	while (n > 1 && root[n - 1] == '/')
		n--;
	if (n == 1 && root[0] == '/')
		return path[0] == '/' && path[1] != 0;
	return strneq(root, path, n) && path[n] == '/' && path[n + 1] != 0;
}

/* realpath() of the longest existing prefix, then the rest appended component by component. */
static int resolve(const char *path, char **ret)
{
	_cleanup_free_ char *p = strdup(path);
	if (!p)
		return -ENOMEM;
	size_t len = strlen(p);
	char *cut = p + len;
	for (;;) {
		char saved = *cut;
		*cut = 0;
		char *real = realpath(*p ? p : "/", NULL);
		*cut = saved;
		if (real) {
			_cleanup_free_ char *base = real;
			const char *rest = cut;
			/* Every remaining component must be plain; ".." could climb out later. */
			_cleanup_free_ char *tail = strdup(rest);
			if (!tail)
				return -ENOMEM;
			char *save = NULL;
			_cleanup_free_ char *out = strdup(base);
			if (!out)
				return -ENOMEM;
			for (char *c = strtok_r(tail, "/", &save); c;
			     c = strtok_r(NULL, "/", &save)) {
				if (streq(c, ".") || streq(c, ".."))
					return -EPERM;
				char *n = strjoin(out, streq(out, "/") ? "" : "/", c);
				if (!n)
					return -ENOMEM;
				free(out);
				out = n;
			}
			*ret = TAKE_PTR(out);
			return 0;
		}
		if (errno != ENOENT && errno != ENOTDIR)
			return negative_errno();
		if (cut == p)
			return -ENOENT;
		/* Step back to the slash before the last component tried. */
		char *sl = cut - 1;
		while (sl > p && *sl != '/')
			sl--;
		cut = sl;
	}
}

int path_confine(char *const *roots, const char *path, char **ret)
{
	if (isempty(path) || !roots || !roots[0])
		return -EINVAL;
	size_t n = strlen(path);
	if (n >= PATH_MAX)
		return -ENAMETOOLONG;
	if (strpbrk(path, "\n\r"))
		return -EINVAL;
	_cleanup_free_ char *abs = NULL;
	if (path[0] == '/')
		abs = strdup(path);
	else
		abs = strjoin(roots[0], "/", path);
	if (!abs)
		return -ENOMEM;
	_cleanup_free_ char *resolved = NULL;
	int r = resolve(abs, &resolved);
	if (r < 0)
		return r;
	STRV_FOREACH (root, (char **)roots) {
		_cleanup_free_ char *rr = realpath(*root, NULL);
		if (!rr)
			continue;
		if (path_is_below(rr, resolved)) {
			*ret = TAKE_PTR(resolved);
			return 0;
		}
	}
	return -EPERM;
}

/* The descriptor of the root that path lies below, and the rest of path relative to it. */
static int open_root(char *const *roots, const char *path, const char **ret_rel)
{
	if (isempty(path) || path[0] != '/' || !roots)
		return -EINVAL;
	STRV_FOREACH (root, (char **)roots) {
		_cleanup_free_ char *rr = realpath(*root, NULL);
		if (!rr || !path_is_below(rr, path))
			continue;
		size_t n = strlen(rr);
		*ret_rel = path + (streq(rr, "/") ? 1 : n + 1);
		int fd = open(rr, O_PATH | O_DIRECTORY | O_CLOEXEC);
		return fd < 0 ? -errno : fd;
	}
	return -EPERM;
}

/* openat() of rel below dirfd, one component at a time, none of them a symlink, "." or "..". */
static int walk_beneath(int dirfd, const char *rel, int flags, mode_t mode)
{
	_cleanup_free_ char *copy = strdup(rel);
	if (!copy)
		return -ENOMEM;
	_cleanup_close_ int cur = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
	if (cur < 0)
		return -errno;
	char *p = copy;
	for (;;) {
		char *slash = strchr(p, '/');
		if (slash)
			*slash = 0;
		if (!*p || streq(p, ".") || streq(p, ".."))
			return -EXDEV;
		if (!slash) {
			int fd = openat(cur, p, flags | O_NOFOLLOW | O_CLOEXEC, mode);
			return fd < 0 ? -errno : fd;
		}
		int next = openat(cur, p, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0)
			return errno == ENOTDIR ? -ELOOP : -errno;
		close(cur);
		cur = next;
		p = slash + 1;
	}
}

static int open_below(int dirfd, const char *rel, int flags, mode_t mode)
{
	struct open_how how = {
	    .flags = (uint64_t)(flags | O_CLOEXEC),
	    .mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
	    .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
	if (fd >= 0)
		return (int)fd;
	if (errno != ENOSYS)
		return -errno;
	return walk_beneath(dirfd, rel, flags, mode);
}

int path_open_beneath(char *const *roots, const char *path, int flags, mode_t mode)
{
	const char *rel = NULL;
	_cleanup_close_ int root = open_root(roots, path, &rel);
	if (root < 0)
		return root;
	return open_below(root, rel, flags, mode);
}

int path_unlink_beneath(char *const *roots, const char *path)
{
	const char *rel = NULL;
	_cleanup_close_ int root = open_root(roots, path, &rel);
	if (root < 0)
		return root;
	const char *base = strrchr(rel, '/');
	_cleanup_close_ int parent = -1;
	if (base) {
		_cleanup_free_ char *dir = strndup(rel, (size_t)(base - rel));
		if (!dir)
			return -ENOMEM;
		parent = open_below(root, dir, O_PATH | O_DIRECTORY, 0);
		if (parent < 0)
			return parent;
		base++;
	} else
		base = rel;
	if (!*base || streq(base, ".") || streq(base, ".."))
		return -EINVAL;
	return unlinkat(base == rel ? root : parent, base, 0) < 0 ? -errno : 0;
}

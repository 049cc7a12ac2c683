#include <limits.h>
#include <stdlib.h>

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

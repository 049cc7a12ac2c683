/* Path confinement: every path that comes from a request must resolve inside a root. */
#pragma once

#include <stdbool.h>

/* Resolves path (absolute, or relative to roots[0]) following symlinks of every existing
 * component; components that do not exist yet may not be "." or "..". On success *ret is the
 * resolved absolute path, which lies strictly below one of roots (NULL-terminated).
 * -EINVAL: empty, overlong, NUL/newline inside; -EPERM: resolves outside every root. */
int path_confine(char *const *roots, const char *path, char **ret);
/* True when s is a safe single path component / identifier: 1..max bytes of [A-Za-z0-9._-],
 * not starting with '.' or '-'. */
bool id_is_valid(const char *s, size_t max);

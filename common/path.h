/* Path confinement: every path that comes from a request must resolve inside a root. */
#pragma once

#include <stdbool.h>

/* Resolves path (absolute, or relative to roots[0]) following symlinks of every existing
 * component; components that do not exist yet may not be "." or "..". On success *ret is the
 * resolved absolute path, which lies strictly below one of roots (NULL-terminated).
 * -EINVAL: empty, overlong, NUL/newline inside; -EPERM: resolves outside every root. */
int path_confine(char *const *roots, const char *path, char **ret);
/* Opens path, an absolute resolved path below one of roots (as path_confine() returns it),
 * relative to a descriptor of its root, never following a symlink on the way nor leaving the
 * root (M6 of the security review: a directory swapped for a symlink between the check and the
 * use cannot move the file elsewhere): openat2() with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
 * RESOLVE_NO_MAGICLINKS, or, on kernels without it, a walk of O_NOFOLLOW directory opens.
 * flags and mode as for openat() (O_CLOEXEC is added). Returns the descriptor, -ELOOP or
 * -EXDEV when a symlink or an escape is in the way, -EPERM when path is below no root, or
 * another negative errno. */
int path_open_beneath(char *const *roots, const char *path, int flags, mode_t mode);
/* Removes the file path (below one of roots, as above) through its parent directory opened the
 * same way: unlinkat() never follows a swapped-in symlink out of the roots. */
int path_unlink_beneath(char *const *roots, const char *path);

/* True when s is a safe single path component / identifier: 1..max bytes of [A-Za-z0-9._-],
 * not starting with '.' or '-'. */
bool id_is_valid(const char *s, size_t max);
/* The longest id issued by the region that is accepted (task, zone, wire, storage, server;
 * Cloudpods ids are 36-character UUIDs). Guest ids name files and domains: GUEST_ID_MAX
 * (agent/desc.h). */
#define REGION_ID_MAX 128

/* Filesystem helpers: atomic replace, bounded reads, directory creation and removal. */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/* Replaces path with data: temp file in the same directory, fsync, rename, directory fsync.
 * A crash at any point leaves either the old or the new content, never a mix. Returns 0, or 1
 * when the new content is in place but the directory fsync failed (the rename may not survive
 * a crash): the write happened, and callers must not roll back as if it had not. */
int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* Reads at most max bytes; -EFBIG when the file is larger. The buffer is NUL-terminated. */
int read_file(const char *path, size_t max, char **ret, size_t *ret_len);
int mkdir_p(const char *path, mode_t mode);
/* Removes a tree without following symlinks and without crossing mount points. */
int rm_rf(const char *path);
/* Test seam: when set, called between the temp-file write and the rename. */
extern int (*fs_atomic_hook)(const char *tmp_path);
/* Test seam: when set, replaces the directory fsync after the rename. */
extern int (*fs_dirsync_hook)(int dir_fd);

/* Filesystem helpers: atomic replace, bounded reads, directory creation and removal. */
#pragma once

#include <stdbool.h>
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

/* The user and group QEMU runs as (config qemu_user; libvirt's qemu.conf user/group). libvirt
 * runs with dynamic_ownership = 0, so it never chowns a disk: the agent gives QEMU exactly the
 * files it made for a guest. Unset (the default, QEMU as root): every call below is a no-op. */
/* "NAME" (its uid and primary group) or "UID:GID"; "" or NULL unsets. */
int fs_qemu_owner_set(const char *spec);
bool fs_qemu_owner(uid_t *ret_uid, gid_t *ret_gid);
/* A file QEMU reads and writes (a guest disk): owned by QEMU's user and group. */
int fs_give_to_qemu(int fd);
/* A file QEMU only reads (0640) or a directory it only traverses (0710): root-owned, group
 * QEMU's, that mode. */
int fs_share_with_qemu(int fd, mode_t mode);
/* Whether QEMU's user can traverse every directory from / down to path (path included), from
 * the mode bits (owner, group, other; ACLs and supplementary groups are not read): 1 yes, 0 no
 * with *ret_blocker the first directory in the way (to free), negative errno when a component
 * cannot be inspected. Always 1 when unset. */
int fs_qemu_can_traverse(const char *path, char **ret_blocker);

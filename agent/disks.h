/* Guest disk files: created with qemu-img (no shell) at paths confined to the disk roots, and
 * removed with the guest. Runs blocking commands: call it from the worker pool. */
#pragma once

#include "agent/desc.h"

/* Creates every disk of d: qcow2 (optionally on its backing image_path, "-b IMAGE -F FMT") or
 * raw, of size_mb MiB (a backed disk without a size takes the image's size).
 * Every path is confined to roots again right before use (a symlink swapped in since parsing is
 * refused with -EPERM). A disk file is claimed with O_CREAT|O_EXCL before qemu-img writes it, so
 * nothing that exists is ever overwritten.
 * Re-preparing is idempotent: an existing regular file is accepted as the same disk when
 * `qemu-img info` reports the same format, the same virtual size (when size_mb is set) and the
 * same backing file (or none); anything else at the path is -EEXIST. With existing (one flag
 * per disk) only the disks flagged are accepted that way: a file that appears at the path of
 * an unflagged disk (made by someone else since the caller looked) is -EEXIST, never adopted.
 * All or nothing: on failure the disks created by this call are removed (pre-existing ones are
 * left alone) and the error is returned; *ret_error (optional) then names the disk and carries
 * qemu-img's message. Errors: -EPERM (outside the roots), -EEXIST, -ENOENT (backing image or
 * parent directory missing), -EMEDIUMTYPE (backing image neither qcow2 nor raw, or itself
 * backed), -EIO (qemu-img failed), -ETIMEDOUT, -ENOMEM. */
int disks_prepare(const struct guest_desc *d, char *const *roots, const bool *existing,
		  char **ret_error);

/* Removes the disk files of d (a missing file is fine). Backing images are never touched.
 * Paths that do not resolve inside roots any more are left alone and reported (-EPERM); the
 * other disks are still removed. Returns 0 or the first error. */
int disks_remove(const struct guest_desc *d, char *const *roots);

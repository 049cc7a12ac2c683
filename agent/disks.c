#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <sys/stat.h>

#include "agent/disks.h"
#include "agent/imagecheck.h"
#include "agent/qemuimg.h"
#include "common/fs.h"
#include "common/path.h"
#include "common/spawn.h"

#define MIB (1024 * 1024)

/* The path must still resolve to itself inside the roots (no symlink swapped in). */
static int reconfine(char *const *roots, const char *path)
{
	_cleanup_free_ char *again = NULL;
	int r = path_confine(roots, path, &again);
	if (r < 0)
		return r == -ENOMEM ? r : -EPERM;
	return streq(again, path) ? 0 : -EPERM;
}

/* Probes the backing image: returns its format ("qcow2" or "raw"). */
static int backing_format(const struct guest_disk *k, char *const *roots, const char **ret,
			  char **ret_error)
{
	int r = reconfine(roots, k->image_path);
	if (r < 0)
		return error_set(ret_error, r, "disk %s: image_path %s is outside the disk roots",
				 k->disk_id, k->image_path);
	struct stat st;
	if (stat(k->image_path, &st) < 0)
		return error_set(ret_error, negative_errno(), "disk %s: image_path %s: %m",
				 k->disk_id, k->image_path);
	if (!S_ISREG(st.st_mode))
		return error_set(ret_error, -EMEDIUMTYPE,
				 "disk %s: image_path %s is not a regular file", k->disk_id,
				 k->image_path);
	/* A base image the agent keeps (the image cache), not guest content: its format is
	 * probed, then checked as that format below. */
	_cleanup_(qemu_img_info_done) struct qemu_img_info info = {};
	_cleanup_free_ char *err = NULL;
	r = qemu_img_info(k->image_path, NULL, &info, &err);
	if (r < 0)
		return error_set(ret_error, r, "disk %s: cannot inspect image %s: %s", k->disk_id,
				 k->image_path, err ? qemu_img_first_line(err) : strerror(-r));
	/* Images are leaves: a chain could point anywhere on the host. */
	if (info.backing)
		return error_set(ret_error, -EMEDIUMTYPE,
				 "disk %s: image %s has a backing file itself (chains are refused)",
				 k->disk_id, k->image_path);
	/* The announced format checked again as untrusted: an external data file (H2 of the
	 * security review) or a protocol filename is refused too. */
	if (streq(info.format, "qcow2") || streq(info.format, "raw")) {
		struct image_info ii;
		_cleanup_free_ char *why = NULL;
		r = image_inspect(k->image_path, info.format, &ii, &why);
		if (r < 0)
			return error_set(ret_error, r == -ENOMEM ? r : -EMEDIUMTYPE, "disk %s: %s",
					 k->disk_id, strempty(why));
	}
	if (streq(info.format, "qcow2"))
		*ret = "qcow2";
	else if (streq(info.format, "raw"))
		*ret = "raw";
	else
		return error_set(ret_error, -EMEDIUMTYPE,
				 "disk %s: image %s has unsupported format %s", k->disk_id,
				 k->image_path, info.format);
	return 0;
}

/* An existing file at the disk's path: 0 when it is this disk, -EEXIST otherwise. */
static int check_existing(const struct guest_disk *k, char **ret_error)
{
	struct stat st;
	if (lstat(k->path, &st) < 0)
		return negative_errno();
	if (!S_ISREG(st.st_mode))
		return error_set(ret_error, -EEXIST, "disk %s: %s exists and is not a regular file",
				 k->disk_id, k->path);
	/* The guest's own disk: read as the format the descriptor names, never probed (L4). */
	_cleanup_(qemu_img_info_done) struct qemu_img_info info = {};
	_cleanup_free_ char *err = NULL;
	int r = qemu_img_info(k->path, disk_format_to_string(k->format), &info, &err);
	if (r < 0)
		return error_set(ret_error, -EEXIST,
				 "disk %s: %s exists and cannot be inspected: %s", k->disk_id,
				 k->path, err ? qemu_img_first_line(err) : strerror(-r));
	if (!streq(info.format, disk_format_to_string(k->format)) ||
	    (k->size_mb > 0 && info.virtual_size != k->size_mb * MIB) ||
	    !streq_ptr(info.backing, k->image_path))
		return error_set(ret_error, -EEXIST,
				 "disk %s: %s exists with different format, size or backing file",
				 k->disk_id, k->path);
	return 0;
}

/* Creates one disk; returns 1 when created, 0 when the same disk already existed. */
static int create_one(const struct guest_disk *k, char *const *roots, bool may_exist,
		      char **ret_error)
{
	int r = reconfine(roots, k->path);
	if (r < 0)
		return error_set(ret_error, r, "disk %s: %s is outside the disk roots", k->disk_id,
				 k->path);

	const char *bfmt = NULL;
	if (k->image_path && (r = backing_format(k, roots, &bfmt, ret_error)) < 0)
		return r;

	/* Claim the path: never write over something that exists. Opened below its root without
	 * following any symlink (M6), and qemu-img writes that very file. */
	_cleanup_close_ int fd =
	    path_open_beneath(roots, k->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		if (fd == -ELOOP || fd == -EXDEV || fd == -EPERM)
			return error_set(
			    ret_error, -EPERM,
			    "disk %s: %s is outside the disk roots (a symlink on the way)",
			    k->disk_id, k->path);
		if (fd != -EEXIST)
			return error_set(ret_error, fd, "disk %s: cannot create %s: %s", k->disk_id,
					 k->path, strerror(-fd));
		if (!may_exist)
			return error_set(ret_error, -EEXIST,
					 "disk %s: %s was created by someone else meanwhile",
					 k->disk_id, k->path);
		r = check_existing(k, ret_error);
		return r < 0 ? r : 0;
	}

	/* QEMU's own file (qemu_user): libvirt chowns nothing (dynamic_ownership = 0). */
	r = fs_give_to_qemu(fd);
	if (r < 0) {
		(void)path_unlink_beneath(roots, k->path);
		return error_set(ret_error, r, "disk %s: cannot give %s to QEMU's user: %s",
				 k->disk_id, k->path, strerror(-r));
	}
	char size[32];
	snprintf(size, sizeof(size), "%" PRId64 "M", k->size_mb);
	_cleanup_free_ char *err = NULL;
	r = qemu_img_create_fd(fd, disk_format_to_string(k->format), k->image_path, bfmt,
			       k->size_mb > 0 ? size : NULL, &err);
	if (r < 0) {
		(void)path_unlink_beneath(roots, k->path);
		return error_set(ret_error, r, "disk %s: qemu-img create failed: %s", k->disk_id,
				 err ? qemu_img_first_line(err) : strerror(-r));
	}
	return 1;
}

int disks_prepare(const struct guest_desc *d, char *const *roots, const bool *existing,
		  char **ret_error)
{
	if (!d || !roots || !roots[0])
		return -EINVAL;
	_cleanup_free_ bool *created = calloc(d->n_disks + 1, sizeof(bool));
	if (!created)
		return -ENOMEM;
	_cleanup_free_ char *err = NULL;
	for (size_t i = 0; i < d->n_disks; i++) {
		int r = create_one(&d->disks[i], roots, !existing || existing[i], &err);
		if (r < 0) {
			for (size_t k = 0; k < i; k++)
				if (created[k])
					(void)path_unlink_beneath(roots, d->disks[k].path);
			if (ret_error)
				*ret_error = TAKE_PTR(err);
			return r;
		}
		created[i] = r > 0;
	}
	return 0;
}

int disks_remove(const struct guest_desc *d, char *const *roots)
{
	if (!d || !roots || !roots[0])
		return -EINVAL;
	int ret = 0;
	for (size_t i = 0; i < d->n_disks; i++) {
		int r = reconfine(roots, d->disks[i].path);
		if (r == 0)
			r = path_unlink_beneath(roots, d->disks[i].path);
		if (r == -ENOENT)
			r = 0;
		if (r < 0 && ret == 0)
			ret = r;
	}
	return ret;
}

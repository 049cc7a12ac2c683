#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "agent/claims.h"
#include "agent/diskops.h"
#include "agent/diskreq.h"
#include "agent/imagecache.h"
#include "agent/imagecheck.h"
#include "agent/qemuimg.h"
#include "agent/storage.h"
#include "agent/tasks.h"
#include "agent/virt.h"
#include "common/config.h"
#include "common/log.h"
#include "common/fs.h"
#include "common/macros.h"
#include "common/path.h"
#include "common/spawn.h"

#define MIB (1024LL * 1024)

static const char *const op_names[_DISK_OP_MAX] = {
    [DISK_OP_CREATE] = "create",
    [DISK_OP_DELETE] = "delete",
    [DISK_OP_RESIZE] = "resize",
    [DISK_OP_STATUS] = "status",
};

DEFINE_STRING_TABLE_TO(disk_op, enum disk_op, op_names, "unknown")

struct disk_job {
	enum disk_op op;
	op_done_fn cb;
	void *userdata;
	char *disk_id, *root, *cache_dir, *path, *servers_path;
	json_t *args;		 /* the request body */
	struct disk_request req; /* parsed from args (create, resize) */
	virConnectPtr conn;
	struct claims *claims; /* disk paths owned by guests (agent/claims.h) */
	bool ran;	       /* false: dropped by the pool */
	struct op_reply reply;
};

static void job_free(struct disk_job *j)
{
	free(j->disk_id);
	free(j->root);
	free(j->cache_dir);
	free(j->path);
	free(j->servers_path);
	json_decref(j->args);
	op_reply_clear(&j->reply);
	virt_conn_unref(j->conn);
	free(j);
}

_printf_(3, 4) static void job_fail(struct disk_job *j, int error, const char *fmt, ...)
{
	_cleanup_free_ char *what = NULL;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&what, fmt, ap) < 0)
		what = NULL;
	va_end(ap);
	(void)op_reply_fail(&j->reply, error, "disk %s: %s", j->disk_id, strempty(what));
}

/* Format, virtual size and backing file of one of our own disks (-U: a running guest may hold
 * it). format NULL probes it. */
static int disk_info(const char *path, const char *format, char *ret_format, int64_t *ret_size,
		     char **ret_backing, char **ret_err)
{
	_cleanup_(qemu_img_info_done) struct qemu_img_info i = {};
	int r = qemu_img_info(path, format, &i, ret_err);
	if (r < 0)
		return r;
	snprintf(ret_format, 16, "%s", i.format);
	*ret_size = i.virtual_size;
	if (ret_backing)
		*ret_backing = TAKE_PTR(i.backing);
	return 0;
}

/* The format a disk was created with, recorded on the file itself (an extended attribute): a
 * guest can write any header into its raw disk, so the format of a disk is never probed once
 * it is known. Best effort: a filesystem without user xattrs records nothing. */
#define DISK_FORMAT_XATTR "user.hostagent.format"

static void disk_format_record(const char *path, const char *format)
{
	if (setxattr(path, DISK_FORMAT_XATTR, format, strlen(format), 0) < 0)
		log_debug("Disk format not recorded path=%s: %m", path);
}

/* 1 with ret_format set (qcow2 or raw), 0 when nothing is recorded. */
static int disk_format_recorded(const char *path, char ret_format[16])
{
	char buf[16];
	ssize_t n = lgetxattr(path, DISK_FORMAT_XATTR, buf, sizeof(buf) - 1);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	if (!streq(buf, "qcow2") && !streq(buf, "raw"))
		return -EINVAL;
	snprintf(ret_format, 16, "%s", buf);
	return 1;
}

static void reply_disk(struct disk_job *j, const char *format, int64_t bytes)
{
	op_reply_ok(&j->reply, json_pack("{s:s,s:I,s:s,s:s}", "disk_id", j->disk_id, "disk_size",
					 (json_int_t)((bytes + MIB - 1) / MIB), "format", format,
					 "disk_path", j->path));
}

/* Removes <root>/<disk_id> through the root's descriptor (M6; disk_id is one component). */
static int unlinkat_root(struct disk_job *j)
{
	_cleanup_close_ int root = open(j->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		return -errno;
	return unlinkat(root, j->disk_id, 0) < 0 ? -errno : 0;
}

static void do_create(struct disk_job *j)
{
	/* The body was checked when the request came (disk_request_parse). A size of 0 with a
	 * template: the overlay gets the template's virtual size, and the reply's disk_size
	 * becomes the disk record's size. */
	const char *format = j->req.format, *image_id = j->req.image_id;
	int64_t size_mb = j->req.size_mb;
	_cleanup_free_ char *image = NULL;
	char bfmt[16] = "";
	struct image_info ii = {};
	if (image_id) {
		/* An overlay on a cached template: always qcow2, whatever was asked. */
		if (asprintf(&image, "%s/%s", j->cache_dir, image_id) < 0)
			return job_fail(j, -ENOMEM, "out of memory");
		if (access(image, F_OK) < 0)
			return job_fail(j, -ENOENT, "image %s is not in the cache %s", image_id,
					j->cache_dir);
		int r = imagecache_read_format(j->cache_dir, image_id, bfmt);
		if (r < 0)
			return job_fail(j, -EEXIST, "image %s has no valid description in %s (%s)",
					image_id, j->cache_dir, strerror(-r));
		_cleanup_free_ char *err = NULL;
		r = image_inspect(image, bfmt, &ii, &err);
		if (r < 0)
			return job_fail(j, -EEXIST, "cached image %s refused: %s", image_id,
					strempty(err));
	}
	int64_t bytes = MAX(size_mb * MIB, ii.virtual_size);

	/* Claim the path: nothing that exists is written over. */
	_cleanup_close_ int fd =
	    open(j->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		if (errno != EEXIST)
			return job_fail(j, -EIO, "cannot create %s: %m", j->path);
		/* A retried create of the same disk is answered as the first one. */
		char efmt[16];
		int64_t esize;
		_cleanup_free_ char *eback = NULL;
		struct stat st;
		if (lstat(j->path, &st) == 0 && S_ISREG(st.st_mode) &&
		    disk_info(j->path, format, efmt, &esize, &eback, NULL) == 0 &&
		    streq(efmt, format) && esize == bytes && streq_ptr(eback, image))
			return reply_disk(j, format, esize);
		return job_fail(j, -EEXIST, "%s already exists and is a different disk", j->path);
	}
	/* QEMU's own file (qemu_user): libvirt chowns nothing (dynamic_ownership = 0). */
	int r = fs_give_to_qemu(fd);
	if (r < 0) {
		(void)unlinkat_root(j);
		return job_fail(j, -EIO, "cannot give %s to QEMU's user: %s", j->path,
				strerror(-r));
	}
	char size[32];
	snprintf(size, sizeof(size), "%" PRId64, bytes);
	/* qemu-img writes the file opened above, whatever its name points at by now (M6). */
	_cleanup_free_ char *err = NULL;
	r = qemu_img_create_fd(fd, format, image, bfmt, size, &err);
	if (r < 0) {
		(void)unlinkat_root(j);
		return job_fail(j, r == -ENOSPC ? -ENOSPC : -EIO, "qemu-img create failed: %s",
				err ? qemu_img_first_line(err) : strerror(-r));
	}
	disk_format_record(j->path, format);
	log_debug("Disk created path=%s format=%s bytes=%" PRId64 " backing=%s", j->path, format,
		  bytes, strempty(image));
	reply_disk(j, format, bytes);
}

static void do_delete(struct disk_job *j)
{
	int r;
	struct stat st;
	if (lstat(j->path, &st) < 0) {
		if (errno == ENOENT) {
			op_reply_ok(&j->reply, json_object());
			return;
		}
		return job_fail(j, -EIO, "cannot inspect %s: %m", j->path);
	}
	if (S_ISDIR(st.st_mode))
		return job_fail(j, -EEXIST, "%s is a directory, not a disk", j->path);
	/* M1: a disk some guest on this host still names is that guest's. A claim of a guest
	 * whose workspace is gone (removed behind the agent's back) is stale. */
	_cleanup_free_ char *owner = j->claims ? claims_owner(j->claims, j->path) : NULL;
	if (owner) {
		_cleanup_free_ char *desc = strjoin(strempty(j->servers_path), "/", owner, "/desc");
		if (desc && access(desc, F_OK) == 0)
			return job_fail(j, -EEXIST, "%s is a disk of guest %s, which still exists",
					j->path, owner);
		claims_release(j->claims, owner, NULL, 0);
	}
	r = unlinkat_root(j);
	if (r < 0 && r != -ENOENT)
		return job_fail(j, -EIO, "cannot remove %s: %s", j->path, strerror(-r));
	op_reply_ok(&j->reply, json_object());
}

static void do_resize(struct disk_job *j)
{
	int64_t size_mb = j->req.size_mb;
	const char *sid = j->req.server_id;
	struct stat st;
	if (lstat(j->path, &st) < 0 || !S_ISREG(st.st_mode))
		return job_fail(j, -ENOENT, "%s does not exist", j->path);
	char format[16] = "", recorded[16] = "";
	int64_t cur;
	_cleanup_free_ char *err = NULL;
	/* The resize request names no format: the one recorded when the disk routes made the file
	 * (a guest may since have written a qcow2 header into its raw disk). Only a disk made
	 * elsewhere, with nothing recorded, is probed, and only qcow2 or raw is resized. */
	int r = disk_format_recorded(j->path, recorded);
	if (r < 0)
		return job_fail(j, -EEXIST, "%s has an invalid recorded format", j->path);
	if (r == 0)
		log_warning("Disk format not recorded, probing path=%s", j->path);
	r = disk_info(j->path, r ? recorded : NULL, format, &cur, NULL, &err);
	if (r < 0)
		return job_fail(j, -EIO, "cannot inspect %s: %s", j->path,
				err ? qemu_img_first_line(err) : strerror(-r));
	if (!streq(format, "qcow2") && !streq(format, "raw"))
		return job_fail(j, -EEXIST, "%s is a %s disk; only qcow2 and raw are resized",
				j->path, format);
	int64_t bytes = size_mb * MIB;
	if (bytes < cur)
		return job_fail(j, -EINVAL,
				"shrinking is refused: %s is %" PRId64 " MB, asked for %" PRId64
				" MB",
				j->path, (int64_t)((cur + MIB - 1) / MIB), size_mb);
	if (bytes == cur)
		return reply_disk(j, format, cur);
	if (sid) {
		r = virt_block_resize(j->conn, sid, j->path, (unsigned long long)bytes, &err);
		if (r == 0)
			return reply_disk(j, format, bytes);
		if (r != -ESRCH)
			return job_fail(j, -EIO, "online resize through guest %s failed: %s", sid,
					strempty(err));
	}
	/* Offline: qemu-img takes the image's write lock, so a disk some QEMU still uses is
	 * refused rather than changed under it. */
	char size[32];
	snprintf(size, sizeof(size), "%" PRId64, bytes);
	const char *argv[] = {"qemu-img", "resize", "-q", "-f", format, "--", j->path, size, NULL};
	free(err);
	err = NULL;
	r = qemu_img_run(argv, NULL, &err);
	if (r < 0)
		return job_fail(j, -EIO, "qemu-img resize failed: %s",
				err ? qemu_img_first_line(err) : strerror(-r));
	reply_disk(j, format, bytes);
}

static void disk_work(void *userdata)
{
	struct disk_job *j = userdata;
	j->ran = true;
	switch (j->op) {
	case DISK_OP_CREATE:
		return do_create(j);
	case DISK_OP_DELETE:
		return do_delete(j);
	case DISK_OP_RESIZE:
		return do_resize(j);
	case DISK_OP_STATUS: {
		struct stat st;
		bool exist = lstat(j->path, &st) == 0 && S_ISREG(st.st_mode);
		op_reply_ok(&j->reply, json_pack("{s:s}", "status", exist ? "exist" : "not_exist"));
		return;
	}
	case _DISK_OP_MAX:
		break;
	}
	job_fail(j, -EINVAL, "unknown disk operation");
}

static void disk_done(void *userdata)
{
	struct disk_job *j = userdata;
	if (!j->ran)
		job_fail(j, -ESHUTDOWN, "the agent is shutting down");
	else if (j->reply.error == 0 && !j->reply.body)
		job_fail(j, -ENOMEM, "out of memory");
	if (j->op != DISK_OP_STATUS)
		log_kv(j->reply.error < 0 ? LOG_WARNING : LOG_INFO, "Disk operation finished", "op",
		       disk_op_to_string(j->op), "disk_id", j->disk_id, "path", j->path, "result",
		       j->reply.error < 0 ? strempty(j->reply.message) : "ok", NULL);
	j->cb(&j->reply, j->userdata);
	job_free(j);
}

struct diskops {
	const struct config *cfg; /* the agent's */
	struct tasks *tasks;
	struct virt *virt;
	struct storages *storages;
	struct claims *claims;
};

int diskops_new(const struct config *cfg, struct tasks *tasks, struct virt *virt,
		struct storages *storages, struct claims *claims, struct diskops **ret)
{
	struct diskops *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	*d = (struct diskops){cfg, tasks, virt, storages, claims};
	*ret = d;
	return 0;
}

struct diskops *diskops_free(struct diskops *d)
{
	free(d);
	return NULL;
}

int diskops_submit(struct diskops *d, enum disk_op op, const char *storage_id, const char *disk_id,
		   json_t *args, op_done_fn cb, void *userdata, char **ret_message)
{
	const struct storage *st = storages_find(d->storages, storage_id);
	if (!st)
		return error_set(ret_message, -ENOENT, "storage %s is not on this host",
				 storage_id);
	if (!id_is_valid(disk_id, 128) || streq(disk_id, "image_cache"))
		return error_set(ret_message, -EINVAL, "invalid disk id %s", disk_id);
	struct disk_job *j = calloc(1, sizeof(*j));
	if (!j)
		return error_set(ret_message, -ENOMEM, "out of memory");
	j->op = op;
	j->cb = cb;
	j->userdata = userdata;
	j->disk_id = strdup(disk_id);
	j->root = strdup(st->root);
	j->cache_dir = strdup(st->cache_dir);
	j->claims = d->claims;
	j->servers_path = strdup(d->cfg->servers_path);
	j->args = args ? json_deep_copy(args) : json_object();
	if (!j->disk_id || !j->root || !j->cache_dir || !j->args ||
	    asprintf(&j->path, "%s/%s", st->root, disk_id) < 0) {
		j->path = NULL;
		job_free(j);
		return error_set(ret_message, -ENOMEM, "out of memory");
	}
	/* A bad body is refused now, before anything is queued. */
	if (op == DISK_OP_CREATE || op == DISK_OP_RESIZE) {
		_cleanup_free_ char *err = NULL;
		int r = disk_request_parse(op == DISK_OP_CREATE ? DISK_REQ_CREATE : DISK_REQ_RESIZE,
					   j->args, &j->req, &err);
		if (r < 0) {
			job_free(j);
			return error_set(ret_message, r == -ENOMEM ? -ENOMEM : -EINVAL, "%s",
					 err ? err : "out of memory");
		}
	}
	if (op == DISK_OP_RESIZE && d->virt)
		j->conn = virt_conn_ref(d->virt);
	/* One operation per disk file at a time, in order. */
	int r = tasks_submit(d->tasks, j->path, disk_work, disk_done, j);
	if (r < 0) {
		job_free(j);
		return error_set(ret_message, r == -EBUSY ? -EAGAIN : -ESHUTDOWN,
				 "cannot queue the disk operation: %s",
				 r == -EBUSY ? "too many queued operations" : "shutting down");
	}
	if (op != DISK_OP_STATUS)
		log_info("Disk %s queued disk_id=%s storage=%s", disk_op_to_string(op), disk_id,
			 storage_id);
	return 0;
}

#include <dirent.h>
#include <endian.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/imagecache.h"
#include "agent/diskreq.h"
#include "agent/imagecheck.h"
#include "agent/imagefetch.h"
#include "agent/region.h"
#include "agent/storage.h"
#include "agent/tasks.h"
#include "common/config.h"
#include "common/fs.h"
#include "common/http-client.h"
#include "common/log.h"
#include "common/macros.h"
#include "common/path.h"

#define POOL_WORKERS	  2
#define POOL_QUEUE	  256
#define PROGRESS_USEC	  (2 * 1000 * 1000ULL)
#define REGION_TIMEOUT_MS 15000
#define INF_MAX		  (64 * 1024)

struct waiter {
	struct waiter *next;
	op_done_fn cb;
	void *userdata;
};

struct fetch {
	struct imagecache *ic;
	struct fetch *prev, *next;
	struct waiter *waiters;
	/* copied on the loop before the job is queued */
	char *cache_dir, *image_id, *format, *base_url, *token, *scid, *server_id;
	/* written by the worker */
	_Atomic uint64_t got;
	_Atomic int64_t total;
	int r;	     /* what went wrong, in the worker's terms */
	int failure; /* the reply's errno when r < 0 (agent/ops.h), 0: from r */
	char *error;
	char *path;
	struct image_meta meta;
	bool reused;
	uint64_t queue_usec, head_usec, get_usec, sync_usec, check_usec, place_usec; /* per step */
	/* loop side */
	uint64_t last_got, last_usec, started_usec, done_usec;
	sd_event_source *timer;
	struct region_http *put;
};

struct uncache {
	struct imagecache *ic;
	op_done_fn cb;
	void *userdata;
	char *cache_dir, *image_id;
	char **roots;
	int r; /* -ECANCELED until the job ran */
	char *error;
};

struct imagecache {
	sd_event *event;
	const struct config *cfg; /* the agent's */
	struct storages *storages;
	struct region *region;
	struct tasks *pool;
	struct fetch *fetches;
};

static void reply(op_done_fn cb, void *userdata, int error, const char *message, json_t *body)
{
	struct op_reply rep = {.body = body};
	if (error < 0)
		(void)op_reply_fail(&rep, error, "%s", strempty(message));
	cb(&rep, userdata);
	op_reply_clear(&rep);
}

const struct storage *imagecache_storage(struct storages *storages, const char *cache_id)
{
	const struct storage *s = storages_find_cache(storages, cache_id);
	return s ? s : storages_find(storages, cache_id);
}

int imagecache_read_format(const char *cache_dir, const char *image_id, char *ret_format)
{
	_cleanup_free_ char *p = NULL, *text = NULL;
	if (asprintf(&p, "%s/%s.inf", cache_dir, image_id) < 0)
		return -ENOMEM;
	int r = read_file(p, INF_MAX, &text, NULL);
	if (r < 0)
		return r;
	json_auto_t *j = json_loads(text, 0, NULL);
	const char *f = json_string_value(json_object_get(j, "format"));
	if (!image_format_valid(f))
		return -EBADMSG;
	snprintf(ret_format, 16, "%s", f);
	return 0;
}

/* ---- the fetch, on a worker ----------------------------------------------------------- */

static const char *cause(int r, char *buf, size_t size)
{
	switch (r) {
	case -EACCES:
		return "the image service refused the agent's token";
	case -ENOENT:
		return "the image service does not have it";
	case -ECONNREFUSED:
		return "the image service is unreachable (connection refused)";
	case -ETIMEDOUT:
		return "the image service timed out";
	case -EPIPE:
		return "the download was cut short";
	default:
		snprintf(buf, size, "%s", strerror(-r));
		return buf;
	}
}

/* A failed fetch in the operations' terms (agent/ops.h). */
static int fetch_failure(int r)
{
	switch (r) {
	case -EACCES:
	case -ENOENT:
	case -ENOSPC:
		return r;
	case -EMEDIUMTYPE: /* the image is refused: not what its description says, or unsafe */
	case -EBADMSG:
		return -EINVAL;
	case -ECONNREFUSED:
	case -ETIMEDOUT:
	case -EHOSTUNREACH:
	case -EREMOTEIO:
	case -EPIPE:
		return -EREMOTEIO; /* the image service failed: a bad gateway */
	default:
		return r == -ENOMEM ? r : -EIO;
	}
}

static int write_inf(const struct fetch *f, const char *disk_format, const struct image_info *ii)
{
	_cleanup_free_ char *p = NULL, *text = NULL;
	json_auto_t *j = json_pack("{s:s,s:s,s:s,s:I,s:s,s:I,s:s}", "id", f->image_id, "name",
				   f->meta.name, "format", disk_format, "size",
				   (json_int_t)f->meta.size, "checksum", f->meta.checksum,
				   "virtual_size", (json_int_t)ii->virtual_size, "path", f->path);
	if (!j || !(text = json_dumps(j, JSON_SORT_KEYS | JSON_INDENT(2))) ||
	    asprintf(&p, "%s/%s.inf", f->cache_dir, f->image_id) < 0)
		return -ENOMEM;
	return write_file_atomic(p, text, strlen(text), 0644);
}

static int fetch_run(struct fetch *f)
{
	char buf[128];
	int r = mkdir_p(f->cache_dir, 0755);
	if (r < 0)
		return error_set(&f->error, r, "cannot create the cache directory %s: %s",
				 f->cache_dir, strerror(-r));
	_cleanup_free_ char *url = NULL, *tmp = NULL;
	if (asprintf(&url, "%s/images/%s?format=%s&scope=system", f->base_url, f->image_id,
		     f->format) < 0 ||
	    asprintf(&f->path, "%s/%s", f->cache_dir, f->image_id) < 0 ||
	    asprintf(&tmp, "%s/%s.tmp", f->cache_dir, f->image_id) < 0)
		return -ENOMEM;
	long status = 0;
	uint64_t th = now_usec(CLOCK_MONOTONIC);
	r = imagefetch_head(url, f->token, &f->meta, &status);
	f->head_usec = now_usec(CLOCK_MONOTONIC) - th;
	if (r < 0)
		return error_set(&f->error, r, "HEAD: %s (HTTP %ld)", cause(r, buf, sizeof(buf)),
				 status);
	/* The service may serve another format than the one asked for: trust what it says. */
	const char *disk_format = f->meta.disk_format[0] ? f->meta.disk_format : f->format;
	if (!image_format_valid(disk_format))
		return error_set(&f->error, -EMEDIUMTYPE,
				 "the image service announces format %s (only qcow2 and raw are "
				 "cached)",
				 disk_format);
	if (strlen(f->meta.checksum) != 32)
		return error_set(&f->error, -EBADMSG,
				 "the image service announces no MD5 checksum (X-Image-Meta-"
				 "Checksum)");
	atomic_store(&f->total, f->meta.size);

	struct image_info ii;
	struct stat st;
	if (lstat(f->path, &st) == 0 && S_ISREG(st.st_mode)) {
		char md5[IMAGE_MD5_HEX];
		_cleanup_free_ char *err = NULL;
		if (imagefetch_file_md5(f->path, md5) == 0 && streq(md5, f->meta.checksum) &&
		    image_inspect(f->path, disk_format, &ii, &err) == 0) {
			f->reused = true;
			atomic_store(&f->got, (uint64_t)st.st_size);
			return write_inf(f, disk_format, &ii);
		}
		log_debug("Cached image %s is stale or unusable, fetching again", f->path);
	}

	/* Declared before the first jump to fail: cleanup runs on every path out. */
	_cleanup_free_ char *err = NULL;
	_cleanup_close_ int dfd = -1;
	(void)unlink(tmp);
	_cleanup_close_ int fd =
	    open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return error_set(&f->error, -errno, "cannot create %s: %m", tmp);
	char md5[IMAGE_MD5_HEX];
	uint64_t bytes = 0, t0 = now_usec(CLOCK_MONOTONIC);
	r = imagefetch_get(url, f->token, fd, &f->got, md5, &bytes, &status);
	uint64_t t1 = now_usec(CLOCK_MONOTONIC);
	f->get_usec = t1 - t0;
	if (r < 0) {
		uint64_t got = atomic_load(&f->got);
		if (r == -ENOSPC)
			error_set(&f->error, r, "no space left in %s after %" PRIu64 " bytes",
				  f->cache_dir, got);
		else
			error_set(&f->error, r,
				  "GET: %s after %" PRIu64 " of %" PRId64 " bytes (HTTP %ld)",
				  cause(r, buf, sizeof(buf)), got, f->meta.size, status);
		goto fail;
	}
	if (f->meta.size >= 0 && bytes != (uint64_t)f->meta.size) {
		r = error_set(&f->error, -EPIPE,
			      "GET: got %" PRIu64 " bytes, the image service announced %" PRId64,
			      bytes, f->meta.size);
		goto fail;
	}
	if (!streq(md5, f->meta.checksum)) {
		r = error_set(&f->error, -EBADMSG,
			      "checksum mismatch: the download has MD5 %s, the image service "
			      "announced %s",
			      md5, f->meta.checksum);
		goto fail;
	}
	if (fsync(fd) < 0) {
		r = error_set(&f->error, -errno, "cannot write %s: %m", tmp);
		goto fail;
	}
	fd = safe_close(fd);
	uint64_t t2 = now_usec(CLOCK_MONOTONIC);
	f->sync_usec = t2 - t1;
	r = image_inspect(tmp, disk_format, &ii, &err);
	uint64_t t3 = now_usec(CLOCK_MONOTONIC);
	f->check_usec = t3 - t2;
	if (r < 0) {
		error_set(&f->error, r, "refused: %s", strempty(err));
		goto fail;
	}
	if (chmod(tmp, 0644) < 0 || rename(tmp, f->path) < 0) {
		r = error_set(&f->error, -errno, "cannot move %s into place: %m", tmp);
		goto fail;
	}
	dfd = open(f->cache_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0)
		(void)fsync(dfd);
	if (f->meta.size < 0)
		f->meta.size = (int64_t)bytes;
	r = write_inf(f, disk_format, &ii);
	if (r < 0) {
		/* Not half-done: without its description the file is no cached image (a disk is
		 * made from both), and it must not stay under the final name. */
		(void)unlink(f->path);
		return error_set(&f->error, r, "cannot write the image description: %s",
				 strerror(-r));
	}
	f->place_usec = now_usec(CLOCK_MONOTONIC) - t3;
	return 0;
fail:
	(void)unlink(tmp);
	return r;
}

static void fetch_work(void *userdata)
{
	struct fetch *f = userdata;
	uint64_t t = now_usec(CLOCK_MONOTONIC);
	f->queue_usec = t - f->started_usec;
	f->r = fetch_run(f);
	if (f->r < 0 && !f->error)
		f->error = strdup(strerror(-f->r));
}

/* ---- the loop side -------------------------------------------------------------------- */

static void fetch_free(struct fetch *f)
{
	if (!f)
		return;
	struct imagecache *ic = f->ic;
	if (ic) {
		if (f->prev)
			f->prev->next = f->next;
		else
			ic->fetches = f->next;
		if (f->next)
			f->next->prev = f->prev;
	}
	region_http_cancel(f->put);
	sd_event_source_disable_unref(f->timer);
	while (f->waiters) {
		struct waiter *w = f->waiters;
		f->waiters = w->next;
		free(w);
	}
	free(f->cache_dir);
	free(f->image_id);
	free(f->format);
	free(f->base_url);
	if (f->token) {
		explicit_bzero(f->token, strlen(f->token));
		free(f->token);
	}
	free(f->scid);
	free(f->server_id);
	free(f->error);
	free(f->path);
	free(f);
}

/* Answers every waiter and frees the fetch: with body, or with error and "image <id>: <f->error>".
 */
static void fetch_finish(struct fetch *f, int error, json_t *body)
{
	_cleanup_free_ char *msg = NULL;
	if (error < 0 && asprintf(&msg, "image %s: %s", f->image_id, strempty(f->error)) < 0)
		msg = NULL;
	struct waiter *ws = TAKE_PTR(f->waiters);
	fetch_free(f);
	for (struct waiter *w = ws, *n; w; w = n) {
		n = w->next;
		reply(w->cb, w->userdata, error, msg, json_incref(body));
		free(w);
	}
	json_decref(body);
}

/* Answers a fetch that cannot go on because the agent stops. */
static void fetch_shutdown(struct fetch *f)
{
	free(f->error);
	f->error = strdup("the agent is shutting down");
	fetch_finish(f, -ESHUTDOWN, NULL);
}

static void fetch_reply(struct fetch *f)
{
	if (f->r < 0) {
		log_warning("Image cache failed image_id=%s cache=%s: %s", f->image_id,
			    f->cache_dir, f->error);
		return fetch_finish(f, f->failure ? f->failure : fetch_failure(f->r), NULL);
	}
	/* The steps, for an operator asking where the time went (and tests/bench/image-cache.sh):
	 * "cached" is the time until the file was in place, "region" the report after it. */
	uint64_t now = now_usec(CLOCK_MONOTONIC);
	log_info("Image cached image_id=%s path=%s size=%" PRId64 " reused=%s seconds=%.2f "
		 "(cached %.2f: queue %.2f, head %.2f, download %.2f, fsync %.2f, check %.2f, "
		 "rename %.2f; region %.2f)",
		 f->image_id, f->path, f->meta.size, f->reused ? "yes" : "no",
		 (double)(now - f->started_usec) / 1e6,
		 (double)(f->done_usec - f->started_usec) / 1e6, (double)f->queue_usec / 1e6,
		 (double)f->head_usec / 1e6, (double)f->get_usec / 1e6, (double)f->sync_usec / 1e6,
		 (double)f->check_usec / 1e6, (double)f->place_usec / 1e6,
		 (double)(now - f->done_usec) / 1e6);
	fetch_finish(f, 0,
		     json_pack("{s:s,s:s,s:s,s:I}", "image_id", f->image_id, "path", f->path,
			       "name", f->meta.name, "size", (json_int_t)f->meta.size));
}

static void on_put_done(int r, const struct http_response *resp, void *userdata)
{
	struct fetch *f = userdata;
	f->put = NULL;
	if (r < 0 || resp->status < 200 || resp->status >= 300) {
		/* The region would not learn the path: the cache did not complete for it. */
		f->r = r < 0 ? r : -EREMOTEIO;
		f->failure = -EREMOTEIO;
		free(f->error);
		if (asprintf(&f->error, "the region refused the cached-image record (%s)",
			     r < 0 ? strerror(-r) : "HTTP error") < 0)
			f->error = NULL;
		if (r >= 0 && resp->status == 401)
			region_token_invalid(f->ic->region);
	}
	fetch_reply(f);
}

static int put_cachedimage(struct fetch *f)
{
	struct region *rg = f->ic->region;
	const char *token = region_token(rg), *base = region_compute_url(rg);
	if (!token || !base)
		return -ENOTCONN;
	_cleanup_free_ char *url = NULL, *hdr = NULL, *data = NULL;
	json_auto_t *body =
	    json_pack("{s:{s:s,s:s}}", "storagecachedimage", "status", "active", "path", f->path);
	if (!body || !(data = json_dumps(body, JSON_COMPACT)) ||
	    asprintf(&url, "%s/storagecaches/%s/cachedimages/%s?auto_create=true", base, f->scid,
		     f->image_id) < 0 ||
	    asprintf(&hdr, "X-Auth-Token: %s", token) < 0)
		return -ENOMEM;
	char *headers[] = {hdr, NULL};
	return region_http_submit(rg, "PUT", url, headers, data, REGION_TIMEOUT_MS, on_put_done, f,
				  &f->put);
}

static void fetch_done(void *userdata)
{
	struct fetch *f = userdata;
	f->done_usec = now_usec(CLOCK_MONOTONIC);
	f->timer = sd_event_source_disable_unref(f->timer);
	if (!f->ic || f->r == -ECANCELED) {
		/* The cache is going away (or the pool dropped the job). */
		f->r = -ESHUTDOWN;
		return fetch_shutdown(f);
	}
	if (f->r == 0 && f->scid) {
		int r = put_cachedimage(f);
		if (r == 0)
			return;
		f->r = r;
		f->failure = -ENOTCONN;
		free(f->error);
		f->error = strdup("cannot tell the region the cached path (no region session)");
	}
	fetch_reply(f);
}

static void on_progress_put(int r, const struct http_response *resp, void *userdata)
{
	if (r < 0 || resp->status >= 300)
		log_debug("Progress report not accepted: %s", r < 0 ? strerror(-r) : "HTTP error");
}

static int on_progress(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct fetch *f = userdata;
	uint64_t now = now_usec(CLOCK_MONOTONIC), got = atomic_load(&f->got);
	int64_t total = atomic_load(&f->total);
	double dt = (double)(now - f->last_usec) / 1e6;
	double mbps = dt > 0 ? (double)(got - f->last_got) * 8 / 1e6 / dt : 0;
	double pct = total > 0 ? 100.0 * (double)got / (double)total : 0;
	f->last_got = got;
	f->last_usec = now;
	log_info("Image download image_id=%s got_bytes=%" PRIu64 " total_bytes=%" PRId64
		 " progress=%.1f mbps=%.1f",
		 f->image_id, got, total, pct, mbps);
	struct region *rg = f->ic->region;
	const char *token = region_token(rg), *base = region_compute_url(rg);
	if (f->server_id && token && base) {
		_cleanup_free_ char *url = NULL, *hdr = NULL, *data = NULL;
		json_auto_t *body =
		    json_pack("{s:{s:f,s:f}}", "server", "progress", pct, "progress_mbps", mbps);
		if (body && (data = json_dumps(body, JSON_COMPACT)) &&
		    asprintf(&url, "%s/servers/%s", base, f->server_id) >= 0 &&
		    asprintf(&hdr, "X-Auth-Token: %s", token) >= 0) {
			char *headers[] = {hdr, NULL};
			(void)region_http_submit(rg, "PUT", url, headers, data, REGION_TIMEOUT_MS,
						 on_progress_put, NULL, NULL);
		}
	}
	(void)sd_event_source_set_time(s, usec + PROGRESS_USEC);
	(void)sd_event_source_set_enabled(s, SD_EVENT_ON);
	return 0;
}

static int add_waiter(struct fetch *f, op_done_fn cb, void *userdata)
{
	struct waiter *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->cb = cb;
	w->userdata = userdata;
	w->next = f->waiters;
	f->waiters = w;
	return 0;
}

/* The request of a cache or uncache body, the storage cache it names and the fetch of that image
 * into that cache under way (NULL: none); a refusal (with *ret_message) when there is no such
 * storage cache. */
static int request_storage(struct imagecache *ic, enum disk_req_kind kind, json_t *args,
			   struct disk_request *req, const struct storage **ret,
			   struct fetch **ret_fetch, char **ret_message)
{
	if (!ic)
		return error_set(ret_message, -EAGAIN, "the image cache is not available");
	_cleanup_free_ char *err = NULL;
	int r = disk_request_parse(kind, args, req, &err);
	if (r < 0)
		return error_set(ret_message, r == -ENOMEM ? r : -EINVAL, "%s",
				 err ? err : "out of memory");
	*ret = imagecache_storage(ic->storages, req->storagecache_id);
	if (!*ret)
		return error_set(ret_message, -ENOENT, "storage cache %s is not on this host",
				 req->storagecache_id);
	*ret_fetch = NULL;
	for (struct fetch *f = ic->fetches; f && !*ret_fetch; f = f->next)
		if (streq(f->cache_dir, (*ret)->cache_dir) && streq(f->image_id, req->image_id))
			*ret_fetch = f;
	return 0;
}

int imagecache_fetch(struct imagecache *ic, json_t *args, op_done_fn cb, void *userdata,
		     char **ret_message)
{
	struct disk_request req;
	const struct storage *st;
	struct fetch *running;
	int r = request_storage(ic, DISK_REQ_CACHE, args, &req, &st, &running, ret_message);
	if (r < 0)
		return r;
	const char *image_id = req.image_id, *format = req.format;
	if (running) {
		log_info("Image fetch shared image_id=%s", image_id);
		r = add_waiter(running, cb, userdata);
		return r < 0 ? error_set(ret_message, r, "out of memory") : 0;
	}

	const char *token = region_token(ic->region), *base = region_image_url(ic->region);
	if (!token)
		return error_set(ret_message, -ENOTCONN,
				 "image %s: no service token for the image service%s", image_id,
				 ic->cfg->auth_url ? " yet" : " (standalone mode)");
	if (!base)
		return error_set(ret_message, -ENOTCONN,
				 "image %s: the keystone catalog has no image service", image_id);
	struct fetch *f = calloc(1, sizeof(*f));
	if (!f)
		return error_set(ret_message, -ENOMEM, "out of memory");
	size_t bl = strlen_trim_slashes(base);
	f->cache_dir = strdup(st->cache_dir);
	f->image_id = strdup(image_id);
	f->format = strdup(format);
	f->base_url = strndup(base, bl);
	f->token = strdup(token);
	f->scid = strdup(req.storagecache_id);
	f->server_id = req.server_id ? strdup(req.server_id) : NULL;
	f->started_usec = f->last_usec = now_usec(CLOCK_MONOTONIC);
	f->r = -ECANCELED; /* stays so when the pool drops the job */
	if (!f->cache_dir || !f->image_id || !f->format || !f->base_url || !f->token || !f->scid ||
	    (req.server_id && !f->server_id) || add_waiter(f, cb, userdata) < 0) {
		fetch_free(f);
		return error_set(ret_message, -ENOMEM, "out of memory");
	}
	r = tasks_submit(ic->pool, f->image_id, fetch_work, fetch_done, f);
	if (r < 0) {
		struct waiter *w = TAKE_PTR(f->waiters);
		free(w);
		fetch_free(f);
		return error_set(ret_message, r == -EBUSY ? -EAGAIN : -ESHUTDOWN,
				 "image %s: cannot queue the download: %s", image_id, strerror(-r));
	}
	f->ic = ic;
	f->next = ic->fetches;
	if (ic->fetches)
		ic->fetches->prev = f;
	ic->fetches = f;
	(void)sd_event_add_time_relative(ic->event, &f->timer, CLOCK_MONOTONIC, PROGRESS_USEC, 0,
					 on_progress, f);
	log_info("Image fetch started image_id=%s format=%s cache=%s", image_id, format,
		 st->cache_dir);
	return 0;
}

/* ---- uncache -------------------------------------------------------------------------- */

/* The backing file named in a qcow2 header, resolved against the disk's directory; NULL when
 * the file is not qcow2 or has none. The header is the guest's to write only in a raw disk, and
 * a raw disk has no backing file, so reading it is safe. */
static char *qcow2_backing(int dirfd, const char *dir, const char *name)
{
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	uint8_t h[20];
	if (fd < 0 || pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) || memcmp(h, "QFI\xfb", 4))
		return NULL;
	uint64_t off;
	uint32_t len;
	memcpy(&off, h + 8, 8);
	memcpy(&len, h + 16, 4);
	off = be64toh(off);
	len = be32toh(len);
	if (off == 0 || len == 0 || len > 1023)
		return NULL;
	char b[1024];
	if (pread(fd, b, len, (off_t)off) != (ssize_t)len)
		return NULL;
	b[len] = 0;
	char *full = NULL;
	if (b[0] == '/')
		full = strdup(b);
	else if (asprintf(&full, "%s/%s", dir, b) < 0)
		full = NULL;
	if (!full)
		return NULL;
	char *real = realpath(full, NULL);
	if (real) {
		free(full);
		return real;
	}
	return full;
}

static void uncache_work(void *userdata)
{
	struct uncache *u = userdata;
	_cleanup_free_ char *path = NULL, *real = NULL;
	if (asprintf(&path, "%s/%s", u->cache_dir, u->image_id) < 0) {
		u->r = -ENOMEM;
		return;
	}
	real = realpath(path, NULL);
	if (real) {
		STRV_FOREACH (root, u->roots) {
			DIR *dir = opendir(*root);
			struct dirent *de;
			while (dir && !u->error && (de = readdir(dir))) {
				if (de->d_name[0] == '.' ||
				    (de->d_type != DT_REG && de->d_type != DT_UNKNOWN))
					continue;
				_cleanup_free_ char *b =
				    qcow2_backing(dirfd(dir), *root, de->d_name);
				if (b && streq(b, real)) {
					u->r = -EBUSY;
					if (asprintf(&u->error,
						     "image %s is the backing file of disk %s/%s",
						     u->image_id, *root, de->d_name) < 0)
						u->error = NULL;
				}
			}
			if (dir)
				closedir(dir);
			if (u->r == -EBUSY)
				return;
		}
	}
	static const char *const suffixes[] = {"", ".inf", ".tmp"};
	for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
		_cleanup_free_ char *p = NULL;
		if (asprintf(&p, "%s/%s%s", u->cache_dir, u->image_id, suffixes[i]) < 0 ||
		    (unlink(p) < 0 && errno != ENOENT)) {
			u->r = -EIO;
			if (asprintf(&u->error, "image %s: cannot remove %s: %m", u->image_id,
				     strempty(p)) < 0)
				u->error = NULL;
			return;
		}
	}
	u->r = 0;
}

static void uncache_done(void *userdata)
{
	struct uncache *u = userdata;
	if (u->r == 0) {
		log_info("Image removed from the cache image_id=%s cache=%s", u->image_id,
			 u->cache_dir);
		reply(u->cb, u->userdata, 0, NULL, json_object());
	} else if (u->r == -ECANCELED) {
		_cleanup_free_ char *msg = NULL;
		if (asprintf(&msg, "image %s: the agent is shutting down", u->image_id) < 0)
			msg = NULL;
		reply(u->cb, u->userdata, -ESHUTDOWN, msg, NULL);
	} else
		reply(u->cb, u->userdata, u->r, u->error ? u->error : "out of memory", NULL);
	free(u->cache_dir);
	free(u->image_id);
	strv_free(u->roots);
	free(u->error);
	free(u);
}

int imagecache_uncache(struct imagecache *ic, json_t *args, op_done_fn cb, void *userdata,
		       char **ret_message)
{
	struct disk_request req;
	const struct storage *st;
	struct fetch *running;
	int r = request_storage(ic, DISK_REQ_UNCACHE, args, &req, &st, &running, ret_message);
	if (r < 0)
		return r;
	const char *image_id = req.image_id;
	if (running)
		return error_set(ret_message, -EBUSY, "image %s is being fetched", image_id);
	struct uncache *u = calloc(1, sizeof(*u));
	if (!u)
		return error_set(ret_message, -ENOMEM, "out of memory");
	u->ic = ic;
	u->r = -ECANCELED;
	u->cb = cb;
	u->userdata = userdata;
	u->cache_dir = strdup(st->cache_dir);
	u->image_id = strdup(image_id);
	bool oom = false;
	for (size_t i = 0; i < storages_count(ic->storages); i++)
		oom = oom || strv_extend(&u->roots, storages_get(ic->storages, i)->root) < 0;
	if (!u->cache_dir || !u->image_id || oom) {
		free(u->cache_dir);
		free(u->image_id);
		strv_free(u->roots);
		free(u);
		return error_set(ret_message, -ENOMEM, "out of memory");
	}
	/* Same key as the fetch: an uncache never races a download of the same image. */
	r = tasks_submit(ic->pool, image_id, uncache_work, uncache_done, u);
	if (r < 0) {
		free(u->cache_dir);
		free(u->image_id);
		strv_free(u->roots);
		free(u);
		return error_set(ret_message, r == -EBUSY ? -EAGAIN : -ESHUTDOWN,
				 "image %s: cannot queue the removal: %s", image_id, strerror(-r));
	}
	return 0;
}

/* ---- lifetime ------------------------------------------------------------------------- */

int imagecache_new(sd_event *event, const struct config *cfg, struct storages *storages,
		   struct region *region, struct imagecache **ret)
{
	struct imagecache *ic = calloc(1, sizeof(*ic));
	if (!ic)
		return -ENOMEM;
	ic->event = event;
	ic->cfg = cfg;
	ic->storages = storages;
	ic->region = region;
	int r = tasks_new(event, POOL_WORKERS, POOL_QUEUE, &ic->pool);
	if (r < 0) {
		free(ic);
		return r;
	}
	*ret = ic;
	return 0;
}

struct imagecache *imagecache_free(struct imagecache *ic)
{
	if (!ic)
		return NULL;
	/* Fetches whose PUT is in flight: cancel it and answer. */
	for (struct fetch *f = ic->fetches, *n; f; f = n) {
		n = f->next;
		if (f->put) {
			region_http_cancel(f->put);
			f->put = NULL;
			fetch_shutdown(f);
		}
	}
	/* The remaining fetches are on the pool: detach them, their done answers 503. */
	for (struct fetch *f = ic->fetches; f; f = f->next)
		f->ic = NULL;
	ic->fetches = NULL;
	ic->pool = tasks_free(ic->pool);
	free(ic);
	return NULL;
}

#include <curl/curl.h>
#include <fcntl.h>
#include <nettle/md5.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>
#include <unistd.h>

#include "agent/imagefetch.h"
#include "common/macros.h"

#define CONNECT_TIMEOUT_S 10
#define HEAD_TIMEOUT_MS	  30000
/* A stream that delivers less than 1 KiB/s for a minute is given up. */
#define STALL_BYTES	1024
#define STALL_SECONDS	60
#define BUFFER_SIZE	(512 * 1024)
#define WRITEBACK_CHUNK (8ULL * 1024 * 1024)
/* The ring the stream is received into, hashed and written from (struct pipeline). */
#define RING_SLOTS     16
#define RING_SLOT_SIZE (1024 * 1024)
#define WRITE_BATCH    4
#define DIRECT_ALIGN   4096
/* The flusher makes what was written durable every FLUSH_EVERY bytes, beside the writer. */
#define FLUSH_EVERY (64ULL * 1024 * 1024)

static void hex(const uint8_t *d, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[d[i] >> 4];
		out[2 * i + 1] = digits[d[i] & 15];
	}
	out[2 * n] = 0;
}

static int curl_error(CURLcode c)
{
	switch (c) {
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
		return -EHOSTUNREACH;
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
		return -EPIPE;
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
		return -EINVAL;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
		return -EPROTO;
	default:
		return -EIO;
	}
}

static int status_error(long status)
{
	if (status == 200)
		return 0;
	if (status == 401 || status == 403)
		return -EACCES;
	if (status == 404)
		return -ENOENT;
	return -EREMOTEIO;
}

/* The receiving thread only copies the stream into a ring of RING_SLOTS aligned buffers; two
 * threads of their own take the full slots in order: the hasher computes the MD5 (about as slow
 * as the network on loopback, 600 MB/s) and the writer writes them to the file with O_DIRECT,
 * WRITE_BATCH slots per request, so the disk is busy from the first megabyte, the stream never
 * goes through the page cache (no second copy, no writeback of a GiB that nobody reads back,
 * no guest's cache evicted), and the final fsync has nothing left but the last slot. A slot is
 * free again once both have passed it. Where the file system refuses O_DIRECT the writer falls
 * back to plain writes with sync_file_range every WRITEBACK_CHUNK. */
struct pipeline {
	pthread_t hasher, writer, flusher;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint8_t *slot[RING_SLOTS];
	size_t len[RING_SLOTS];
	/* Slots counted from the start of the stream: filled by the receiver (the one it fills
	 * is filled % RING_SLOTS), hashed, written. All under mu. */
	uint64_t filled, hashed, written;
	bool eof, abort;
	size_t fill_len; /* bytes in the slot the receiver fills (receiver only) */
	int write_error; /* the writer's or the flusher's, under mu; stops the receiver */
	int fd;
	bool direct;	  /* writer only, like flushed */
	uint64_t flushed; /* without O_DIRECT: bytes whose writeback was started */
	uint64_t synced;  /* slots the flusher made durable (under mu) */
	bool writer_done; /* under mu: the writer has ended, the flusher ends too */
	struct md5_ctx md5;
};

static void *hasher_main(void *userdata)
{
	(void)pthread_setname_np(pthread_self(), "image-md5");
	struct pipeline *p = userdata;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (p->hashed == p->filled && !p->eof && !p->abort)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->abort || p->hashed == p->filled)
			break;
		unsigned i = p->hashed % RING_SLOTS;
		pthread_mutex_unlock(&p->mu);
		md5_update(&p->md5, p->len[i], p->slot[i]);
		pthread_mutex_lock(&p->mu);
		p->hashed++;
		pthread_cond_broadcast(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* Writes all of iov[0..n) at off (iov is used up). Bytes written, or -errno. */
static ssize_t pwritev_all(int fd, struct iovec *iov, int n, off_t off)
{
	size_t total = 0;
	while (n > 0) {
		ssize_t w = pwritev(fd, iov, n, off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		total += (size_t)w, off += w;
		size_t left = (size_t)w;
		while (n > 0 && left >= iov->iov_len)
			left -= iov->iov_len, iov++, n--;
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + left;
			iov->iov_len -= left;
		}
	}
	return (ssize_t)total;
}

static void direct_off(struct pipeline *p)
{
	int fl = fcntl(p->fd, F_GETFL);
	if (fl >= 0)
		(void)fcntl(p->fd, F_SETFL, fl & ~O_DIRECT);
	p->direct = false;
}

/* Writes slots [from, from + n) at their place in the file; the last one may be short. A short
 * slot, or a file system that refuses a request with O_DIRECT (-EINVAL), is written through the
 * page cache from then on. */
static int write_slots(struct pipeline *p, uint64_t from, unsigned n)
{
	struct iovec iov[WRITE_BATCH];
	size_t bytes = 0;
	off_t off = (off_t)(from * RING_SLOT_SIZE);
	for (int attempt = 0;; attempt++) {
		bytes = 0;
		for (unsigned k = 0; k < n; k++) {
			unsigned i = (from + k) % RING_SLOTS;
			iov[k] = (struct iovec){p->slot[i], p->len[i]};
			bytes += p->len[i];
		}
		if (p->direct && bytes % DIRECT_ALIGN != 0)
			direct_off(p);
		ssize_t w = pwritev_all(p->fd, iov, (int)n, off);
		if (w == -EINVAL && p->direct && attempt == 0) {
			direct_off(p);
			continue;
		}
		if (w < 0)
			return (int)w;
		break;
	}
	uint64_t end = (uint64_t)off + bytes;
	if (!p->direct && end - p->flushed >= WRITEBACK_CHUNK) {
		(void)sync_file_range(p->fd, (off64_t)p->flushed, (off64_t)(end - p->flushed),
				      SYNC_FILE_RANGE_WRITE);
		p->flushed = end;
	}
	return 0;
}

static void *writer_main(void *userdata)
{
	(void)pthread_setname_np(pthread_self(), "image-write");
	struct pipeline *p = userdata;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (p->written == p->filled && !p->eof && !p->abort)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->abort || p->written == p->filled)
			break;
		uint64_t from = p->written;
		unsigned n = (unsigned)MIN(p->filled - from, (uint64_t)WRITE_BATCH);
		pthread_mutex_unlock(&p->mu);
		int r = write_slots(p, from, n);
		pthread_mutex_lock(&p->mu);
		if (r < 0) {
			p->write_error = r;
			pthread_cond_broadcast(&p->cv);
			break;
		}
		p->written += n;
		pthread_cond_broadcast(&p->cv);
	}
	p->writer_done = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* fdatasync of what the writer wrote so far, every FLUSH_EVERY bytes, while it goes on writing:
 * the device's cache and the file's block allocation are made durable during the download, and
 * the fsync before the file is renamed into place has only the last part left. A writeback
 * error is reported once per open file (errseq): the one this fdatasync sees would not reach
 * the final fsync, so it is the pipeline's error and stops the download like a failed write. */
static void *flusher_main(void *userdata)
{
	(void)pthread_setname_np(pthread_self(), "image-sync");
	struct pipeline *p = userdata;
	const uint64_t every = FLUSH_EVERY / RING_SLOT_SIZE;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (p->written - p->synced < every && !p->writer_done && !p->abort)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->writer_done || p->abort)
			break;
		uint64_t upto = p->written;
		pthread_mutex_unlock(&p->mu);
		int r = fdatasync(p->fd) < 0 ? -errno : 0;
		pthread_mutex_lock(&p->mu);
		p->synced = upto;
		if (r < 0 && r != -EINTR && !p->write_error) {
			p->write_error = r;
			pthread_cond_broadcast(&p->cv);
			break;
		}
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static void pipeline_free_slots(struct pipeline *p)
{
	for (unsigned i = 0; i < RING_SLOTS; i++)
		free(p->slot[i]);
}

static int pipeline_start(struct pipeline *p, int fd)
{
	*p = (struct pipeline){.fd = fd};
	md5_init(&p->md5);
	for (unsigned i = 0; i < RING_SLOTS; i++) {
		void *m;
		if (posix_memalign(&m, DIRECT_ALIGN, RING_SLOT_SIZE) != 0) {
			pipeline_free_slots(p);
			return -ENOMEM;
		}
		p->slot[i] = m;
	}
	int fl = fcntl(fd, F_GETFL);
	p->direct = fl >= 0 && fcntl(fd, F_SETFL, fl | O_DIRECT) == 0;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	int r = -pthread_create(&p->hasher, NULL, hasher_main, p);
	if (r == 0) {
		r = -pthread_create(&p->writer, NULL, writer_main, p);
		if (r == 0) {
			r = -pthread_create(&p->flusher, NULL, flusher_main, p);
			if (r == 0)
				return 0;
			pthread_mutex_lock(&p->mu);
			p->abort = true;
			pthread_cond_broadcast(&p->cv);
			pthread_mutex_unlock(&p->mu);
			pthread_join(p->writer, NULL);
		}
		pthread_mutex_lock(&p->mu);
		p->abort = true;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
		pthread_join(p->hasher, NULL);
	}
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	pipeline_free_slots(p);
	return r;
}

/* The receiver: n bytes of the stream into the ring. The writer's error, once it had one. */
static int pipeline_push(struct pipeline *p, const uint8_t *buf, size_t n)
{
	pthread_mutex_lock(&p->mu);
	while (n > 0 && !p->write_error) {
		while (p->filled - MIN(p->hashed, p->written) == RING_SLOTS && !p->write_error)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->write_error)
			break;
		unsigned i = p->filled % RING_SLOTS;
		pthread_mutex_unlock(&p->mu);
		size_t k = MIN(RING_SLOT_SIZE - p->fill_len, n);
		memcpy(p->slot[i] + p->fill_len, buf, k);
		p->fill_len += k;
		buf += k, n -= k;
		pthread_mutex_lock(&p->mu);
		if (p->fill_len == RING_SLOT_SIZE) {
			p->len[i] = RING_SLOT_SIZE;
			p->fill_len = 0;
			p->filled++;
			pthread_cond_broadcast(&p->cv);
		}
	}
	int r = p->write_error;
	pthread_mutex_unlock(&p->mu);
	return r;
}

/* Ends the pipeline: with complete, after hashing and writing the rest (the digest goes to d);
 * without, at once. The writer's error, if it had one. */
static int pipeline_stop(struct pipeline *p, bool complete, uint8_t d[MD5_DIGEST_SIZE])
{
	pthread_mutex_lock(&p->mu);
	if (complete) {
		if (p->fill_len > 0) { /* the last, short slot */
			p->len[p->filled % RING_SLOTS] = p->fill_len;
			p->filled++;
		}
		p->eof = true;
	} else
		p->abort = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->hasher, NULL);
	pthread_join(p->writer, NULL);
	pthread_join(p->flusher, NULL);
	if (complete)
		md5_digest(&p->md5, MD5_DIGEST_SIZE, d);
	int r = p->write_error;
	if (complete && r == 0 && p->written != p->filled)
		r = -EIO;
	if (p->direct)
		direct_off(p);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	pipeline_free_slots(p);
	return r;
}

struct transfer {
	struct image_meta *meta;
	int write_error;
	struct pipeline *pipeline;
	uint64_t bytes;
	_Atomic uint64_t *progress;
};

static void copy_value(char *dst, size_t size, const char *v, size_t len)
{
	while (len > 0 && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
		len--;
	while (len > 0 && *v == ' ')
		v++, len--;
	if (len >= size)
		len = size - 1;
	memcpy(dst, v, len);
	dst[len] = 0;
}

static size_t on_header(char *buf, size_t size, size_t n, void *userdata)
{
	struct transfer *t = userdata;
	size_t len = size * n;
	const char *colon = memchr(buf, ':', len);
	if (!t->meta || !colon)
		return len;
	size_t klen = (size_t)(colon - buf);
	const char *v = colon + 1;
	size_t vlen = len - klen - 1;
	char tmp[32];
	if (klen == 21 && strncasecmp(buf, "X-Image-Meta-Checksum", klen) == 0) {
		copy_value(t->meta->checksum, sizeof(t->meta->checksum), v, vlen);
		for (char *p = t->meta->checksum; *p; p++)
			if (*p >= 'A' && *p <= 'F')
				*p = (char)(*p - 'A' + 'a');
	} else if (klen == 24 && strncasecmp(buf, "X-Image-Meta-Disk_format", klen) == 0)
		copy_value(t->meta->disk_format, sizeof(t->meta->disk_format), v, vlen);
	else if (klen == 17 && strncasecmp(buf, "X-Image-Meta-Name", klen) == 0)
		copy_value(t->meta->name, sizeof(t->meta->name), v, vlen);
	else if (klen == 17 && strncasecmp(buf, "X-Image-Meta-Size", klen) == 0) {
		copy_value(tmp, sizeof(tmp), v, vlen);
		char *end;
		errno = 0;
		long long s = strtoll(tmp, &end, 10);
		if (errno == 0 && end != tmp && *end == 0 && s >= 0)
			t->meta->size = s;
	}
	return len;
}

static size_t on_data(char *buf, size_t size, size_t n, void *userdata)
{
	struct transfer *t = userdata;
	size_t len = size * n;
	t->write_error = pipeline_push(t->pipeline, (const uint8_t *)buf, len);
	if (t->write_error < 0)
		return 0; /* aborts the transfer */
	t->bytes += len;
	if (t->progress)
		atomic_store(t->progress, t->bytes);
	return len;
}

static CURL *easy(const char *url, const char *token, struct curl_slist **ret_headers)
{
	CURL *c = curl_easy_init();
	if (!c)
		return NULL;
	_cleanup_free_ char *auth = NULL;
	if (asprintf(&auth, "X-Auth-Token: %s", token ? token : "") < 0) {
		curl_easy_cleanup(c);
		return NULL;
	}
	struct curl_slist *h = curl_slist_append(NULL, auth);
	explicit_bzero(auth, strlen(auth));
	if (!h) {
		curl_easy_cleanup(c);
		return NULL;
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)CONNECT_TIMEOUT_S);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	*ret_headers = h;
	return c;
}

/* Runs the transfer C and frees it and its headers H; the HTTP status (0 when there was no
 * answer) goes to *STATUS and, when RET_STATUS is not NULL, to *RET_STATUS. */
static CURLcode perform(CURL *c, struct curl_slist *h, long *status, long *ret_status)
{
	CURLcode cc = curl_easy_perform(c);
	*status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	if (ret_status)
		*ret_status = *status;
	return cc;
}

int imagefetch_head(const char *url, const char *token, struct image_meta *ret, long *ret_status)
{
	struct image_meta meta = {.size = -1};
	struct transfer t = {.meta = &meta};
	struct curl_slist *h = NULL;
	CURL *c = easy(url, token, &h);
	if (!c)
		return -ENOMEM;
	curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)HEAD_TIMEOUT_MS);
	long status;
	CURLcode cc = perform(c, h, &status, ret_status);
	if (cc != CURLE_OK)
		return curl_error(cc);
	int r = status_error(status);
	if (r < 0)
		return r;
	*ret = meta;
	return 0;
}

int imagefetch_get(const char *url, const char *token, int fd, _Atomic uint64_t *progress,
		   char ret_md5[IMAGE_MD5_HEX], uint64_t *ret_bytes, long *ret_status)
{
	struct pipeline pipeline;
	struct transfer t = {.progress = progress, .pipeline = &pipeline};
	struct curl_slist *h = NULL;
	CURL *c = easy(url, token, &h);
	if (!c)
		return -ENOMEM;
	int r = pipeline_start(&pipeline, fd);
	if (r < 0) {
		curl_easy_cleanup(c);
		curl_slist_free_all(h);
		return r;
	}
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
	curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
	curl_easy_setopt(c, CURLOPT_BUFFERSIZE, (long)BUFFER_SIZE);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, (long)STALL_BYTES);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)STALL_SECONDS);
	long status;
	CURLcode cc = perform(c, h, &status, ret_status);
	uint8_t d[MD5_DIGEST_SIZE];
	bool complete = cc == CURLE_OK && !t.write_error && status_error(status) == 0;
	r = pipeline_stop(&pipeline, complete, d);
	if (r < 0)
		return r;
	if (cc == CURLE_HTTP_RETURNED_ERROR)
		return status_error(status) ?: -EREMOTEIO;
	if (cc != CURLE_OK)
		return curl_error(cc);
	r = status_error(status);
	if (r < 0)
		return r;
	hex(d, sizeof(d), ret_md5);
	*ret_bytes = t.bytes;
	return 0;
}

int imagefetch_file_md5(const char *path, char ret_md5[IMAGE_MD5_HEX])
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	_cleanup_free_ uint8_t *buf = malloc(BUFFER_SIZE);
	if (!buf)
		return -ENOMEM;
	struct md5_ctx md5;
	md5_init(&md5);
	for (;;) {
		ssize_t n = read(fd, buf, BUFFER_SIZE);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		md5_update(&md5, (size_t)n, buf);
	}
	uint8_t d[MD5_DIGEST_SIZE];
	md5_digest(&md5, sizeof(d), d);
	hex(d, sizeof(d), ret_md5);
	return 0;
}

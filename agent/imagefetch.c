#include <curl/curl.h>
#include <fcntl.h>
#include <nettle/md5.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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
/* The hasher's ring: the stream is copied into it as it is written to the file. */
#define RING_SLOTS     8
#define RING_SLOT_SIZE (1024 * 1024)

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

/* The MD5 and the writeback run on threads of their own, beside the one that receives: MD5 is
 * about as slow as the network on loopback (600 MB/s), and sync_file_range blocks while the
 * device's queue is full, so on the receiving thread the two added to the transfer time; here
 * they overlap with it and with each other. The receiver writes each piece to the file first
 * and then copies it into a ring of RING_SLOTS buffers (no second pass over the file); the
 * hasher hashes full slots in order; the flusher starts writeback of every WRITEBACK_CHUNK
 * written, so the disk is busy from the start and the final fsync has little left to do. */
struct hasher {
	pthread_t thread, flusher;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint8_t *slot[RING_SLOTS];
	size_t len[RING_SLOTS];
	unsigned tail, full; /* first full slot, full slots; the receiver fills (tail+full)%N */
	bool eof, abort;
	uint64_t written; /* bytes in the file, under mu */
	int fd;
	struct md5_ctx md5;
};

static void *hasher_main(void *userdata)
{
	struct hasher *h = userdata;
	for (;;) {
		pthread_mutex_lock(&h->mu);
		while (h->full == 0 && !h->eof && !h->abort)
			pthread_cond_wait(&h->cv, &h->mu);
		if (h->abort || h->full == 0) {
			pthread_mutex_unlock(&h->mu);
			return NULL;
		}
		unsigned i = h->tail;
		pthread_mutex_unlock(&h->mu);

		md5_update(&h->md5, h->len[i], h->slot[i]);

		pthread_mutex_lock(&h->mu);
		h->len[i] = 0;
		h->tail = (h->tail + 1) % RING_SLOTS;
		h->full--;
		pthread_cond_broadcast(&h->cv);
		pthread_mutex_unlock(&h->mu);
	}
}

static void *flusher_main(void *userdata)
{
	struct hasher *h = userdata;
	uint64_t flushed = 0;
	pthread_mutex_lock(&h->mu);
	for (;;) {
		while (h->written - flushed < WRITEBACK_CHUNK && !h->eof && !h->abort)
			pthread_cond_wait(&h->cv, &h->mu);
		if (h->eof || h->abort)
			break;
		uint64_t written = h->written;
		pthread_mutex_unlock(&h->mu);
		(void)sync_file_range(h->fd, (off64_t)flushed, (off64_t)(written - flushed),
				      SYNC_FILE_RANGE_WRITE);
		flushed = written;
		pthread_mutex_lock(&h->mu);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

static int hasher_start(struct hasher *h, int fd)
{
	*h = (struct hasher){.fd = fd};
	md5_init(&h->md5);
	for (unsigned i = 0; i < RING_SLOTS; i++)
		if (!(h->slot[i] = malloc(RING_SLOT_SIZE)))
			goto nomem;
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->cv, NULL);
	int r = -pthread_create(&h->thread, NULL, hasher_main, h);
	if (r == 0) {
		r = -pthread_create(&h->flusher, NULL, flusher_main, h);
		if (r == 0)
			return 0;
		pthread_mutex_lock(&h->mu);
		h->abort = true;
		pthread_cond_broadcast(&h->cv);
		pthread_mutex_unlock(&h->mu);
		pthread_join(h->thread, NULL);
	}
	pthread_cond_destroy(&h->cv);
	pthread_mutex_destroy(&h->mu);
nomem:
	for (unsigned i = 0; i < RING_SLOTS; i++)
		free(h->slot[i]);
	return -ENOMEM;
}

/* The receiver: n bytes already written to the file, copied into the ring. */
static void hasher_push(struct hasher *h, const uint8_t *buf, size_t n)
{
	pthread_mutex_lock(&h->mu);
	h->written += n;
	if (h->written % WRITEBACK_CHUNK < n)
		pthread_cond_broadcast(&h->cv); /* a chunk for the flusher */
	while (n > 0) {
		while (h->full == RING_SLOTS)
			pthread_cond_wait(&h->cv, &h->mu);
		unsigned i = (h->tail + h->full) % RING_SLOTS;
		pthread_mutex_unlock(&h->mu);
		size_t k = MIN(RING_SLOT_SIZE - h->len[i], n);
		memcpy(h->slot[i] + h->len[i], buf, k);
		h->len[i] += k;
		buf += k, n -= k;
		pthread_mutex_lock(&h->mu);
		if (h->len[i] == RING_SLOT_SIZE) {
			h->full++;
			pthread_cond_broadcast(&h->cv);
		}
	}
	pthread_mutex_unlock(&h->mu);
}

/* Ends the hasher: with complete, after hashing the rest, and the digest goes to d; without,
 * at once. */
static void hasher_stop(struct hasher *h, bool complete, uint8_t d[MD5_DIGEST_SIZE])
{
	pthread_mutex_lock(&h->mu);
	if (complete) {
		unsigned i = (h->tail + h->full) % RING_SLOTS;
		if (h->len[i] > 0 && h->full < RING_SLOTS)
			h->full++;
		h->eof = true;
	} else
		h->abort = true;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
	pthread_join(h->thread, NULL);
	pthread_join(h->flusher, NULL);
	if (complete)
		md5_digest(&h->md5, MD5_DIGEST_SIZE, d);
	pthread_cond_destroy(&h->cv);
	pthread_mutex_destroy(&h->mu);
	for (unsigned i = 0; i < RING_SLOTS; i++)
		free(h->slot[i]);
}

struct transfer {
	struct image_meta *meta;
	int fd;
	int write_error;
	struct hasher *hasher;
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
	for (size_t off = 0; off < len;) {
		ssize_t w = write(t->fd, buf + off, len - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			t->write_error = -errno;
			return 0; /* aborts the transfer */
		}
		off += (size_t)w;
	}
	t->bytes += len;
	hasher_push(t->hasher, (const uint8_t *)buf, len);
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
	struct transfer t = {.meta = &meta, .fd = -1};
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
	struct hasher hasher;
	struct transfer t = {.fd = fd, .progress = progress, .hasher = &hasher};
	struct curl_slist *h = NULL;
	CURL *c = easy(url, token, &h);
	if (!c)
		return -ENOMEM;
	if (hasher_start(&hasher, fd) < 0) {
		curl_easy_cleanup(c);
		curl_slist_free_all(h);
		return -ENOMEM;
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
	hasher_stop(&hasher, complete, d);
	if (t.write_error)
		return t.write_error;
	if (cc == CURLE_HTTP_RETURNED_ERROR)
		return status_error(status) ?: -EREMOTEIO;
	if (cc != CURLE_OK)
		return curl_error(cc);
	int r = status_error(status);
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

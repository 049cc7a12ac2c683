#include <ctype.h>
#include <curl/curl.h>
#include <pthread.h>
#include <strings.h>

#include "common/http-client.h"
#include "common/macros.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init_once(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct sink {
	char *body;
	size_t len, cap, max;
	char **headers;
	size_t n_headers;
	bool too_big;
	bool oom;
};

#define MAX_HEADERS	 128
#define MAX_HEADER_BYTES 8192

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct sink *s = userdata;
	size_t n = size * nmemb;
	int r = buf_append(&s->body, &s->len, &s->cap, s->max, ptr, n);
	if (r < 0) {
		if (r == -EFBIG)
			s->too_big = true;
		else
			s->oom = true;
		return 0;
	}
	return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct sink *s = userdata;
	size_t n = size * nmemb;
	/* A new status line (redirects are not followed, but 100-continue precedes the real one)
	 * starts a new header block. */
	if (n >= 5 && strneq(ptr, "HTTP/", 5)) {
		s->headers = strv_free(s->headers);
		s->n_headers = 0;
		return n;
	}
	size_t l = n;
	while (l > 0 && (ptr[l - 1] == '\r' || ptr[l - 1] == '\n'))
		l--;
	const char *colon = memchr(ptr, ':', l);
	if (!colon || l > MAX_HEADER_BYTES)
		return n;
	if (s->n_headers >= MAX_HEADERS) {
		s->too_big = true;
		return 0;
	}
	size_t nl = (size_t)(colon - ptr);
	const char *v = colon + 1;
	while (v < ptr + l && (*v == ' ' || *v == '\t'))
		v++;
	size_t vl = (size_t)(ptr + l - v);
	char *h = malloc(nl + 2 + vl + 1);
	if (!h) {
		s->oom = true;
		return 0;
	}
	for (size_t i = 0; i < nl; i++)
		h[i] = (char)tolower((unsigned char)ptr[i]);
	memcpy(h + nl, ": ", 2);
	memcpy(h + nl + 2, v, vl);
	h[nl + 2 + vl] = 0;
	if (strv_push(&s->headers, h) < 0) {
		s->oom = true;
		return 0;
	}
	s->n_headers++;
	return n;
}

static int curl_code_to_errno(CURLcode c)
{
	switch (c) {
	case CURLE_OK:
		return 0;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return -EHOSTUNREACH;
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
		return -EINVAL;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
		return -EPROTO;
	default:
		return -EIO;
	}
}

struct http_transfer {
	CURL *easy;
	struct curl_slist *headers;
	struct sink sink;
};

struct http_transfer *http_transfer_free(struct http_transfer *t)
{
	if (!t)
		return NULL;
	if (t->easy)
		curl_easy_cleanup(t->easy);
	curl_slist_free_all(t->headers);
	free(t->sink.body);
	strv_free(t->sink.headers);
	free(t);
	return NULL;
}

static void http_transfer_freep(struct http_transfer **t)
{
	http_transfer_free(*t);
}

static int append_header(struct curl_slist **l, const char *h)
{
	struct curl_slist *n = curl_slist_append(*l, h);
	if (!n)
		return -ENOMEM;
	*l = n;
	return 0;
}

int http_transfer_new(const struct http_request *req, void *userdata, struct http_transfer **ret)
{
	if (!req || !req->url || !req->method || !ret)
		return -EINVAL;
	for (const char *m = req->method; *m; m++)
		if (!isupper((unsigned char)*m))
			return -EINVAL;
	pthread_once(&curl_once, curl_init_once);
	if (curl_init_result != CURLE_OK)
		return -EIO;

	_cleanup_(http_transfer_freep) struct http_transfer *t = calloc(1, sizeof(*t));
	if (!t || !(t->easy = curl_easy_init()))
		return -ENOMEM;
	STRV_FOREACH (h, req->headers)
		if (append_header(&t->headers, *h) < 0)
			return -ENOMEM;
	if (req->body) {
		_cleanup_free_ char *ct = strjoin(
		    "Content-Type: ", req->content_type ? req->content_type : "application/json");
		if (!ct || append_header(&t->headers, ct) < 0)
			return -ENOMEM;
	}
	/* No "Expect: 100-continue" round trip for small JSON bodies. */
	if (append_header(&t->headers, "Expect:") < 0)
		return -ENOMEM;

	t->sink.max = req->max_response ? req->max_response : HTTP_DEFAULT_MAX_RESPONSE;
	long timeout = req->timeout_ms > 0   ? req->timeout_ms
		       : req->timeout_ms < 0 ? 0 /* none */
					     : HTTP_DEFAULT_TIMEOUT_MS;
	CURL *c = t->easy;
	CURLcode cc = CURLE_OK;
#define SETOPT(o, v)                                                                               \
	do {                                                                                       \
		if (cc == CURLE_OK)                                                                \
			cc = curl_easy_setopt(c, o, v);                                            \
	} while (0)
	SETOPT(CURLOPT_URL, req->url);
#if LIBCURL_VERSION_NUM >= 0x075500
	SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
#else
	SETOPT(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	SETOPT(CURLOPT_CUSTOMREQUEST, req->method);
	if (streq(req->method, "HEAD"))
		SETOPT(CURLOPT_NOBODY, 1L);
	SETOPT(CURLOPT_HTTPHEADER, t->headers);
	if (req->body) {
		SETOPT(CURLOPT_POSTFIELDS, req->body);
		SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
	}
	SETOPT(CURLOPT_TIMEOUT_MS, timeout);
	SETOPT(CURLOPT_CONNECTTIMEOUT_MS, timeout > 0 ? MIN(timeout, 5000L) : 5000L);
	if (req->unix_socket)
		SETOPT(CURLOPT_UNIX_SOCKET_PATH, req->unix_socket);
	SETOPT(CURLOPT_NOSIGNAL, 1L);
	/* One connection per request, closed after it, also on a multi handle: an idle kept-alive
	 * connection pins a single-threaded server (keystone's own WSGI server serves one
	 * connection at a time), and the next request would wait for its idle timeout. */
	SETOPT(CURLOPT_FORBID_REUSE, 1L);
	SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(CURLOPT_SSL_VERIFYPEER, req->insecure ? 0L : 1L);
	SETOPT(CURLOPT_SSL_VERIFYHOST, req->insecure ? 0L : 2L);
	if (req->ca_file)
		SETOPT(CURLOPT_CAINFO, req->ca_file);
	SETOPT(CURLOPT_WRITEFUNCTION, on_body);
	SETOPT(CURLOPT_WRITEDATA, &t->sink);
	SETOPT(CURLOPT_HEADERFUNCTION, on_header);
	SETOPT(CURLOPT_HEADERDATA, &t->sink);
	SETOPT(CURLOPT_USERAGENT, "hostagent/" PACKAGE_VERSION);
	SETOPT(CURLOPT_PRIVATE, userdata);
#undef SETOPT
	if (cc != CURLE_OK)
		return curl_code_to_errno(cc);
	*ret = TAKE_PTR(t);
	return 0;
}

void *http_transfer_handle(struct http_transfer *t)
{
	return t->easy;
}

int http_transfer_finish(struct http_transfer *t, int curl_code, struct http_response *ret)
{
	struct sink *s = &t->sink;
	int r = 0;
	if (s->oom)
		r = -ENOMEM;
	else if (s->too_big)
		r = -EFBIG;
	else if (curl_code != CURLE_OK)
		r = curl_code_to_errno((CURLcode)curl_code);
	if (r == 0 && !s->body && !(s->body = strdup("")))
		r = -ENOMEM;
	if (r < 0)
		return r;
	long status = 0;
	curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
	*ret = (struct http_response){
	    .status = status,
	    .headers = TAKE_PTR(s->headers),
	    .body = TAKE_PTR(s->body),
	    .body_len = s->len,
	};
	s->n_headers = 0;
	s->len = s->cap = 0;
	return 0;
}

int http_request_run(const struct http_request *req, struct http_response *ret)
{
	if (!ret)
		return -EINVAL;
	_cleanup_(http_transfer_freep) struct http_transfer *t = NULL;
	int r = http_transfer_new(req, NULL, &t);
	if (r < 0)
		return r;
	CURLcode cc = curl_easy_perform(t->easy);
	return http_transfer_finish(t, cc, ret);
}

void http_response_done(struct http_response *resp)
{
	if (!resp)
		return;
	resp->headers = strv_free(resp->headers);
	free(resp->body);
	resp->body = NULL;
	resp->body_len = 0;
	resp->status = 0;
}

const char *http_response_header(const struct http_response *resp, const char *name)
{
	size_t l = strlen(name);
	STRV_FOREACH (h, resp->headers)
		if (strncasecmp(*h, name, l) == 0 && (*h)[l] == ':')
			return *h + l + 2;
	return NULL;
}

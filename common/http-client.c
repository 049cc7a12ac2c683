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
	if (n > s->max - s->len) {
		s->too_big = true;
		return 0;
	}
	if (s->len + n + 1 > s->cap) {
		size_t cap = MAX(s->cap * 2, s->len + n + 1);
		cap = MIN(cap, s->max + 1);
		char *b = realloc(s->body, cap);
		if (!b) {
			s->oom = true;
			return 0;
		}
		s->body = b;
		s->cap = cap;
	}
	memcpy(s->body + s->len, ptr, n);
	s->len += n;
	s->body[s->len] = 0;
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

static void curl_slist_freep(struct curl_slist **l)
{
	curl_slist_free_all(*l);
}

static void curl_easy_cleanupp(CURL **c)
{
	if (*c)
		curl_easy_cleanup(*c);
}

int http_request_run(const struct http_request *req, struct http_response *ret)
{
	if (!req || !req->url || !req->method || !ret)
		return -EINVAL;
	for (const char *m = req->method; *m; m++)
		if (!isupper((unsigned char)*m))
			return -EINVAL;
	pthread_once(&curl_once, curl_init_once);
	if (curl_init_result != CURLE_OK)
		return -EIO;

	_cleanup_(curl_easy_cleanupp) CURL *c = curl_easy_init();
	if (!c)
		return -ENOMEM;
	_cleanup_(curl_slist_freep) struct curl_slist *hl = NULL;
	STRV_FOREACH (h, req->headers) {
		struct curl_slist *n = curl_slist_append(hl, *h);
		if (!n)
			return -ENOMEM;
		hl = n;
	}
	if (req->body) {
		_cleanup_free_ char *ct = strjoin(
		    "Content-Type: ", req->content_type ? req->content_type : "application/json");
		if (!ct)
			return -ENOMEM;
		struct curl_slist *n = curl_slist_append(hl, ct);
		if (!n)
			return -ENOMEM;
		hl = n;
	}
	/* No "Expect: 100-continue" round trip for small JSON bodies. */
	struct curl_slist *n = curl_slist_append(hl, "Expect:");
	if (!n)
		return -ENOMEM;
	hl = n;

	struct sink s = {.max = req->max_response ? req->max_response : HTTP_DEFAULT_MAX_RESPONSE};
	long timeout = req->timeout_ms > 0 ? req->timeout_ms : HTTP_DEFAULT_TIMEOUT_MS;
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
	SETOPT(CURLOPT_HTTPHEADER, hl);
	if (req->body) {
		SETOPT(CURLOPT_POSTFIELDS, req->body);
		SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
	}
	SETOPT(CURLOPT_TIMEOUT_MS, timeout);
	SETOPT(CURLOPT_CONNECTTIMEOUT_MS, MIN(timeout, 5000L));
	SETOPT(CURLOPT_NOSIGNAL, 1L);
	SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(CURLOPT_SSL_VERIFYPEER, req->insecure ? 0L : 1L);
	SETOPT(CURLOPT_SSL_VERIFYHOST, req->insecure ? 0L : 2L);
	if (req->ca_file)
		SETOPT(CURLOPT_CAINFO, req->ca_file);
	SETOPT(CURLOPT_WRITEFUNCTION, on_body);
	SETOPT(CURLOPT_WRITEDATA, &s);
	SETOPT(CURLOPT_HEADERFUNCTION, on_header);
	SETOPT(CURLOPT_HEADERDATA, &s);
	SETOPT(CURLOPT_USERAGENT, "hostagent/" PACKAGE_VERSION);
#undef SETOPT
	if (cc == CURLE_OK)
		cc = curl_easy_perform(c);
	int r = 0;
	if (s.oom)
		r = -ENOMEM;
	else if (s.too_big)
		r = -EFBIG;
	else if (cc != CURLE_OK)
		r = curl_code_to_errno(cc);
	if (r == 0 && !s.body && !(s.body = strdup("")))
		r = -ENOMEM;
	if (r < 0) {
		free(s.body);
		strv_free(s.headers);
		return r;
	}
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	*ret = (struct http_response){
	    .status = status,
	    .headers = s.headers,
	    .body = s.body,
	    .body_len = s.len,
	};
	return 0;
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

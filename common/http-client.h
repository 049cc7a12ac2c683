/* The libcurl seam: one blocking HTTP request, meant for worker threads (agent/tasks.h) and
 * command-line tools, never for the event loop (agent/httploop.h drives the same requests
 * there). TLS peers are verified unless a request says otherwise. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define HTTP_DEFAULT_MAX_RESPONSE (1024 * 1024)
#define HTTP_DEFAULT_TIMEOUT_MS	  10000

struct http_request {
	const char *method; /* "GET", "POST", ... */
	const char *url;
	char **headers;	  /* "Name: value" strings, NULL-terminated; may be NULL */
	const char *body; /* sent when not NULL, see content_type */
	size_t body_len;
	long timeout_ms;     /* whole transfer; 0: HTTP_DEFAULT_TIMEOUT_MS, < 0: none */
	size_t max_response; /* body cap; 0: HTTP_DEFAULT_MAX_RESPONSE */
	const char *ca_file; /* NULL: the system trust store */
	bool insecure;	     /* skip TLS verification (tests only) */
	/* Content-Type of body; NULL: application/json (ocreconciler sends apply patches). */
	const char *content_type;
	/* Connect to this unix socket instead of the URL's host (hostctl: the admin socket). */
	const char *unix_socket;
};

struct http_response {
	long status;
	char **headers; /* "name: value" with the name lowercased, NULL-terminated */
	char *body;	/* NUL-terminated (may be empty, never NULL after success) */
	size_t body_len;
};

/* Runs req. Returns 0 with *ret filled whatever the HTTP status; a negative errno when no
 * response came: -ETIMEDOUT, -ECONNREFUSED, -EHOSTUNREACH (resolution), -EPROTO (TLS),
 * -EFBIG (response over the cap), -EINVAL (bad URL or method), -EIO otherwise. */
int http_request_run(const struct http_request *req, struct http_response *ret);
void http_response_done(struct http_response *resp);

/* The same request driven by a caller's curl multi handle (agent/httploop.c): new prepares
 * the easy handle (req's body must outlive the transfer; the rest is copied), handle returns
 * it (a CURL *; CURLINFO_PRIVATE gives userdata back), finish turns curl's result code into
 * what http_request_run returns. */
struct http_transfer;
int http_transfer_new(const struct http_request *req, void *userdata, struct http_transfer **ret);
void *http_transfer_handle(struct http_transfer *t);
int http_transfer_finish(struct http_transfer *t, int curl_code, struct http_response *ret);
struct http_transfer *http_transfer_free(struct http_transfer *t);
/* Value of the first header called name (case-insensitive), or NULL. */
const char *http_response_header(const struct http_response *resp, const char *name);

/* A scripted HTTP server on loopback for the unit tests: answers requests in order with the
 * given replies (the last one repeats) and records what it received. fake_http_start() on a
 * zeroed struct fake_http; port is the one it listens on; replies and n_replies are set before
 * the first request. fake_http_stop() ends it and frees the replies' and requests' bodies. */
#pragma once

#include <pthread.h>
#include <stddef.h>

#define FAKE_HTTP_MAX 16

struct fake_http_reply {
	int status;
	const char *headers; /* extra lines, each ending in \r\n */
	char *body;	     /* owned: freed by fake_http_stop() */
};

struct fake_http_seen {
	char method[16];
	char path[256];
	char token[512]; /* X-Auth-Token */
	char *head;	 /* request line and headers, up to the blank line */
	char *body;
};

struct fake_http {
	int fd;
	int port;
	pthread_t thread;
	pthread_mutex_t lock;
	struct fake_http_reply replies[FAKE_HTTP_MAX];
	size_t n_replies;
	struct fake_http_seen seen[FAKE_HTTP_MAX]; /* past the last, the last is overwritten */
	size_t n_seen;
};

void fake_http_start(struct fake_http *s);
void fake_http_stop(struct fake_http *s);
/* How many requests it has answered or is answering. */
size_t fake_http_seen(struct fake_http *s);

/* A scripted HTTP server on loopback for the region and auth unit tests: answers requests
 * in order with the given replies (the last one repeats) and records what it received. */
#pragma once

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>

#include "agent/agent.h"
#include "agent/region.h"
#include "agent/tasks.h"
#include "tests/unit/test-common.h"

static inline json_t *load_fixture(const char *name)
{
	_cleanup_free_ char *p = test_data(name);
	json_error_t err;
	json_t *j = json_load_file(p, 0, &err);
	assert_non_null(j);
	return j;
}

/* ---- a scripted HTTP server ---- */

struct reply {
	int status;
	const char *headers; /* extra lines, each ending in \r\n */
	char *body;
};

struct seen {
	char method[16];
	char path[256];
	char token[512];
	char *body;
};

struct server {
	int fd;
	int port;
	pthread_t thread;
	pthread_mutex_t lock;
	struct reply replies[16];
	size_t n_replies;
	struct seen seen[16];
	size_t n_seen;
};

static inline void header_value(const char *req, const char *name, char *out, size_t out_len)
{
	out[0] = 0;
	const char *p = strcasestr(req, name);
	if (!p)
		return;
	p += strlen(name);
	while (*p == ' ')
		p++;
	size_t n = strcspn(p, "\r\n");
	snprintf(out, out_len, "%.*s", (int)MIN(n, out_len - 1), p);
}

static inline void *server_main(void *arg)
{
	struct server *s = arg;
	for (;;) {
		int c = accept(s->fd, NULL, NULL);
		if (c < 0)
			return NULL;
		char buf[65536];
		size_t len = 0;
		char *end = NULL;
		while (len < sizeof(buf) - 1) {
			ssize_t n = read(c, buf + len, sizeof(buf) - 1 - len);
			if (n <= 0)
				break;
			len += (size_t)n;
			buf[len] = 0;
			if ((end = strstr(buf, "\r\n\r\n"))) {
				char cl[32];
				header_value(buf, "\ncontent-length:", cl, sizeof(cl));
				size_t want =
				    (size_t)(end + 4 - buf) + (size_t)strtoul(cl, NULL, 10);
				if (len >= want)
					break;
			}
		}
		pthread_mutex_lock(&s->lock);
		struct seen *sn = &s->seen[s->n_seen < 16 ? s->n_seen++ : 15];
		sscanf(buf, "%15s %255s", sn->method, sn->path);
		header_value(buf, "\nx-auth-token:", sn->token, sizeof(sn->token));
		free(sn->body);
		sn->body = strdup(end ? end + 4 : "");
		size_t idx = s->n_seen - 1 < s->n_replies ? s->n_seen - 1 : s->n_replies - 1;
		struct reply rp = s->replies[idx];
		pthread_mutex_unlock(&s->lock);
		char head[1024];
		const char *body = rp.body ? rp.body : "";
		int hl = snprintf(head, sizeof(head),
				  "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n%s"
				  "Content-Length: %zu\r\nConnection: close\r\n\r\n",
				  rp.status, rp.headers ? rp.headers : "", strlen(body));
		(void)!write(c, head, (size_t)hl);
		(void)!write(c, body, strlen(body));
		close(c);
	}
}

static inline void server_start(struct server *s)
{
	s->fd = test_listen_loopback(16, &s->port);
	pthread_mutex_init(&s->lock, NULL);
	assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
}

static inline void server_stop(struct server *s)
{
	shutdown(s->fd, SHUT_RDWR);
	pthread_join(s->thread, NULL);
	close(s->fd);
	for (size_t i = 0; i < 16; i++)
		free(s->seen[i].body);
	for (size_t i = 0; i < s->n_replies; i++)
		free(s->replies[i].body);
	pthread_mutex_destroy(&s->lock);
}

static inline size_t server_seen(struct server *s)
{
	pthread_mutex_lock(&s->lock);
	size_t n = s->n_seen;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* ---- the region session against the scripted server ---- */

struct fixture {
	struct agent a;
	struct server s;
	struct region *r;
};

static inline void fixture_init(struct fixture *f)
{
	assert_int_equal(config_init(&f->a.cfg), 0);
	assert_int_equal(sd_event_new(&f->a.event), 0);
	assert_int_equal(tasks_new(f->a.event, 2, 64, &f->a.tasks), 0);
	server_start(&f->s);
	struct config *c = &f->a.cfg;
	assert_int_equal(asprintf_safe(&c->auth_url, "http://127.0.0.1:%d/v3/", f->s.port), 0);
	c->admin_user = strdup("hostagent");
	c->admin_password = strdup("pw");
	free(c->region);
	c->region = strdup("RegionOne");
}

static inline void fixture_done(struct fixture *f)
{
	f->r = region_free(f->r);
	f->a.tasks = tasks_free(f->a.tasks);
	sd_event_unref(f->a.event);
	server_stop(&f->s);
	config_done(&f->a.cfg);
}

/* The captured token body, with the compute endpoints pointing at the scripted server. */
static inline char *auth_body(int port)
{
	json_auto_t *j = load_fixture("keystone/auth-catalog.json");
	_cleanup_free_ char *url = NULL;
	assert_int_equal(asprintf_safe(&url, "http://127.0.0.1:%d/region/", port), 0);
	size_t i, k;
	json_t *svc, *ep;
	json_array_foreach (json_object_get(json_object_get(j, "token"), "catalog"), i, svc) {
		if (!streq(json_string_value(json_object_get(svc, "type")), "compute"))
			continue;
		json_array_foreach (json_object_get(svc, "endpoints"), k, ep)
			json_object_set_new(ep, "url", json_string(url));
	}
	return json_dumps(j, 0);
}

static inline void run_until(struct fixture *f, size_t n_seen, unsigned timeout_s)
{
	time_t end = time(NULL) + timeout_s;
	while (server_seen(&f->s) < n_seen && time(NULL) < end)
		assert_true(sd_event_run(f->a.event, 100000) >= 0);
	/* Let the last completion reach the loop. */
	for (int i = 0; i < 5; i++)
		assert_true(sd_event_run(f->a.event, 50000) >= 0);
}

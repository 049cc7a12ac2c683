#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/unit/fake-http.h"
#include "tests/unit/test-common.h"

static void header_value(const char *req, const char *name, char *out, size_t out_len)
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

static void *fake_http_main(void *arg)
{
	struct fake_http *s = arg;
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
		buf[len] = 0;
		pthread_mutex_lock(&s->lock);
		struct fake_http_seen *sn =
		    &s->seen[s->n_seen < FAKE_HTTP_MAX ? s->n_seen++ : FAKE_HTTP_MAX - 1];
		sscanf(buf, "%15s %255s", sn->method, sn->path);
		header_value(buf, "\nx-auth-token:", sn->token, sizeof(sn->token));
		free(sn->head);
		sn->head = end ? strndup(buf, (size_t)(end + 4 - buf)) : strdup(buf);
		free(sn->body);
		sn->body = strdup(end ? end + 4 : "");
		size_t idx = s->n_seen - 1 < s->n_replies ? s->n_seen - 1 : s->n_replies - 1;
		struct fake_http_reply rp = s->replies[idx];
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

void fake_http_start(struct fake_http *s)
{
	s->fd = test_listen_loopback(FAKE_HTTP_MAX, &s->port);
	pthread_mutex_init(&s->lock, NULL);
	assert_int_equal(pthread_create(&s->thread, NULL, fake_http_main, s), 0);
}

void fake_http_stop(struct fake_http *s)
{
	shutdown(s->fd, SHUT_RDWR);
	pthread_join(s->thread, NULL);
	close(s->fd);
	for (size_t i = 0; i < FAKE_HTTP_MAX; i++) {
		free(s->seen[i].head);
		free(s->seen[i].body);
	}
	for (size_t i = 0; i < s->n_replies; i++)
		free(s->replies[i].body);
	pthread_mutex_destroy(&s->lock);
}

size_t fake_http_seen(struct fake_http *s)
{
	pthread_mutex_lock(&s->lock);
	size_t n = s->n_seen;
	pthread_mutex_unlock(&s->lock);
	return n;
}

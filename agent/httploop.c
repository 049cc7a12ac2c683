#include <curl/curl.h>
#include <sys/epoll.h>

#include "agent/httploop.h"
#include "common/event-util.h"
#include "common/http-client.h"
#include "common/log.h"
#include "common/macros.h"

/* A socket curl asked us to watch (curl_multi_assign keeps the pointer for its fd). */
struct loop_socket {
	struct httploop *loop;
	struct loop_socket *prev, *next;
	sd_event_source *source;
};

struct httploop_req {
	struct httploop *loop;
	struct httploop_req *prev, *next;
	struct http_transfer *transfer;
	char *body; /* curl reads it in place (CURLOPT_POSTFIELDS) */
	httploop_done_fn done;
	void *userdata;
};

struct httploop {
	sd_event *event;
	CURLM *multi;
	sd_event_source *timer;
	struct loop_socket *sockets;
	struct httploop_req *reqs;
	size_t n_reqs, max_reqs;
};

static void req_free(struct httploop_req *q)
{
	struct httploop *l = q->loop;
	if (q->prev)
		q->prev->next = q->next;
	else
		l->reqs = q->next;
	if (q->next)
		q->next->prev = q->prev;
	l->n_reqs--;
	q->transfer = http_transfer_free(q->transfer);
	if (q->body) {
		/* Bodies carry passwords (keystone) and region data. */
		explicit_bzero(q->body, strlen(q->body));
		free(q->body);
	}
	free(q);
}

/* Hands every finished transfer to its owner. */
static void collect(struct httploop *l)
{
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(l->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		CURL *easy = m->easy_handle;
		CURLcode cc = m->data.result;
		char *priv = NULL;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
		struct httploop_req *q = (struct httploop_req *)(void *)priv;
		curl_multi_remove_handle(l->multi, easy);
		if (!q)
			continue;
		struct http_response resp = {0};
		int r = http_transfer_finish(q->transfer, (int)cc, &resp);
		httploop_done_fn done = q->done;
		void *userdata = q->userdata;
		/* Freed before done runs: done may submit or cancel anything, this one included. */
		req_free(q);
		if (done)
			done(r, r < 0 ? NULL : &resp, userdata);
		http_response_done(&resp);
	}
}

static void socket_action(struct httploop *l, curl_socket_t fd, int events)
{
	int running;
	CURLMcode mc = curl_multi_socket_action(l->multi, fd, events, &running);
	if (mc != CURLM_OK)
		log_warning("curl_multi_socket_action: %s", curl_multi_strerror(mc));
	collect(l);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	int events = 0;
	if (revents & EPOLLIN)
		events |= CURL_CSELECT_IN;
	if (revents & EPOLLOUT)
		events |= CURL_CSELECT_OUT;
	if (revents & (EPOLLERR | EPOLLHUP))
		events |= CURL_CSELECT_ERR;
	socket_action(userdata, fd, events);
	return 0;
}

static void loop_socket_free(struct loop_socket *ls)
{
	struct httploop *l = ls->loop;
	if (ls->prev)
		ls->prev->next = ls->next;
	else
		l->sockets = ls->next;
	if (ls->next)
		ls->next->prev = ls->prev;
	sd_event_source_disable_unref(ls->source);
	free(ls);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct httploop *l = userp;
	struct loop_socket *ls = socketp;
	if (what == CURL_POLL_REMOVE) {
		if (ls) {
			curl_multi_assign(l->multi, fd, NULL);
			loop_socket_free(ls);
		}
		return 0;
	}
	uint32_t events = 0;
	if (what & CURL_POLL_IN)
		events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		events |= EPOLLOUT;
	if (ls)
		return sd_event_source_set_io_events(ls->source, events) < 0 ? -1 : 0;
	ls = calloc(1, sizeof(*ls));
	if (!ls)
		return -1;
	int k = sd_event_add_io(l->event, &ls->source, fd, events, on_io, l);
	if (k < 0) {
		log_warning_errno(k, "Cannot watch an HTTP connection (fd %d): %m", fd);
		free(ls);
		return -1;
	}
	ls->loop = l;
	ls->next = l->sockets;
	if (l->sockets)
		l->sockets->prev = ls;
	l->sockets = ls;
	curl_multi_assign(l->multi, fd, ls);
	return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	socket_action(userdata, CURL_SOCKET_TIMEOUT, 0);
	return 0;
}

/* curl's one timeout: -1 none, 0 as soon as possible (never act from inside this callback). */
static int on_timeout_change(CURLM *multi, long timeout_ms, void *userp)
{
	struct httploop *l = userp;
	if (timeout_ms < 0)
		return sd_event_source_set_enabled(l->timer, SD_EVENT_OFF) < 0 ? -1 : 0;
	return event_source_arm_relative(l->timer, (uint64_t)timeout_ms * USEC_PER_MSEC) < 0 ? -1
											     : 0;
}

int httploop_new(sd_event *event, size_t max_in_flight, struct httploop **ret)
{
	/* The global init of libcurl happens once, in http_transfer_new. */
	struct httploop *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->event = sd_event_ref(event);
	l->max_reqs = max_in_flight;
	int k = sd_event_add_time_relative(event, &l->timer, CLOCK_MONOTONIC, 0, 1000, on_timer, l);
	if (k >= 0)
		k = sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
	if (k >= 0 && !(l->multi = curl_multi_init()))
		k = -ENOMEM;
	if (k < 0) {
		httploop_free(l);
		return k;
	}
	curl_multi_setopt(l->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(l->multi, CURLMOPT_SOCKETDATA, l);
	curl_multi_setopt(l->multi, CURLMOPT_TIMERFUNCTION, on_timeout_change);
	curl_multi_setopt(l->multi, CURLMOPT_TIMERDATA, l);
	*ret = l;
	return 0;
}

struct httploop *httploop_free(struct httploop *l)
{
	if (!l)
		return NULL;
	while (l->reqs)
		httploop_cancel(l->reqs);
	if (l->multi)
		curl_multi_cleanup(l->multi);
	/* Sockets curl did not say it removed (connections closed by the cleanup). */
	while (l->sockets)
		loop_socket_free(l->sockets);
	sd_event_source_disable_unref(l->timer);
	sd_event_unref(l->event);
	free(l);
	return NULL;
}

int httploop_submit(struct httploop *l, const struct http_request *req, httploop_done_fn done,
		    void *userdata, struct httploop_req **ret_req)
{
	if (l->n_reqs >= l->max_reqs)
		return -EBUSY;
	struct httploop_req *q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->loop = l;
	q->next = l->reqs;
	if (l->reqs)
		l->reqs->prev = q;
	l->reqs = q;
	l->n_reqs++;
	struct http_request copy = *req;
	int k = 0;
	if (req->body) {
		q->body = malloc(req->body_len + 1);
		if (!q->body)
			k = -ENOMEM;
		else {
			memcpy(q->body, req->body, req->body_len);
			q->body[req->body_len] = 0;
			copy.body = q->body;
		}
	}
	if (k >= 0)
		k = http_transfer_new(&copy, q, &q->transfer);
	if (k >= 0 &&
	    curl_multi_add_handle(l->multi, http_transfer_handle(q->transfer)) != CURLM_OK)
		k = -ENOMEM;
	if (k < 0) {
		req_free(q);
		return k;
	}
	q->done = done;
	q->userdata = userdata;
	if (ret_req)
		*ret_req = q;
	return 0;
}

void httploop_cancel(struct httploop_req *q)
{
	if (!q)
		return;
	curl_multi_remove_handle(q->loop->multi, http_transfer_handle(q->transfer));
	req_free(q);
}

size_t httploop_in_flight(const struct httploop *l)
{
	return l ? l->n_reqs : 0;
}

#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "agent/api-conns.h"
#include "common/log.h"
#include "common/macros.h"

#define TICK_USEC	   (250 * 1000ULL)
#define PRESSURE_PERCENT   90
#define PRESSURE_DEADLINE  (500 * 1000ULL)
#define PRESSURE_TICK_USEC (100 * 1000ULL)
#define LOG_INTERVAL_USEC  (10 * USEC_PER_SEC)

struct conn {
	struct conn *prev, *next;
	struct api_conns *t;
	struct MHD_Connection *c;
	int fd;
	uint64_t since;
	bool busy, cut;
};

struct api_conns {
	sd_event *event;
	sd_event_source *timer;
	struct conn *list;
	unsigned n, limit;
	uint64_t deadline;
	unsigned long cut_total, cut_unlogged;
	uint64_t last_log;
};

static uint64_t loop_now(struct api_conns *t)
{
	uint64_t n = 0;
	(void)sd_event_now(t->event, CLOCK_MONOTONIC, &n);
	return n;
}

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct api_conns *t = userdata;
	bool pressure = t->n * 100 >= (uint64_t)t->limit * PRESSURE_PERCENT;
	uint64_t deadline = pressure ? MIN(t->deadline, PRESSURE_DEADLINE) : t->deadline;
	for (struct conn *c = t->list; c; c = c->next) {
		if (c->busy || c->cut || usec < c->since + deadline)
			continue;
		/* MHD sees the end of the stream on its next read and closes the connection. */
		(void)shutdown(c->fd, SHUT_RDWR);
		c->cut = true;
		t->cut_total++;
		t->cut_unlogged++;
	}
	/* One line per interval at most: the clients doing this need no token. */
	if (t->cut_unlogged && usec >= t->last_log + LOG_INTERVAL_USEC) {
		log_notice("Closed %lu API connections that sent no complete request in time "
			   "(total %lu)",
			   t->cut_unlogged, t->cut_total);
		t->cut_unlogged = 0;
		t->last_log = usec;
	}
	sd_event_source_set_time(s, usec + (pressure ? PRESSURE_TICK_USEC : TICK_USEC));
	sd_event_source_set_enabled(s, t->n ? SD_EVENT_ON : SD_EVENT_OFF);
	return 0;
}

int api_conns_new(sd_event *e, unsigned limit, unsigned deadline_sec, struct api_conns **ret)
{
	struct api_conns *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->event = sd_event_ref(e);
	t->limit = limit ? limit : 1;
	t->deadline = (uint64_t)deadline_sec * USEC_PER_SEC;
	int r = sd_event_add_time(e, &t->timer, CLOCK_MONOTONIC, 0, TICK_USEC / 4, on_tick, t);
	if (r < 0) {
		api_conns_free(t);
		return r;
	}
	sd_event_source_set_enabled(t->timer, SD_EVENT_OFF);
	*ret = t;
	return 0;
}

struct api_conns *api_conns_free(struct api_conns *t)
{
	if (!t)
		return NULL;
	for (struct conn *c = t->list, *n; c; c = n) {
		n = c->next;
		c->t = NULL;
		c->prev = c->next = NULL;
	}
	sd_event_source_disable_unref(t->timer);
	sd_event_unref(t->event);
	free(t);
	return NULL;
}

void api_conns_notify(void *cls, struct MHD_Connection *mc, void **socket_context,
		      enum MHD_ConnectionNotificationCode toe)
{
	struct api_conns *t = cls;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		struct conn *c = calloc(1, sizeof(*c));
		if (!c)
			return;
		const union MHD_ConnectionInfo *ci =
		    MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
		c->fd = ci ? ci->connect_fd : -1;
		c->c = mc;
		c->t = t;
		c->since = loop_now(t);
		c->next = t->list;
		if (t->list)
			t->list->prev = c;
		t->list = c;
		t->n++;
		*socket_context = c;
		if (t->n == 1) {
			sd_event_source_set_time(t->timer, c->since + TICK_USEC);
			sd_event_source_set_enabled(t->timer, SD_EVENT_ON);
		}
		return;
	}
	struct conn *c = *socket_context;
	if (!c)
		return;
	*socket_context = NULL;
	if (c->t) {
		if (c->prev)
			c->prev->next = c->next;
		else
			c->t->list = c->next;
		if (c->next)
			c->next->prev = c->prev;
		c->t->n--;
	}
	free(c);
}

void api_conns_set_busy(struct MHD_Connection *mc, bool busy)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct conn *c = ci ? ci->socket_context : NULL;
	if (!c || !c->t)
		return;
	c->busy = busy;
	if (!busy)
		c->since = loop_now(c->t);
}

unsigned long api_conns_cut(const struct api_conns *t)
{
	return t ? t->cut_total : 0;
}

#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "agent/handoff.h"
#include "common/log.h"
#include "common/macros.h"

struct handoff {
	sd_event_source *source;
	int efd;
	handoff_fn deliver;
	void *userdata;
	pthread_mutex_t lock;
	struct handoff_item *head, **tail; /* posted, not yet taken by the loop */
};

void handoff_post(struct handoff *h, struct handoff_item *item)
{
	item->next = NULL;
	pthread_mutex_lock(&h->lock);
	*h->tail = item;
	h->tail = &item->next;
	pthread_mutex_unlock(&h->lock);
	/* Fails only when the counter would overflow (2^64 - 2 wake-ups unread): the loop is
	 * woken already, the item is in the list. */
	uint64_t one = 1;
	(void)!write(h->efd, &one, sizeof(one));
}

static struct handoff_item *take_all(struct handoff *h)
{
	pthread_mutex_lock(&h->lock);
	struct handoff_item *list = h->head;
	h->head = NULL;
	h->tail = &h->head;
	pthread_mutex_unlock(&h->lock);
	return list;
}

static void give_all(struct handoff_item *list, handoff_fn fn, void *userdata)
{
	while (list) {
		struct handoff_item *next = list->next;
		fn(list, userdata); /* may free the item */
		list = next;
	}
}

void handoff_run(struct handoff *h)
{
	give_all(take_all(h), h->deliver, h->userdata);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct handoff *h = userdata;
	uint64_t n;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_debug_errno(errno, "Failed to read the hand-off eventfd: %m");
	handoff_run(h);
	return 0;
}

int handoff_new(sd_event *event, handoff_fn deliver, void *userdata, struct handoff **ret)
{
	struct handoff *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	*h = (struct handoff){.efd = -1, .deliver = deliver, .userdata = userdata};
	h->tail = &h->head;
	pthread_mutex_init(&h->lock, NULL);
	h->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int r = h->efd < 0 ? negative_errno() : 0;
	if (r >= 0)
		r = sd_event_add_io(event, &h->source, h->efd, EPOLLIN, on_io, h);
	if (r < 0) {
		handoff_free(h, NULL);
		return r;
	}
	*ret = h;
	return 0;
}

struct handoff *handoff_free(struct handoff *h, handoff_fn discard)
{
	if (!h)
		return NULL;
	give_all(take_all(h), discard ? discard : h->deliver, h->userdata);
	sd_event_source_disable_unref(h->source);
	safe_close(h->efd);
	pthread_mutex_destroy(&h->lock);
	free(h);
	return NULL;
}

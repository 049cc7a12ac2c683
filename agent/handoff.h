/* The one hand-off from other threads to the event loop. A worker (tasks), libvirt's event
 * thread or its connector (virt) posts an item from any thread; the loop thread delivers the
 * items to one function, in the order they were posted. Posting never fails and never blocks
 * on the loop: a mutex-protected list and an eventfd the loop watches.
 *
 * Threads: handoff_post() from any thread; everything else on the loop thread. */
#pragma once

#include <systemd/sd-event.h>

struct handoff;

/* Embedded in the poster's own record (first member or container_of). */
struct handoff_item {
	struct handoff_item *next;
};

typedef void (*handoff_fn)(struct handoff_item *item, void *userdata);

/* deliver is called on the loop thread once per posted item; it owns the item. */
int handoff_new(sd_event *event, handoff_fn deliver, void *userdata, struct handoff **ret);
/* Any thread. The item belongs to the hand-off until it is delivered or discarded. */
void handoff_post(struct handoff *h, struct handoff_item *item);
/* Loop thread: delivers what was posted so far (the event source does this by itself; owners
 * call it when they must see every completion now, e.g. after joining their threads). */
void handoff_run(struct handoff *h);
/* Items still posted are given to discard (NULL: delivered as usual). The posting threads must
 * have ended. NULL-safe. */
struct handoff *handoff_free(struct handoff *h, handoff_fn discard);

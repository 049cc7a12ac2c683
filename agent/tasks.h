/* Bounded worker pool, its threads started on demand. Blocking work (libvirt calls, disk creation)
 * runs on worker threads; its completion runs back on the event loop. Jobs with the same key (a
 * guest id) run one at a time, in submission order. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

struct tasks;

typedef void (*task_work_fn)(void *userdata); /* on a worker thread */
typedef void (*task_done_fn)(void *userdata); /* on the event-loop thread, after work */

/* Up to n_workers threads, started when a job is queued and no worker is idle, each ending after
 * 15 s without a job: an idle pool has no threads. */
int tasks_new(sd_event *event, unsigned n_workers, size_t max_queued, struct tasks **ret);
/* How long an idle worker waits for a job before it ends (tests). */
void tasks_set_idle_usec(struct tasks *t, uint64_t usec);
/* Stops taking work, waits for running jobs, drops queued ones (their done is called with the
 * work skipped, so every caller presets a "cancelled" result), joins the workers. NULL-safe. */
struct tasks *tasks_free(struct tasks *t);
/* The key of an internal job (host facts, module loading, placement): '@' never begins a guest
 * id (id_is_valid), so it cannot collide with one. The other keys are a guest id, "<sid>/qga",
 * a disk path (beginning with '/') and an image id on the image cache's own pool. */
#define TASKS_INTERNAL_KEY(name) "@" name
/* key may be NULL (no serialization). -EBUSY when the queue is full, -ESHUTDOWN after
 * tasks_shutdown(). */
int tasks_submit(struct tasks *t, const char *key, task_work_fn work, task_done_fn done,
		 void *userdata);
/* Refuse new jobs from now on; queued and running ones still finish. */
void tasks_shutdown(struct tasks *t);
size_t tasks_queued(struct tasks *t);
size_t tasks_running(struct tasks *t);
/* True when the given key has a queued or running job. */
bool tasks_key_busy(struct tasks *t, const char *key);

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/outbox.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/path.h"

#define ENTRY_MAX_SIZE 4096

/* A file operation for the writer thread: write data to <dir>/<sid>.json, or remove that file
 * when data is NULL. */
struct outbox_op {
	char *sid;
	char *data;
	struct outbox_op *next;
};

struct outbox {
	char *dir;
	struct outbox_entry *list;
	size_t n;
	uint64_t last_seq;
	size_t removed;

	/* The writer: the loop thread queues, one thread performs the file operations in queue
	 * order (fsync included), so the loop never waits on the disk. */
	pthread_mutex_t lock;
	pthread_cond_t cond; /* queue non-empty, or stop */
	pthread_cond_t idle; /* queue empty and nothing in progress */
	struct outbox_op *head, **tail;
	bool busy, stop, thread_started;
	pthread_t thread;
	atomic_ulong write_failures;
};

static void entry_clear(struct outbox_entry *e)
{
	free(e->sid);
	free(e->status);
	free(e->power_states);
	*e = (struct outbox_entry){0};
}

static struct outbox_entry *entry_find(struct outbox *o, const char *sid)
{
	for (size_t i = 0; i < o->n; i++)
		if (streq(o->list[i].sid, sid))
			return &o->list[i];
	return NULL;
}

static void entry_remove(struct outbox *o, struct outbox_entry *e)
{
	size_t i = (size_t)(e - o->list);
	entry_clear(e);
	memmove(&o->list[i], &o->list[i + 1], sizeof(*e) * (o->n - i - 1));
	o->n--;
}

static int entry_path(struct outbox *o, const char *sid, char **ret)
{
	return asprintf_safe(ret, "%s/%s.json", o->dir, sid) < 0 ? -ENOMEM : 0;
}

/* Adds an entry in memory; the caller has checked there is none for sid. */
static int entry_add(struct outbox *o, const char *sid, const char *status, const char *power,
		     uint64_t seq)
{
	struct outbox_entry *l = realloc(o->list, sizeof(*l) * (o->n + 1));
	if (!l)
		return -ENOMEM;
	o->list = l;
	struct outbox_entry e = {.sid = strdup(sid),
				 .status = strdup(status),
				 .power_states = strdup(power),
				 .seq = seq};
	if (!e.sid || !e.status || !e.power_states) {
		entry_clear(&e);
		return -ENOMEM;
	}
	o->list[o->n++] = e;
	if (seq > o->last_seq)
		o->last_seq = seq;
	return 0;
}

static void op_free(struct outbox_op *op)
{
	if (!op)
		return;
	free(op->sid);
	free(op->data);
	free(op);
}

static void op_run(struct outbox *o, struct outbox_op *op)
{
	_cleanup_free_ char *path = NULL;
	int r = entry_path(o, op->sid, &path);
	if (r >= 0 && op->data)
		r = write_file_atomic(path, op->data, strlen(op->data), 0600);
	else if (r >= 0 && unlink(path) < 0 && errno != ENOENT)
		r = negative_errno();
	if (r < 0) {
		atomic_fetch_add(&o->write_failures, 1);
		log_kv(LOG_WARNING,
		       "Outbox file not updated (the status is still delivered from "
		       "memory, but would not survive a restart)",
		       "sid", op->sid, "op", op->data ? "write" : "remove", "error", strerror(-r),
		       NULL);
	}
}

static void *writer_main(void *userdata)
{
	(void)pthread_setname_np(pthread_self(), "outbox-fsync");
	struct outbox *o = userdata;
	pthread_mutex_lock(&o->lock);
	for (;;) {
		while (!o->head && !o->stop)
			pthread_cond_wait(&o->cond, &o->lock);
		if (!o->head)
			break; /* stop, and the queue is drained */
		struct outbox_op *op = o->head;
		o->head = op->next;
		if (!o->head)
			o->tail = &o->head;
		o->busy = true;
		pthread_mutex_unlock(&o->lock);
		op_run(o, op);
		op_free(op);
		pthread_mutex_lock(&o->lock);
		o->busy = false;
		if (!o->head)
			pthread_cond_broadcast(&o->idle);
	}
	pthread_mutex_unlock(&o->lock);
	return NULL;
}

/* Queues the file operation for sid, replacing a queued one for the same sid (only the last
 * state of a file matters; order between different files does not). On OOM the operation is
 * done here, synchronously: losing it would leave a stale file behind. */
static int queue_op(struct outbox *o, const char *sid, const char *data)
{
	struct outbox_op *op = calloc(1, sizeof(*op));
	if (op) {
		op->sid = strdup(sid);
		op->data = data ? strdup(data) : NULL;
	}
	if (!op || !op->sid || (data && !op->data)) {
		op_free(op);
		outbox_flush(o); /* keeps the order with what is queued for sid */
		struct outbox_op tmp = {.sid = (char *)sid, .data = (char *)data};
		op_run(o, &tmp);
		return 0;
	}
	pthread_mutex_lock(&o->lock);
	for (struct outbox_op *q = o->head; q; q = q->next)
		if (streq(q->sid, sid)) {
			free(q->data);
			q->data = TAKE_PTR(op->data);
			pthread_mutex_unlock(&o->lock);
			op_free(op);
			return 0;
		}
	*o->tail = op;
	o->tail = &op->next;
	pthread_cond_signal(&o->cond);
	pthread_mutex_unlock(&o->lock);
	return 0;
}

void outbox_flush(struct outbox *o)
{
	if (!o || !o->thread_started)
		return;
	pthread_mutex_lock(&o->lock);
	while (o->head || o->busy)
		pthread_cond_wait(&o->idle, &o->lock);
	pthread_mutex_unlock(&o->lock);
}

unsigned long outbox_write_failures(struct outbox *o)
{
	return o ? atomic_load(&o->write_failures) : 0;
}

static int load_one(struct outbox *o, const char *name)
{
	size_t l = strlen(name);
	if (l <= 5 || !streq(name + l - 5, ".json"))
		return -EBADMSG;
	_cleanup_free_ char *sid = strndup(name, l - 5), *path = NULL, *data = NULL;
	if (!sid)
		return -ENOMEM;
	if (!id_is_valid(sid, REGION_ID_MAX))
		return -EBADMSG;
	int r = entry_path(o, sid, &path);
	if (r < 0)
		return r;
	size_t len;
	r = read_file(path, ENTRY_MAX_SIZE, &data, &len);
	if (r < 0)
		return r;
	json_error_t jerr;
	json_auto_t *j = json_loadb(data, len, 0, &jerr);
	const char *status = json_string_value(json_object_get(j, "status"));
	const char *power = json_string_value(json_object_get(j, "power_states"));
	json_t *seq = json_object_get(j, "seq");
	if (!status || !power || !json_is_integer(seq) || json_integer_value(seq) <= 0 ||
	    !streq_ptr(json_string_value(json_object_get(j, "sid")), sid))
		return -EBADMSG;
	if (entry_find(o, sid))
		return 0;
	return entry_add(o, sid, status, power, (uint64_t)json_integer_value(seq));
}

static int cmp_seq(const void *a, const void *b)
{
	const struct outbox_entry *x = a, *y = b;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int outbox_open(const char *dir, struct outbox **ret)
{
	_cleanup_(outbox_freep) struct outbox *o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->tail = &o->head;
	pthread_mutex_init(&o->lock, NULL);
	pthread_cond_init(&o->cond, NULL);
	pthread_cond_init(&o->idle, NULL);
	o->dir = strdup(dir);
	if (!o->dir)
		return -ENOMEM;
	int r = mkdir_p(dir, 0700);
	if (r < 0)
		return r;
	DIR *d = opendir(dir);
	if (!d)
		return negative_errno();
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		r = load_one(o, de->d_name);
		if (r == -ENOMEM) {
			closedir(d);
			return r;
		}
		if (r < 0) {
			/* Temp files of an interrupted write and damaged entries: the guest's
			 * current status is reported again after the table rebuild anyway. */
			log_kv(LOG_DEBUG, "Removing unusable outbox file", "dir", dir, "file",
			       de->d_name, NULL);
			if (unlinkat(dirfd(d), de->d_name, 0) == 0)
				o->removed++;
		}
	}
	closedir(d);
	if (o->n > 1)
		qsort(o->list, o->n, sizeof(*o->list), cmp_seq);
	r = -pthread_create(&o->thread, NULL, writer_main, o);
	if (r < 0)
		return r;
	o->thread_started = true;
	*ret = TAKE_PTR(o);
	return 0;
}

struct outbox *outbox_free(struct outbox *o)
{
	if (!o)
		return NULL;
	if (o->thread_started) {
		/* Every queued operation is carried out first: what was put is on disk. */
		pthread_mutex_lock(&o->lock);
		o->stop = true;
		pthread_cond_signal(&o->cond);
		pthread_mutex_unlock(&o->lock);
		pthread_join(o->thread, NULL);
	}
	pthread_cond_destroy(&o->idle);
	pthread_cond_destroy(&o->cond);
	pthread_mutex_destroy(&o->lock);
	for (size_t i = 0; i < o->n; i++)
		entry_clear(&o->list[i]);
	free(o->list);
	free(o->dir);
	free(o);
	return NULL;
}

int outbox_put(struct outbox *o, const char *sid, const char *status, const char *power_states)
{
	if (!id_is_valid(sid, REGION_ID_MAX) || isempty(status) || isempty(power_states))
		return -EINVAL;
	uint64_t seq = o->last_seq + 1;
	json_auto_t *j = json_pack("{s:s,s:s,s:s,s:I}", "sid", sid, "status", status,
				   "power_states", power_states, "seq", (json_int_t)seq);
	if (!j)
		return -ENOMEM;
	_cleanup_free_ char *data = json_dumps(j, JSON_COMPACT);
	if (!data)
		return -ENOMEM;
	struct outbox_entry *old = entry_find(o, sid);
	/* Latest wins: the older entry goes, the new one joins the end of the replay order. */
	if (old)
		entry_remove(o, old);
	int r = entry_add(o, sid, status, power_states, seq);
	if (r < 0)
		return r;
	return queue_op(o, sid, data);
}

const struct outbox_entry *outbox_next(struct outbox *o, const char *skip)
{
	/* list is kept in seq order: puts append, removals keep the order. */
	for (size_t i = 0; i < o->n; i++)
		if (!streq_ptr(o->list[i].sid, skip))
			return &o->list[i];
	return NULL;
}

int outbox_ack(struct outbox *o, const char *sid, uint64_t seq)
{
	struct outbox_entry *e = entry_find(o, sid);
	if (!e || e->seq != seq)
		return 0;
	int r = queue_op(o, sid, NULL); /* before the removal: sid may be e->sid */
	entry_remove(o, e);
	return r;
}

int outbox_drop(struct outbox *o, const char *sid)
{
	struct outbox_entry *e = entry_find(o, sid);
	if (!e)
		return 0;
	int r = queue_op(o, sid, NULL);
	entry_remove(o, e);
	return r < 0 ? r : 1;
}

size_t outbox_size(struct outbox *o)
{
	return o ? o->n : 0;
}

size_t outbox_removed(struct outbox *o)
{
	return o ? o->removed : 0;
}

json_t *outbox_entry_body(const struct outbox_entry *e)
{
	return json_pack("{s:{s:s,s:s}}", "server", "status", e->status, "power_states",
			 e->power_states);
}

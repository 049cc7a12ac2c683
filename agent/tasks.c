#include <pthread.h>
#include <time.h>

#include "agent/handoff.h"
#include "agent/tasks.h"
#include "common/log.h"
#include "common/macros.h"

struct job {
	struct job *next;	       /* in the queue */
	struct handoff_item done_item; /* worked: on its way to the loop */
	char *key;
	task_work_fn work;
	task_done_fn done;
	void *userdata;
};

/* A worker lives while there is work: it is started when a job is queued and no idle worker
 * is waiting for it, and it ends after IDLE_USEC without a job, so an idle agent keeps no
 * workers. */
#define IDLE_USEC (15 * USEC_PER_SEC)

enum slot_state { SLOT_EMPTY, SLOT_LIVE, SLOT_ENDED /* exited, to be joined */ };

struct tasks {
	struct handoff *finished; /* worked jobs, to the loop for their done */
	pthread_mutex_t lock;
	pthread_cond_t cond; /* on CLOCK_MONOTONIC */
	pthread_t *threads;
	enum slot_state *slots;
	unsigned n_threads; /* the most workers at once */
	unsigned n_live, n_idle;
	uint64_t idle_usec;
	size_t max_queued;
	struct job *queue, *queue_tail; /* waiting */
	char **busy;			/* keys running now, n_threads slots */
	size_t n_queued, n_running;
	bool shutting_down, quit;
};

static void job_free(struct job *j)
{
	if (!j)
		return;
	free(j->key);
	free(j);
}

static bool key_running(struct tasks *t, const char *key)
{
	if (!key)
		return false;
	for (unsigned i = 0; i < t->n_threads; i++)
		if (t->busy[i] && streq(t->busy[i], key))
			return true;
	return false;
}

/* First queued job whose key is not running; FIFO per key is kept because an earlier job of
 * the same key is always found first. */
static struct job *take_runnable(struct tasks *t)
{
	struct job *prev = NULL;
	for (struct job *j = t->queue; j; prev = j, j = j->next) {
		if (key_running(t, j->key))
			continue;
		/* An earlier queued job with the same key must run first. */
		bool earlier = false;
		for (struct job *k = t->queue; k != j; k = k->next)
			if (j->key && k->key && streq(k->key, j->key))
				earlier = true;
		if (earlier)
			continue;
		if (prev)
			prev->next = j->next;
		else
			t->queue = j->next;
		if (t->queue_tail == j)
			t->queue_tail = prev;
		j->next = NULL;
		t->n_queued--;
		return j;
	}
	return NULL;
}

struct worker_arg {
	struct tasks *t;
	unsigned index; /* in t->threads and t->slots */
};

static void *worker(void *arg)
{
	/* Named threads: top -H and /proc/<pid>/task/<tid>/comm tell them apart. */
	(void)pthread_setname_np(pthread_self(), "worker");
	struct tasks *t = ((struct worker_arg *)arg)->t;
	unsigned index = ((struct worker_arg *)arg)->index, slot = 0;
	free(arg);
	pthread_mutex_lock(&t->lock);
	for (;;) {
		struct job *j = NULL;
		struct timespec until = timespec_after(CLOCK_MONOTONIC, t->idle_usec);
		t->n_idle++;
		bool timed_out = false;
		while (!t->quit && !(j = take_runnable(t)) && !timed_out)
			timed_out = pthread_cond_timedwait(&t->cond, &t->lock, &until) == ETIMEDOUT;
		t->n_idle--;
		if (t->quit || !j)
			break; /* stopping, or idle for idle_usec */
		for (slot = 0; slot < t->n_threads; slot++)
			if (!t->busy[slot])
				break;
		t->busy[slot] = j->key ? j->key : (char *)"";
		t->n_running++;
		pthread_mutex_unlock(&t->lock);

		if (j->work)
			j->work(j->userdata);

		pthread_mutex_lock(&t->lock);
		t->busy[slot] = NULL;
		t->n_running--;
		handoff_post(t->finished, &j->done_item);
		pthread_cond_broadcast(&t->cond);
	}
	t->slots[index] = SLOT_ENDED;
	t->n_live--;
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

/* Starts a worker when the queued jobs outnumber the idle workers (lock held). A job only waits
 * for a worker when all n_threads are busy; 0 or the error of a first worker that cannot start
 * (later ones: the running workers take the job). */
static int spawn_if_needed(struct tasks *t)
{
	if (t->n_queued <= t->n_idle || t->n_live >= t->n_threads)
		return 0;
	unsigned i = 0;
	while (t->slots[i] == SLOT_LIVE)
		i++;
	if (t->slots[i] == SLOT_ENDED)
		pthread_join(t->threads[i], NULL); /* has returned: does not block */
	t->slots[i] = SLOT_EMPTY;
	struct worker_arg *wa = malloc(sizeof(*wa));
	if (!wa)
		return t->n_live ? 0 : -ENOMEM;
	*wa = (struct worker_arg){t, i};
	int r = -pthread_create(&t->threads[i], NULL, worker, wa);
	if (r < 0) {
		free(wa);
		log_warning_errno(r, "Cannot start a worker thread (%u running): %m", t->n_live);
		return t->n_live ? 0 : r;
	}
	t->slots[i] = SLOT_LIVE;
	t->n_live++;
	return 0;
}

static void deliver_done(struct handoff_item *item, void *userdata)
{
	struct job *j = container_of(item, struct job, done_item);
	if (j->done)
		j->done(j->userdata);
	job_free(j);
}

int tasks_new(sd_event *event, unsigned n_workers, size_t max_queued, struct tasks **ret)
{
	if (n_workers == 0)
		return -EINVAL;
	struct tasks *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&t->cond, &ca);
	pthread_condattr_destroy(&ca);
	t->max_queued = max_queued;
	t->n_threads = n_workers;
	t->idle_usec = IDLE_USEC;
	t->busy = calloc(n_workers, sizeof(char *));
	t->threads = calloc(n_workers, sizeof(pthread_t));
	t->slots = calloc(n_workers, sizeof(enum slot_state));
	int r = -ENOMEM;
	if (!t->busy || !t->threads || !t->slots)
		goto fail;
	r = handoff_new(event, deliver_done, t, &t->finished);
	if (r < 0)
		goto fail;
	*ret = t;
	return 0;
fail:
	tasks_free(t);
	return r;
}

struct tasks *tasks_free(struct tasks *t)
{
	if (!t)
		return NULL;
	/* Running jobs finish; queued ones are dropped: the drain in agent_stop() is where work
	 * gets its time, not here. */
	pthread_mutex_lock(&t->lock);
	t->shutting_down = true;
	t->quit = true;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	for (unsigned i = 0; t->slots && i < t->n_threads; i++)
		if (t->slots[i] != SLOT_EMPTY)
			pthread_join(t->threads[i], NULL);
	/* Completions still owed to the loop run now, so callers free what they own. */
	if (t->finished)
		handoff_run(t->finished);
	/* Dropped jobs: done without work; callers preset a "cancelled" result for that. */
	while (t->queue) {
		struct job *n = t->queue->next;
		if (t->queue->done)
			t->queue->done(t->queue->userdata);
		job_free(t->queue);
		t->queue = n;
	}
	t->finished = handoff_free(t->finished, NULL);
	free(t->busy);
	free(t->threads);
	free(t->slots);
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
	free(t);
	return NULL;
}

int tasks_submit(struct tasks *t, const char *key, task_work_fn work, task_done_fn done,
		 void *userdata)
{
	struct job *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	if (key && !(j->key = strdup(key))) {
		free(j);
		return -ENOMEM;
	}
	j->work = work;
	j->done = done;
	j->userdata = userdata;
	pthread_mutex_lock(&t->lock);
	int r = 0;
	if (t->shutting_down)
		r = -ESHUTDOWN;
	else if (t->n_queued >= t->max_queued)
		r = -EBUSY;
	if (r < 0) {
		pthread_mutex_unlock(&t->lock);
		job_free(j);
		return r;
	}
	if (t->queue_tail)
		t->queue_tail->next = j;
	else
		t->queue = j;
	t->queue_tail = j;
	t->n_queued++;
	r = spawn_if_needed(t);
	if (r < 0) {
		/* No worker at all: the job cannot run, the caller hears so now. */
		t->queue_tail = NULL;
		struct job **p = &t->queue;
		while (*p != j) {
			t->queue_tail = *p;
			p = &(*p)->next;
		}
		*p = NULL;
		t->n_queued--;
		pthread_mutex_unlock(&t->lock);
		job_free(j);
		return r;
	}
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	return 0;
}

void tasks_set_idle_usec(struct tasks *t, uint64_t usec)
{
	pthread_mutex_lock(&t->lock);
	t->idle_usec = usec;
	pthread_mutex_unlock(&t->lock);
}

void tasks_shutdown(struct tasks *t)
{
	pthread_mutex_lock(&t->lock);
	t->shutting_down = true;
	pthread_mutex_unlock(&t->lock);
}

size_t tasks_queued(struct tasks *t)
{
	pthread_mutex_lock(&t->lock);
	size_t n = t->n_queued;
	pthread_mutex_unlock(&t->lock);
	return n;
}

size_t tasks_running(struct tasks *t)
{
	pthread_mutex_lock(&t->lock);
	size_t n = t->n_running;
	pthread_mutex_unlock(&t->lock);
	return n;
}

bool tasks_key_busy(struct tasks *t, const char *key)
{
	pthread_mutex_lock(&t->lock);
	bool busy = key_running(t, key);
	for (struct job *j = t->queue; j && !busy; j = j->next)
		if (j->key && streq(j->key, key))
			busy = true;
	pthread_mutex_unlock(&t->lock);
	return busy;
}

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "agent/tasks.h"
#include "tests/unit/test-common.h"

struct rec {
	pthread_mutex_t lock;
	char log[256];
	atomic_int concurrent, max_concurrent;
	int done;
	int expect;
	sd_event *event;
};

struct item {
	struct rec *rec;
	char tag;
	int sleep_ms;
	bool on_loop_thread_done;
};

static pthread_t loop_thread;

static void work(void *ud)
{
	struct item *it = ud;
	int c = ++it->rec->concurrent;
	int m = it->rec->max_concurrent;
	while (c > m && !atomic_compare_exchange_weak(&it->rec->max_concurrent, &m, c))
		;
	struct timespec ts = {0, it->sleep_ms * 1000000L};
	nanosleep(&ts, NULL);
	pthread_mutex_lock(&it->rec->lock);
	size_t n = strlen(it->rec->log);
	it->rec->log[n] = it->tag;
	it->rec->log[n + 1] = 0;
	pthread_mutex_unlock(&it->rec->lock);
	it->rec->concurrent--;
}

static void done(void *ud)
{
	struct item *it = ud;
	it->on_loop_thread_done = pthread_equal(pthread_self(), loop_thread);
	if (++it->rec->done == it->rec->expect)
		sd_event_exit(it->rec->event, 0);
}

/* Same key: strictly one after another in order; other keys: in parallel. */
static void test_serialization(void **state)
{
	sd_event *e;
	assert_int_equal(sd_event_new(&e), 0);
	loop_thread = pthread_self();
	struct tasks *t;
	assert_int_equal(tasks_new(e, 4, 100, &t), 0);
	struct rec rec = {.lock = PTHREAD_MUTEX_INITIALIZER, .expect = 6, .event = e};
	struct item items[6] = {
	    {&rec, 'a', 30}, {&rec, 'b', 1}, {&rec, 'c', 1},
	    {&rec, 'x', 5},  {&rec, 'y', 5}, {&rec, 'z', 5},
	};
	for (int i = 0; i < 3; i++)
		assert_int_equal(tasks_submit(t, "guest1", work, done, &items[i]), 0);
	assert_true(tasks_key_busy(t, "guest1"));
	assert_false(tasks_key_busy(t, "guest9"));
	assert_int_equal(tasks_submit(t, "guest2", work, done, &items[3]), 0);
	assert_int_equal(tasks_submit(t, NULL, work, done, &items[4]), 0);
	assert_int_equal(tasks_submit(t, NULL, work, done, &items[5]), 0);
	assert_int_equal(sd_event_loop(e), 0);
	/* guest1's jobs kept their order although a (30 ms) was much slower than b and c. */
	const char *a = strchr(rec.log, 'a'), *b = strchr(rec.log, 'b'), *c = strchr(rec.log, 'c');
	assert_true(a && b && c && a < b && b < c);
	assert_true(rec.max_concurrent >= 2); /* other keys ran beside guest1 */
	for (int i = 0; i < 6; i++)
		assert_true(items[i].on_loop_thread_done);
	tasks_free(t);
	sd_event_unref(e);
}

static void test_bounds_and_shutdown(void **state)
{
	sd_event *e;
	assert_int_equal(sd_event_new(&e), 0);
	loop_thread = pthread_self();
	struct tasks *t;
	assert_int_equal(tasks_new(e, 1, 2, &t), 0);
	struct rec rec = {.lock = PTHREAD_MUTEX_INITIALIZER, .expect = 100, .event = e};
	struct item slow = {&rec, 's', 50}, q1 = {&rec, '1', 0}, q2 = {&rec, '2', 0},
		    q3 = {&rec, '3', 0};
	assert_int_equal(tasks_submit(t, "k", work, done, &slow), 0);
	/* Wait until the worker took the slow job, so the queue is empty again. */
	while (tasks_running(t) == 0)
		usleep(1000);
	assert_int_equal(tasks_submit(t, "k", work, done, &q1), 0);
	assert_int_equal(tasks_submit(t, "k", work, done, &q2), 0);
	assert_int_equal(tasks_submit(t, "k", work, done, &q3), -EBUSY);
	assert_int_equal(tasks_queued(t), 2);
	tasks_shutdown(t);
	assert_int_equal(tasks_submit(t, "k", work, done, &q3), -ESHUTDOWN);
	/* Freeing waits for the running job, drops the queued ones without running them, and
	 * still calls every done callback. */
	tasks_free(t);
	assert_int_equal(rec.done, 3);
	assert_non_null(strchr(rec.log, 's'));
	assert_null(strchr(rec.log, '1'));
	assert_null(strchr(rec.log, '2'));
	sd_event_unref(e);
}

TEST_MAIN(cmocka_unit_test(test_serialization), cmocka_unit_test(test_bounds_and_shutdown))

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

static void pump(sd_event *e, struct rec *rec, int until_done)
{
	for (int i = 0; i < 1000 && rec->done < until_done; i++)
		assert_true(sd_event_run(e, 10 * 1000) >= 0);
	assert_int_equal(rec->done, until_done);
}

static int threads_now(void)
{
	return test_count_entries("/proc/self/task");
}

/* Workers exist while there is work: none before the first job, one per job running at once
 * (up to the bound), none again once they were idle for the idle time; the pool works after. */
static void test_workers_on_demand(void **state)
{
	sd_event *e;
	assert_int_equal(sd_event_new(&e), 0);
	loop_thread = pthread_self();
	int base = threads_now();
	struct tasks *t;
	assert_int_equal(tasks_new(e, 3, 100, &t), 0);
	tasks_set_idle_usec(t, 50 * 1000);
	assert_int_equal(threads_now(), base);
	/* expect 0: done never ends the loop, which the test runs by hand. */
	struct rec rec = {.lock = PTHREAD_MUTEX_INITIALIZER, .expect = 0, .event = e};
	struct item items[5] = {
	    {&rec, 'a', 200}, {&rec, 'b', 200}, {&rec, 'c', 200}, {&rec, 'd', 200}, {&rec, 'e', 1},
	};
	const char *keys[5] = {"k1", "k2", "k3", "k4", "k5"};
	for (int i = 0; i < 5; i++)
		assert_int_equal(tasks_submit(t, keys[i], work, done, &items[i]), 0);
	assert_true(threads_now() <= base + 3); /* never more than the bound */
	pump(e, &rec, 5);
	assert_int_equal(rec.max_concurrent, 3);
	for (int i = 0; i < 500 && threads_now() > base; i++)
		usleep(10 * 1000);
	assert_int_equal(threads_now(), base);
	/* A job after the workers ended starts one again. */
	struct item again = {&rec, 'f', 1};
	assert_int_equal(tasks_submit(t, "k1", work, done, &again), 0);
	pump(e, &rec, 6);
	assert_non_null(strchr(rec.log, 'f'));
	tasks_free(t);
	assert_int_equal(threads_now(), base);
	sd_event_unref(e);
}

TEST_MAIN(cmocka_unit_test(test_serialization), cmocka_unit_test(test_bounds_and_shutdown),
	  cmocka_unit_test(test_workers_on_demand))

#include <pthread.h>

#include "agent/handoff.h"
#include "common/macros.h"
#include "tests/unit/test-common.h"

#define POSTERS	   4
#define PER_POSTER 2000

struct msg {
	struct handoff_item item;
	int poster, seq;
};

struct rec {
	sd_event *event;
	pthread_t loop;
	int next_seq[POSTERS]; /* the seq each poster's next delivered message must have */
	int delivered, discarded, expect;
	bool off_loop, out_of_order;
};

static void deliver(struct handoff_item *item, void *userdata)
{
	struct rec *rec = userdata;
	struct msg *m = container_of(item, struct msg, item);
	if (!pthread_equal(pthread_self(), rec->loop))
		rec->off_loop = true;
	if (m->seq != rec->next_seq[m->poster])
		rec->out_of_order = true;
	rec->next_seq[m->poster] = m->seq + 1;
	free(m);
	if (++rec->delivered == rec->expect && rec->event)
		sd_event_exit(rec->event, 0);
}

static void discard(struct handoff_item *item, void *userdata)
{
	((struct rec *)userdata)->discarded++;
	free(container_of(item, struct msg, item));
}

struct poster {
	struct handoff *h;
	int index;
};

static void *poster_main(void *arg)
{
	struct poster *p = arg;
	for (int i = 0; i < PER_POSTER; i++) {
		struct msg *m = malloc(sizeof(*m));
		assert_non_null(m);
		*m = (struct msg){.poster = p->index, .seq = i};
		handoff_post(p->h, &m->item);
	}
	return NULL;
}

static void post_one(struct handoff *h, int poster, int seq)
{
	struct msg *m = malloc(sizeof(*m));
	assert_non_null(m);
	*m = (struct msg){.poster = poster, .seq = seq};
	handoff_post(h, &m->item);
}

/* Items posted by several threads at once all reach the loop thread, each poster's in its
 * order, none twice. */
static void test_posters_to_loop(void **state)
{
	sd_event *e;
	assert_int_equal(sd_event_new(&e), 0);
	struct rec rec = {.event = e, .loop = pthread_self(), .expect = POSTERS * PER_POSTER};
	struct handoff *h;
	assert_int_equal(handoff_new(e, deliver, &rec, &h), 0);
	pthread_t th[POSTERS];
	struct poster ps[POSTERS];
	for (int i = 0; i < POSTERS; i++) {
		ps[i] = (struct poster){h, i};
		assert_int_equal(pthread_create(&th[i], NULL, poster_main, &ps[i]), 0);
	}
	sd_event_source *guard;
	assert_int_equal(sd_event_add_time_relative(e, &guard, CLOCK_MONOTONIC, 20 * USEC_PER_SEC,
						    0, NULL, (void *)(intptr_t)-ETIMEDOUT),
			 0);
	assert_int_equal(sd_event_loop(e), 0); /* the guard would exit with -ETIMEDOUT */
	for (int i = 0; i < POSTERS; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(rec.delivered, POSTERS * PER_POSTER);
	for (int i = 0; i < POSTERS; i++)
		assert_int_equal(rec.next_seq[i], PER_POSTER);
	assert_false(rec.off_loop);
	assert_false(rec.out_of_order);
	handoff_free(h, discard);
	assert_int_equal(rec.discarded, 0);
	sd_event_source_unref(guard);
	sd_event_unref(e);
}

/* handoff_run delivers at once what was posted; free gives the rest to discard, or delivers
 * it when there is none. */
static void test_run_and_free(void **state)
{
	sd_event *e;
	assert_int_equal(sd_event_new(&e), 0);
	struct rec rec = {.loop = pthread_self(), .expect = -1};
	struct handoff *h;
	assert_int_equal(handoff_new(e, deliver, &rec, &h), 0);
	post_one(h, 0, 0);
	post_one(h, 0, 1);
	handoff_run(h);
	assert_int_equal(rec.delivered, 2);
	handoff_run(h); /* nothing new: nothing twice */
	assert_int_equal(rec.delivered, 2);
	post_one(h, 1, 0);
	post_one(h, 1, 1);
	post_one(h, 1, 2);
	assert_null(handoff_free(h, discard));
	assert_int_equal(rec.discarded, 3);
	assert_int_equal(rec.delivered, 2);

	assert_int_equal(handoff_new(e, deliver, &rec, &h), 0);
	post_one(h, 2, 0);
	handoff_free(h, NULL);
	assert_int_equal(rec.delivered, 3);
	assert_false(rec.out_of_order);
	handoff_free(NULL, NULL);
	sd_event_unref(e);
}

TEST_MAIN(cmocka_unit_test(test_posters_to_loop), cmocka_unit_test(test_run_and_free))

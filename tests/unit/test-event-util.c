#include "common/event-util.h"
#include "common/macros.h"
#include "tests/unit/test-common.h"

/* The delays every retry loop of the agent uses (region, report, DHCP, libvirt connector). */
static void test_backoff(void **state)
{
	static const struct {
		unsigned failures;
		uint64_t want;
	} cases[] = {{0, 1}, {1, 1}, {2, 2}, {3, 4}, {6, 32}, {7, 60}, {8, 60}, {1000, 60}};
	for (size_t i = 0; i < ELEMENTSOF(cases); i++)
		assert_int_equal(backoff_usec(cases[i].failures, USEC_PER_SEC, 60 * USEC_PER_SEC),
				 cases[i].want * USEC_PER_SEC);
	/* A cap that is not a power of two times min, and min == max. */
	assert_int_equal(backoff_usec(6, 250, 5000), 5000);
	assert_int_equal(backoff_usec(5, 250, 5000), 4000);
	assert_int_equal(backoff_usec(9, 7, 7), 7);
}

static void test_timespec_after(void **state)
{
	uint64_t before = now_usec(CLOCK_MONOTONIC);
	struct timespec ts = timespec_after(CLOCK_MONOTONIC, 1500 * USEC_PER_MSEC);
	uint64_t at = (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / NSEC_PER_USEC;
	assert_true(ts.tv_nsec >= 0 && ts.tv_nsec < 1000000000L);
	assert_true(at >= before + 1500 * USEC_PER_MSEC);
	assert_true(at <= now_usec(CLOCK_MONOTONIC) + 1500 * USEC_PER_MSEC);
}

struct fired {
	unsigned n;
	uint64_t last;
};

static int on_time(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct fired *f = userdata;
	f->n++;
	f->last = now_usec(CLOCK_MONOTONIC);
	return 0;
}

/* Runs the loop until the timer fired once more (at most 5 s). */
static void run(sd_event *e, struct fired *f)
{
	unsigned before = f->n;
	uint64_t until = now_usec(CLOCK_MONOTONIC) + 5 * USEC_PER_SEC;
	while (f->n == before && now_usec(CLOCK_MONOTONIC) < until)
		assert_true(sd_event_run(e, 100 * USEC_PER_MSEC) >= 0);
	/* Nothing more fires without an arming. */
	assert_int_equal(sd_event_run(e, 50 * USEC_PER_MSEC), 0);
}

static void test_reset_time(void **state)
{
	sd_event *e;
	assert_int_equal(sd_event_new(&e), 0);
	struct fired f = {0};
	sd_event_source *s = NULL;
	/* Added when there is none; re-armed before it fired: only the later arming counts. */
	uint64_t start = now_usec(CLOCK_MONOTONIC);
	assert_int_equal(event_reset_time_relative(e, &s, 20 * USEC_PER_MSEC, 1, on_time, &f), 0);
	assert_non_null(s);
	sd_event_source *first = s;
	assert_int_equal(event_reset_time_relative(e, &s, 200 * USEC_PER_MSEC, 1, on_time, &f), 0);
	assert_ptr_equal(s, first); /* the same source, not a second one */
	run(e, &f);
	assert_int_equal(f.n, 1);
	assert_true(f.last - start >= 200 * USEC_PER_MSEC);
	/* One-shot: fired, it is off until armed again; arming again (absolute) makes it fire. */
	int enabled;
	assert_int_equal(sd_event_source_get_enabled(s, &enabled), 0);
	assert_int_equal(enabled, SD_EVENT_OFF);
	assert_int_equal(event_source_arm(s, now_usec(CLOCK_MONOTONIC) + 10 * USEC_PER_MSEC), 0);
	run(e, &f);
	assert_int_equal(f.n, 2);
	assert_int_equal(event_source_arm_relative(s, 10 * USEC_PER_MSEC), 0);
	run(e, &f);
	assert_int_equal(f.n, 3);
	sd_event_source_disable_unref(s);
	sd_event_unref(e);
}

TEST_MAIN(cmocka_unit_test(test_backoff), cmocka_unit_test(test_timespec_after),
	  cmocka_unit_test(test_reset_time))

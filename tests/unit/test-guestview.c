/* The guest view (agent/guestview.c): lookups, state changes, sequence numbers, replies. */
#include "agent/guestview.h"
#include "tests/unit/test-common.h"

static void test_set_get_remove(void **state)
{
	struct guestview *v;
	assert_int_equal(guestview_new(&v), 0);
	assert_false(guestview_valid(v));
	bool changed = false;
	const char *sids[] = {"m", "b", "z", "a", "k"};
	for (size_t i = 0; i < 5; i++)
		assert_int_equal(
		    guestview_set_state(v, sids[i], GUEST_STATE_SHUTOFF, 0, 0, &changed), 0);
	assert_int_equal(guestview_size(v), 5);
	/* sorted */
	assert_string_equal(guestview_at(v, 0)->sid, "a");
	assert_string_equal(guestview_at(v, 4)->sid, "z");
	assert_non_null(guestview_get(v, "k"));
	assert_null(guestview_get(v, "c"));

	uint64_t seq = guestview_seq(v);
	assert_int_equal(guestview_set_state(v, "k", GUEST_STATE_SHUTOFF, 0, -1, &changed), 0);
	assert_false(changed);
	assert_int_equal(guestview_seq(v), seq); /* nothing changed, nothing bumped */
	assert_int_equal(guestview_set_state(v, "k", GUEST_STATE_RUNNING, 1, 4242, &changed), 0);
	assert_true(changed);
	assert_true(guestview_get(v, "k")->seq > seq);
	assert_int_equal(guestview_get(v, "k")->qemu_pid, 4242);
	/* a pause keeps the pid; the status string changes */
	assert_int_equal(guestview_set_state(v, "k", GUEST_STATE_PAUSED, 1, -1, &changed), 0);
	assert_true(changed);
	assert_int_equal(guestview_get(v, "k")->qemu_pid, 4242);
	/* BLOCKED is running too: the state changes, the status does not */
	assert_int_equal(guestview_set_state(v, "k", GUEST_STATE_RUNNING, 5, -1, &changed), 0);
	assert_int_equal(guestview_set_state(v, "k", GUEST_STATE_BLOCKED, 0, -1, &changed), 0);
	assert_false(changed);

	seq = guestview_seq(v);
	assert_true(guestview_remove(v, "k"));
	assert_false(guestview_remove(v, "k"));
	assert_true(guestview_removed_seq(v) > seq);
	assert_int_equal(guestview_size(v), 4);
	assert_null(guestview_get(v, "k"));
	guestview_free(v);
}

static void test_replace_and_differs(void **state)
{
	struct guestview *v;
	assert_int_equal(guestview_new(&v), 0);
	struct guest_info *l = calloc(3, sizeof(*l));
	l[0] = (struct guest_info){.sid = strdup("g2"),
				   .state = GUEST_STATE_RUNNING,
				   .qemu_pid = 7,
				   .managed = true,
				   .name = strdup("two"),
				   .uuid = strdup("u2")};
	l[1] = (struct guest_info){.sid = strdup("g1"), .state = GUEST_STATE_SHUTOFF};
	l[2] = (struct guest_info){
	    .sid = strdup("g3"), .state = GUEST_STATE_NO_DOMAIN, .managed = true};
	assert_int_equal(guestview_replace(v, l, 3), 0);
	assert_true(guestview_valid(v));
	assert_string_equal(guestview_at(v, 0)->sid, "g1");
	guestview_invalidate(v);
	assert_false(guestview_valid(v));

	char buf[128];
	struct guest_info b = *guestview_get(v, "g2");
	assert_false(guest_info_differs(guestview_get(v, "g2"), &b, buf, sizeof(buf)));
	b.state = GUEST_STATE_SHUTOFF;
	assert_true(guest_info_differs(guestview_get(v, "g2"), &b, buf, sizeof(buf)));
	assert_string_equal(buf, "state: running -> ready");
	b.state = GUEST_STATE_RUNNING;
	b.qemu_pid = 8;
	assert_true(guest_info_differs(guestview_get(v, "g2"), &b, buf, sizeof(buf)));
	assert_string_equal(buf, "qemu_pid: 7 -> 8");
	b.qemu_pid = 7;
	b.state = GUEST_STATE_PAUSED; /* libvirt starting it: no event says so, no drift */
	b.reason = GUEST_REASON_PAUSED_STARTING_UP;
	assert_false(guest_info_differs(guestview_get(v, "g2"), &b, buf, sizeof(buf)));
	b.reason = 1; /* paused by a user */
	assert_true(guest_info_differs(guestview_get(v, "g2"), &b, buf, sizeof(buf)));
	b.state = GUEST_STATE_RUNNING;
	b.reason = 0;
	b.vnc_port = 5901; /* not served: no difference */
	assert_false(guest_info_differs(guestview_get(v, "g2"), &b, buf, sizeof(buf)));
	guestview_free(v);
}

static struct guest_info *listing(int g1_state, int g2_state)
{
	struct guest_info *l = calloc(2, sizeof(*l));
	l[0] = (struct guest_info){.sid = strdup("g1"), .state = g1_state, .managed = true};
	l[1] = (struct guest_info){.sid = strdup("g2"), .state = g2_state, .qemu_pid = 7};
	return l;
}

/* A listing taken while events arrived: the events are newer and win; a guest that appeared
 * after the listing stays; one removed after it forces a new listing. */
static void test_merge(void **state)
{
	struct guestview *v;
	assert_int_equal(guestview_new(&v), 0);
	assert_int_equal(guestview_replace(v, listing(GUEST_STATE_SHUTOFF, GUEST_STATE_RUNNING), 2),
			 0);
	guestview_invalidate(v); /* libvirt reconnects: a listing is taken at this seq */
	uint64_t at = guestview_seq(v);
	/* Events during the listing: g1 started, g3 defined. */
	assert_int_equal(guestview_set_state(v, "g1", GUEST_STATE_RUNNING, 1, 42, NULL), 0);
	assert_int_equal(guestview_set_state(v, "g3", GUEST_STATE_SHUTOFF, 0, 0, NULL), 0);
	/* The listing still shows g1 off and knows no g3. */
	assert_int_equal(
	    guestview_merge(v, listing(GUEST_STATE_SHUTOFF, GUEST_STATE_RUNNING), 2, at), 0);
	assert_true(guestview_valid(v));
	assert_int_equal(guestview_size(v), 3);
	assert_int_equal(guestview_get(v, "g1")->state, GUEST_STATE_RUNNING);
	assert_int_equal(guestview_get(v, "g1")->qemu_pid, 42);
	assert_true(guestview_get(v, "g1")->managed); /* descriptor facts from the listing */
	assert_int_equal(guestview_get(v, "g2")->qemu_pid, 7);
	assert_int_equal(guestview_get(v, "g3")->state, GUEST_STATE_SHUTOFF);
	/* g2 paused during a listing (the event has no pid, the view's may be old): the listing's
	 * pid stays; g1 stopped: no pid. */
	guestview_invalidate(v);
	at = guestview_seq(v);
	assert_int_equal(guestview_set_state(v, "g2", GUEST_STATE_PAUSED, 1, 99, NULL), 0);
	assert_int_equal(guestview_set_state(v, "g1", GUEST_STATE_SHUTOFF, 0, -1, NULL), 0);
	struct guest_info *l = listing(GUEST_STATE_RUNNING, GUEST_STATE_RUNNING);
	l[0].qemu_pid = 42;
	assert_int_equal(guestview_merge(v, l, 2, at), 0);
	assert_int_equal(guestview_get(v, "g2")->state, GUEST_STATE_PAUSED);
	assert_int_equal(guestview_get(v, "g2")->qemu_pid, 7);
	assert_int_equal(guestview_get(v, "g1")->state, GUEST_STATE_SHUTOFF);
	assert_int_equal(guestview_get(v, "g1")->qemu_pid, 0);
	/* Unchanged entries absent from a listing are gone (g3 is not in this one). */
	at = guestview_seq(v);
	assert_int_equal(
	    guestview_merge(v, listing(GUEST_STATE_RUNNING, GUEST_STATE_RUNNING), 2, at), 0);
	assert_null(guestview_get(v, "g3"));
	/* A removal after the listing: it may still hold the guest. */
	at = guestview_seq(v);
	guestview_remove(v, "g2");
	assert_int_equal(
	    guestview_merge(v, listing(GUEST_STATE_RUNNING, GUEST_STATE_RUNNING), 2, at), -ESTALE);
	assert_null(guestview_get(v, "g2"));
	guestview_free(v);
}

static char *dump(json_t *j)
{
	char *s = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
	json_decref(j);
	return s;
}

static void test_replies(void **state)
{
	struct guest_info x = {.sid = "g",
			       .state = GUEST_STATE_RUNNING,
			       .qemu_pid = 99,
			       .managed = true,
			       .name = "n",
			       .uuid = "u"};
	_cleanup_free_ char *a = dump(guestview_status_json(&x));
	assert_string_equal(a, "{\"block_jobs_count\":0,\"power_states\":\"on\",\"qemu_pid\":99,"
			       "\"status\":\"running\"}");
	_cleanup_free_ char *b = dump(guestview_list_entry_json(&x));
	assert_string_equal(b,
			    "{\"id\":\"g\",\"managed\":true,\"name\":\"n\",\"power_states\":\"on\","
			    "\"qemu_pid\":99,\"status\":\"running\",\"uuid\":\"u\"}");
	x.state = GUEST_STATE_SHUTDOWN; /* stopping is still running for the region */
	_cleanup_free_ char *c = dump(guestview_status_json(&x));
	assert_string_equal(c, "{\"block_jobs_count\":0,\"power_states\":\"on\",\"qemu_pid\":99,"
			       "\"status\":\"running\"}");
	x.state = GUEST_STATE_CRASHED;
	_cleanup_free_ char *d = dump(guestview_status_json(&x));
	assert_string_equal(d, "{\"block_jobs_count\":0,\"power_states\":\"off\",\"reason\":"
			       "\"crashed\",\"status\":\"ready\"}");
	x.state = GUEST_STATE_PAUSED;
	x.managed = false;
	_cleanup_free_ char *e = dump(guestview_list_entry_json(&x));
	assert_string_equal(e,
			    "{\"id\":\"g\",\"managed\":false,\"power_states\":\"on\",\"qemu_pid\":"
			    "99,\"status\":\"suspend\",\"workspace\":\"missing or unreadable\"}");
	x.state = GUEST_STATE_NO_DOMAIN;
	_cleanup_free_ char *f = dump(guestview_list_entry_json(&x));
	assert_string_equal(f, "{\"details\":\"workspace without a libvirt domain\",\"id\":\"g\","
			       "\"managed\":true,\"power_states\":\"off\",\"status\":\"unknown\"}");
}

TEST_MAIN(cmocka_unit_test(test_set_get_remove), cmocka_unit_test(test_replace_and_differs),
	  cmocka_unit_test(test_merge), cmocka_unit_test(test_replies))

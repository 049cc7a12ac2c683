/* The region session of the region and auth unit tests against a scripted HTTP server
 * (tests/unit/fake-http.h) that plays keystone and the region. */
#pragma once

#include <jansson.h>
#include <time.h>

#include "agent/agent.h"
#include "agent/region.h"
#include "agent/tasks.h"
#include "tests/unit/fake-http.h"
#include "tests/unit/test-common.h"

static inline json_t *load_fixture(const char *name)
{
	_cleanup_free_ char *p = test_data(name);
	json_error_t err;
	json_t *j = json_load_file(p, 0, &err);
	assert_non_null(j);
	return j;
}

/* ---- the region session against the scripted server ---- */

struct fixture {
	struct agent a;
	struct fake_http s;
	struct region *r;
};

static inline void fixture_init(struct fixture *f)
{
	assert_int_equal(config_init(&f->a.cfg), 0);
	assert_int_equal(sd_event_new(&f->a.event), 0);
	assert_int_equal(tasks_new(f->a.event, 2, 64, &f->a.tasks), 0);
	fake_http_start(&f->s);
	struct config *c = &f->a.cfg;
	assert_int_equal(asprintf_safe(&c->auth_url, "http://127.0.0.1:%d/v3/", f->s.port), 0);
	c->admin_user = strdup("hostagent");
	c->admin_password = strdup("pw");
	free(c->region);
	c->region = strdup("RegionOne");
}

static inline void fixture_done(struct fixture *f)
{
	f->r = region_free(f->r);
	f->a.tasks = tasks_free(f->a.tasks);
	sd_event_unref(f->a.event);
	fake_http_stop(&f->s);
	config_done(&f->a.cfg);
}

/* The captured token body, with the compute endpoints pointing at the scripted server. */
static inline char *auth_body(int port)
{
	json_auto_t *j = load_fixture("keystone/auth-catalog.json");
	_cleanup_free_ char *url = NULL;
	assert_int_equal(asprintf_safe(&url, "http://127.0.0.1:%d/region/", port), 0);
	size_t i, k;
	json_t *svc, *ep;
	json_array_foreach (json_object_get(json_object_get(j, "token"), "catalog"), i, svc) {
		if (!streq(json_string_value(json_object_get(svc, "type")), "compute"))
			continue;
		json_array_foreach (json_object_get(svc, "endpoints"), k, ep)
			json_object_set_new(ep, "url", json_string(url));
	}
	return json_dumps(j, 0);
}

static inline void run_until(struct fixture *f, size_t n_seen, unsigned timeout_s)
{
	time_t end = time(NULL) + timeout_s;
	while (fake_http_seen(&f->s) < n_seen && time(NULL) < end)
		assert_true(sd_event_run(f->a.event, 100000) >= 0);
	/* Let the last completion reach the loop. */
	for (int i = 0; i < 5; i++)
		assert_true(sd_event_run(f->a.event, 50000) >= 0);
}

/* Keystone parsing on fixtures captured from a real Keystone, the HTTP client seam, and the
 * region session and task callbacks against a scripted HTTP server on loopback. */

#include "agent/agent.h"
#include "agent/httploop.h"
#include "agent/region.h"
#include "agent/tasks.h"
#include "common/fs.h"
#include "common/http-client.h"
#include "common/path.h"
#include "tests/unit/test-common.h"
#include "tests/unit/test-region-server.h"

static void test_parse_time(void **state)
{
	uint64_t t;
	assert_int_equal(keystone_parse_time("2026-11-25T18:14:15.000000Z", &t), 0);
	assert_true(t == 1795630455ULL * 1000000ULL);
	assert_int_equal(keystone_parse_time("2026-11-25T18:14:15.25Z", &t), 0);
	assert_true(t == 1795630455ULL * 1000000ULL + 250000);
	assert_int_equal(keystone_parse_time("2026-11-25T18:14:15+00:00", &t), 0);
	assert_true(t == 1795630455ULL * 1000000ULL);
	assert_int_equal(keystone_parse_time("2026-11-25 18:14:15", &t), -EINVAL);
	assert_int_equal(keystone_parse_time("2026-11-25T18:14:15.Z", &t), -EINVAL);
	assert_int_equal(keystone_parse_time("2026-11-25T18:14:15+02:00", &t), -EINVAL);
	assert_int_equal(keystone_parse_time(NULL, &t), -EINVAL);
}

static const char *const types[] = {"compute_v2", "compute", NULL};

static void test_catalog(void **state)
{
	json_auto_t *j = load_fixture("keystone/auth-catalog.json");
	_cleanup_free_ char *u1 = NULL, *u2 = NULL, *u3 = NULL, *u4 = NULL;
	assert_int_equal(keystone_catalog_find(j, types, "RegionOne", "internal", &u1), 0);
	assert_string_equal(u1, "http://127.0.0.1:18999");
	/* The decoy endpoint in another region. */
	assert_int_equal(keystone_catalog_find(j, types, "RegionOther", "internal", &u2), 0);
	assert_string_equal(u2, "http://127.0.0.1:9/other");
	assert_int_equal(keystone_catalog_find(j, types, "RegionOther", "public", &u3), -ENOENT);
	assert_int_equal(keystone_catalog_find(j, types, "Nowhere", "internal", &u3), -ENOENT);
	/* The identity service is not a compute service; its URL ends in '/', trimmed. */
	static const char *const ident[] = {"identity", NULL};
	assert_int_equal(keystone_catalog_find(j, ident, NULL, "public", &u4), 0);
	assert_non_null(strstr(u4, "/v3"));
	assert_true(u4[strlen(u4) - 1] != '/');

	json_auto_t *v2 = load_fixture("keystone/auth-catalog-compute-v2.json");
	_cleanup_free_ char *u5 = NULL;
	assert_int_equal(keystone_catalog_find(v2, types, "RegionOne", "admin", &u5), 0);
	assert_string_equal(u5, "http://127.0.0.1:18999");

	/* A validation answer (?nocatalog) has no catalog. */
	json_auto_t *nc = load_fixture("keystone/validate-admin.json");
	assert_int_equal(keystone_catalog_find(nc, types, NULL, "internal", &u3), -EBADMSG);
	json_auto_t *bad = json_pack("{s:{s:[{s:s,s:[{s:s,s:s,s:s}]}]}}", "token", "catalog",
				     "type", "compute", "endpoints", "interface", "internal",
				     "region_id", "RegionOne", "url", "file:///etc/passwd");
	assert_int_equal(keystone_catalog_find(bad, types, NULL, "internal", &u3), -ENOENT);
}

static void test_token_fields(void **state)
{
	json_auto_t *admin = load_fixture("keystone/validate-admin.json");
	json_auto_t *member = load_fixture("keystone/validate-member.json");
	char *roles[] = {"admin", NULL};
	char *svc[] = {"service", "member", NULL};
	assert_int_equal(keystone_token_has_role(admin, roles), 0);
	assert_int_equal(keystone_token_has_role(member, roles), -EPERM);
	assert_int_equal(keystone_token_has_role(member, svc), 0);
	json_auto_t *none = json_pack("{s:{}}", "token");
	assert_int_equal(keystone_token_has_role(none, roles), -EBADMSG);
	uint64_t issued, expires;
	assert_int_equal(keystone_token_times(admin, &issued, &expires), 0);
	assert_true(expires - issued == 3600ULL * 1000000ULL);
	assert_int_equal(keystone_token_times(none, &issued, &expires), -EBADMSG);
}

static void test_task_id(void **state)
{
	assert_true(id_is_valid("5f1c9a2e-7d1b-4b6a-8f3e-0a9b8c7d6e5f", REGION_ID_MAX));
	assert_true(id_is_valid("task_1.2", REGION_ID_MAX));
	assert_false(id_is_valid("", REGION_ID_MAX));
	assert_false(id_is_valid(NULL, REGION_ID_MAX));
	assert_false(id_is_valid("..", REGION_ID_MAX));
	assert_false(id_is_valid("a/b", REGION_ID_MAX));
	assert_false(id_is_valid("a%2e", REGION_ID_MAX));
	assert_false(id_is_valid("a b", REGION_ID_MAX));
	char long_id[200];
	memset(long_id, 'a', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = 0;
	assert_false(id_is_valid(long_id, REGION_ID_MAX));
}

/* Stops s and returns a URL of its port, where nobody listens any more. */
static char *stop_for_url(struct fake_http *s)
{
	int port = s->port;
	fake_http_stop(s);
	char *url = NULL;
	assert_int_equal(asprintf_safe(&url, "http://127.0.0.1:%d/", port), 0);
	return url;
}

static void test_http_client(void **state)
{
	struct fake_http s = {0};
	s.replies[0] =
	    (struct fake_http_reply){200, "X-Subject-Token: abc\r\n", strdup("{\"ok\":true}")};
	s.replies[1] =
	    (struct fake_http_reply){200, NULL, strdup("0123456789012345678901234567890123456789")};
	s.n_replies = 2;
	fake_http_start(&s);
	_cleanup_free_ char *url = NULL;
	assert_int_equal(asprintf_safe(&url, "http://127.0.0.1:%d/v3/auth/tokens", s.port), 0);
	char *hdrs[] = {"X-Auth-Token: secret", NULL};
	struct http_request req = {
	    .method = "POST", .url = url, .headers = hdrs, .body = "{}", .body_len = 2};
	struct http_response resp;
	assert_int_equal(http_request_run(&req, &resp), 0);
	assert_int_equal(resp.status, 200);
	assert_string_equal(resp.body, "{\"ok\":true}");
	assert_string_equal(http_response_header(&resp, "x-subject-token"), "abc");
	assert_string_equal(http_response_header(&resp, "X-SUBJECT-TOKEN"), "abc");
	assert_null(http_response_header(&resp, "x-subject"));
	http_response_done(&resp);
	assert_string_equal(s.seen[0].method, "POST");
	assert_string_equal(s.seen[0].path, "/v3/auth/tokens");
	assert_string_equal(s.seen[0].token, "secret");
	assert_string_equal(s.seen[0].body, "{}");
	/* Over the cap. */
	req = (struct http_request){.method = "GET", .url = url, .max_response = 10};
	assert_int_equal(http_request_run(&req, &resp), -EFBIG);
	/* Nobody listening. */
	free(url);
	url = stop_for_url(&s);
	req = (struct http_request){.method = "GET", .url = url};
	assert_int_equal(http_request_run(&req, &resp), -ECONNREFUSED);
	req = (struct http_request){.method = "GET", .url = "ftp://127.0.0.1/"};
	assert_true(http_request_run(&req, &resp) < 0);
	req = (struct http_request){.method = "get", .url = url};
	assert_int_equal(http_request_run(&req, &resp), -EINVAL);
}

static int loop_calls;

struct loop_result {
	int calls, r;
	long status;
	char body[64];
};

static void on_loop_done(int r, const struct http_response *resp, void *userdata)
{
	struct loop_result *res = userdata;
	res->calls++;
	loop_calls++;
	res->r = r;
	res->status = resp ? resp->status : 0;
	snprintf(res->body, sizeof(res->body), "%s", resp ? resp->body : "");
}

static void run_loop(sd_event *e, const int *calls, int want)
{
	time_t end = time(NULL) + 10;
	while (*calls < want && time(NULL) < end)
		assert_true(sd_event_run(e, 100000) >= 0);
}

/* Requests on the event loop (curl multi): answers reach done on the loop, never from inside
 * the submit; the cap in flight; a cancelled request never calls done; errors as with the
 * blocking client. */
static void test_httploop(void **state)
{
	struct fake_http s = {0};
	s.replies[0] = (struct fake_http_reply){200, NULL, strdup("one")};
	s.replies[1] = (struct fake_http_reply){201, NULL, strdup("two")};
	s.n_replies = 2;
	fake_http_start(&s);
	sd_event *e = NULL;
	assert_int_equal(sd_event_new(&e), 0);
	struct httploop *l = NULL;
	assert_int_equal(httploop_new(e, 2, &l), 0);
	_cleanup_free_ char *url = NULL;
	assert_int_equal(asprintf_safe(&url, "http://127.0.0.1:%d/a", s.port), 0);
	struct http_request req = {
	    .method = "POST", .url = url, .body = "{\"x\":1}", .body_len = 7};
	struct loop_result a = {0}, b = {0}, c = {0};
	assert_int_equal(httploop_submit(l, &req, on_loop_done, &a, NULL), 0);
	assert_int_equal(httploop_submit(l, &req, on_loop_done, &b, NULL), 0);
	assert_int_equal(httploop_submit(l, &req, on_loop_done, &c, NULL), -EBUSY);
	assert_int_equal(a.calls + b.calls, 0);
	assert_int_equal(httploop_in_flight(l), 2);
	loop_calls = 0;
	run_loop(e, &loop_calls, 2);
	assert_int_equal(a.calls, 1);
	assert_int_equal(b.calls, 1);
	assert_int_equal(a.r, 0);
	assert_int_equal(b.r, 0);
	/* Served one after the other, in either order. */
	assert_int_equal(a.status + b.status, 401);
	assert_string_equal(a.status == 200 ? a.body : b.body, "one");
	assert_int_equal(httploop_in_flight(l), 0);
	assert_int_equal(fake_http_seen(&s), 2);
	assert_string_equal(s.seen[0].body, "{\"x\":1}");
	/* Cancelled at once: done never runs. */
	struct httploop_req *q = NULL;
	assert_int_equal(httploop_submit(l, &req, on_loop_done, &c, &q), 0);
	httploop_cancel(q);
	for (int i = 0; i < 5; i++)
		assert_true(sd_event_run(e, 20000) >= 0);
	assert_int_equal(c.calls, 0);
	/* Nobody listening. */
	free(url);
	url = stop_for_url(&s);
	req = (struct http_request){.method = "GET", .url = url};
	assert_int_equal(httploop_submit(l, &req, on_loop_done, &c, NULL), 0);
	run_loop(e, &c.calls, 1);
	assert_int_equal(c.calls, 1);
	assert_int_equal(c.r, -ECONNREFUSED);
	req = (struct http_request){.method = "get", .url = url};
	assert_int_equal(httploop_submit(l, &req, on_loop_done, &c, NULL), -EINVAL);
	/* Freed with a request in flight: done never runs. */
	req = (struct http_request){.method = "GET", .url = "http://192.0.2.1:9/"};
	assert_int_equal(httploop_submit(l, &req, on_loop_done, &c, NULL), 0);
	l = httploop_free(l);
	assert_int_equal(c.calls, 1);
	sd_event_unref(e);
}

static void test_region_session_and_callback(void **state)
{
	struct fixture f = {0};
	fixture_init(&f);
	f.s.replies[0] = (struct fake_http_reply){503, NULL, strdup("{}")}; /* keystone hiccup */
	f.s.replies[1] =
	    (struct fake_http_reply){201, "X-Subject-Token: svc-token-1\r\n", auth_body(f.s.port)};
	f.s.replies[2] = (struct fake_http_reply){500, NULL, strdup("{}")}; /* first callback */
	f.s.replies[3] = (struct fake_http_reply){200, NULL, strdup("{}")};
	f.s.n_replies = 4;

	assert_int_equal(region_new(f.a.event, &f.a.cfg, &f.r), 0);
	assert_null(region_token(f.r));
	/* Queued before the session exists: sent once it does. */
	json_auto_t *body = json_pack("{s:s,s:s}", "__status__", "error", "__reason__", "boom");
	assert_int_equal(region_task_callback(f.r, "../etc", body), -EINVAL);
	assert_int_equal(region_task_callback(f.r, "task-1", body), 0);
	assert_int_equal(region_start(f.r), 0);
	run_until(&f, 2, 10);
	assert_string_equal(region_token(f.r), "svc-token-1");
	_cleanup_free_ char *want = NULL;
	assert_int_equal(asprintf_safe(&want, "http://127.0.0.1:%d/region", f.s.port), 0);
	assert_string_equal(region_compute_url(f.r), want);
	json_auto_t *auth = json_loads(f.s.seen[1].body, 0, NULL);
	assert_non_null(auth);
	assert_string_equal(
	    json_string_value(json_object_get(
		json_object_get(
		    json_object_get(json_object_get(json_object_get(auth, "auth"), "identity"),
				    "password"),
		    "user"),
		"name")),
	    "hostagent");
	assert_string_equal(f.s.seen[1].path, "/v3/auth/tokens");
	run_until(&f, 4, 10);
	assert_int_equal(fake_http_seen(&f.s), 4);
	for (int i = 2; i < 4; i++) {
		assert_string_equal(f.s.seen[i].method, "POST");
		assert_string_equal(f.s.seen[i].path, "/region/tasks/task-1");
		assert_string_equal(f.s.seen[i].token, "svc-token-1");
		json_auto_t *got = json_loads(f.s.seen[i].body, 0, NULL);
		assert_true(json_equal(got, body));
	}
	fixture_done(&f);
}

static void test_region_standalone(void **state)
{
	struct agent a = {0};
	assert_int_equal(config_init(&a.cfg), 0);
	struct region *r = NULL;
	assert_int_equal(region_new(a.event, &a.cfg, &r), 0);
	assert_int_equal(region_start(r), 0);
	json_auto_t *body = json_object();
	assert_int_equal(region_task_callback(r, "t", body), 0);
	assert_null(region_token(r));
	assert_null(region_compute_url(r));
	region_free(r);
	config_done(&a.cfg);
}

TEST_MAIN(cmocka_unit_test(test_parse_time), cmocka_unit_test(test_catalog),
	  cmocka_unit_test(test_token_fields), cmocka_unit_test(test_task_id),
	  cmocka_unit_test(test_http_client), cmocka_unit_test(test_httploop),
	  cmocka_unit_test(test_region_session_and_callback),
	  cmocka_unit_test(test_region_standalone))

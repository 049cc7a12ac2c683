/* The API router and body parser: route matching, id validation after percent-decoding,
 * 404/405/400 with details, error body shape and task-result bodies. Pure functions: no
 * agent, no network. */
#include "agent/api-internal.h"
#include "agent/diskops.h"
#include "tests/unit/test-common.h"

static void expect_route(const char *method, const char *url, enum api_route_id id, int op,
			 const char *param, const char *template)
{
	struct api_match m;
	assert_int_equal(api_route_match(method, url, &m), 0);
	assert_non_null(m.route);
	assert_int_equal(m.route->id, id);
	assert_int_equal(m.route->op, op);
	assert_string_equal(m.id, param);
	assert_string_equal(m.route->template, template);
}

static void expect_fail(const char *method, const char *url, int code, const char *allow)
{
	struct api_match m;
	assert_int_equal(api_route_match(method, url, &m), code);
	assert_null(m.route);
	assert_int_equal(m.code, code);
	assert_true(strlen(m.details) > 0);
	if (allow)
		assert_string_equal(m.allow, allow);
}

static void test_matching(void **state)
{
	expect_route("GET", "/ping", API_ROUTE_PING, -1, "", "/ping");
	expect_route("HEAD", "/ping", API_ROUTE_PING, -1, "", "/ping");
	expect_route("GET", "/healthz", API_ROUTE_HEALTHZ, -1, "", "/healthz");
	expect_route("GET", "/readyz", API_ROUTE_READYZ, -1, "", "/readyz");
	expect_route("GET", "/metrics", API_ROUTE_METRICS, -1, "", "/metrics");
	expect_route("GET", "/version", API_ROUTE_VERSION, -1, "", "/version");
	expect_route("GET", "/servers", API_ROUTE_SERVERS, -1, "", "/servers");
	static const struct {
		const char *name;
		int op;
	} ops[] = {{"create", GUEST_OP_CREATE},	  {"start", GUEST_OP_START},
		   {"stop", GUEST_OP_STOP},	  {"reboot", GUEST_OP_REBOOT},
		   {"suspend", GUEST_OP_SUSPEND}, {"resume", GUEST_OP_RESUME},
		   {"sync", GUEST_OP_SYNC},	  {"monitor", GUEST_OP_MONITOR}};
	for (size_t i = 0; i < ELEMENTSOF(ops); i++) {
		char url[128], tpl[128];
		snprintf(url, sizeof(url), "/servers/1b2c-3d4e_5.f/%s", ops[i].name);
		snprintf(tpl, sizeof(tpl), "/servers/:sid/%s", ops[i].name);
		expect_route("POST", url, API_ROUTE_SERVER_OP, ops[i].op, "1b2c-3d4e_5.f", tpl);
	}
	expect_route("GET", "/servers/abc/status", API_ROUTE_SERVER_STATUS, GUEST_OP_STATUS, "abc",
		     "/servers/:sid/status");
	expect_route("DELETE", "/servers/abc", API_ROUTE_SERVER_DELETE, GUEST_OP_DELETE, "abc",
		     "/servers/:sid");
	expect_route("POST", "/hosts/h1/sync", API_ROUTE_HOST_SYNC, -1, "h1", "/hosts/:hid/sync");
	expect_route("POST", "/servers/upload-status", API_ROUTE_UPLOAD_STATUS, -1, "",
		     "/servers/upload-status");
	assert_int_equal(api_route_by_id(API_ROUTE_UPLOAD_STATUS)->auth, API_AUTH_TOKEN);
	/* Encoded characters that are valid in an id decode to themselves. */
	expect_route("GET", "/servers/a%2Db/status", API_ROUTE_SERVER_STATUS, GUEST_OP_STATUS,
		     "a-b", "/servers/:sid/status");
	assert_int_equal(api_route_by_id(API_ROUTE_SERVERS)->auth, API_AUTH_TOKEN);
	assert_int_equal(api_route_by_id(API_ROUTE_PING)->auth, API_AUTH_NONE);
	assert_int_equal(api_route_by_id(API_ROUTE_METRICS)->auth, API_AUTH_METRICS);
}

static void test_not_found(void **state)
{
	expect_fail("GET", "/", 404, NULL);
	expect_fail("GET", "", 404, NULL);
	expect_fail("GET", "ping", 404, NULL);
	expect_fail("GET", "/ping/", 404, NULL);
	expect_fail("GET", "/PING", 404, NULL);
	expect_fail("GET", "/servers/abc/explode", 404, NULL);
	expect_fail("GET", "/servers/abc/status/x", 404, NULL);
	expect_fail("GET", "/a/b/c/d/e/f/g", 404, NULL);
	expect_fail("POST", "/hosts/h1/start", 404, NULL);
	char big[API_URL_MAX + 10];
	memset(big, 'a', sizeof(big) - 1);
	big[0] = '/';
	big[sizeof(big) - 1] = 0;
	expect_fail("GET", big, 404, NULL);
}

static void test_method(void **state)
{
	expect_fail("POST", "/ping", 405, "GET, HEAD");
	expect_fail("DELETE", "/servers", 405, "GET, HEAD");
	expect_fail("GET", "/servers/abc/start", 405, "POST");
	expect_fail("POST", "/servers/abc/status", 405, "GET, HEAD");
	expect_fail("GET", "/servers/abc", 405, "DELETE");
	expect_fail("PUT", "/hosts/h/sync", 405, "POST");
	expect_fail("\xff\xfe", "/ping", 405, "GET, HEAD");
	/* The method is checked before the id, so a bad id with a bad method is a 405. */
	expect_fail("GET", "/servers/../start", 405, "POST");
}

static void test_ids(void **state)
{
	static const char *const bad[] = {
	    "/servers/../status",      "/servers/%2e%2e/status", "/servers/%2E%2e/status",
	    "/servers/./status",       "/servers/%2e/status",	 "/servers//status",
	    "/servers/a%2fb/status",   "/servers/a%2Fb/status",	 "/servers/a%00b/status",
	    "/servers/%zz/status",     "/servers/%2/status",	 "/servers/%/status",
	    "/servers/-x/status",      "/servers/a%20b/status",	 "/servers/a%c3%a9/status",
	    "/servers/.hidden/status", "/servers/a%5cb/status",	 "/servers/\xff/status",
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		expect_fail("GET", bad[i], 400, NULL);
	expect_fail("DELETE", "/servers/..", 400, NULL);
	expect_fail("DELETE", "/servers/%2e%2e", 400, NULL);
	expect_fail("POST", "/hosts/%2e%2e/sync", 400, NULL);
	char url[400] = "/servers/";
	memset(url + 9, 'a', 129);
	strcpy(url + 9 + 129, "/status");
	expect_fail("GET", url, 400, NULL);
	memset(url + 9, 'a', 128);
	strcpy(url + 9 + 128, "/status");
	struct api_match m;
	assert_int_equal(api_route_match("GET", url, &m), 0);
	assert_int_equal(strlen(m.id), 128);
}

static void test_decode(void **state)
{
	char out[8];
	assert_int_equal(api_percent_decode("a%41b", 5, out, sizeof(out)), 0);
	assert_string_equal(out, "aAb");
	assert_int_equal(api_percent_decode("%4", 2, out, sizeof(out)), -EINVAL);
	assert_int_equal(api_percent_decode("%00", 3, out, sizeof(out)), -EINVAL);
	assert_int_equal(api_percent_decode("12345678", 8, out, sizeof(out)), -EINVAL);
	assert_int_equal(api_percent_decode("1234567", 7, out, sizeof(out)), 0);
	assert_int_equal(api_percent_decode("", 0, out, sizeof(out)), 0);
	assert_string_equal(out, "");
}

static void expect_error_shape(json_t *e, int code, const char *cls, const char *details_part)
{
	json_t *err = e;
	assert_null(json_object_get(e, "error"));
	assert_int_equal(json_integer_value(json_object_get(err, "code")), code);
	assert_string_equal(json_string_value(json_object_get(err, "class")), cls);
	const char *d = json_string_value(json_object_get(err, "details"));
	assert_non_null(d);
	if (details_part && !strstr(d, details_part))
		fail_msg("details '%s' lacks '%s'", d, details_part);
	assert_int_equal(json_object_size(e), 3);
}

static void test_body(void **state)
{
	json_t *j = NULL, *e = NULL;
	assert_int_equal(api_parse_body("", 0, &j, &e), 0);
	assert_true(json_is_object(j) && json_object_size(j) == 0);
	json_decref(j);
	assert_int_equal(api_parse_body(" \r\n\t", 4, &j, &e), 0);
	json_decref(j);
	const char *ok = "{\"desc\": {\"name\": \"x\"}}";
	assert_int_equal(api_parse_body(ok, strlen(ok), &j, &e), 0);
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "desc"), "name")),
			    "x");
	json_decref(j);

	const char *trunc = "{\n  \"desc\": {\"name\": ";
	assert_int_equal(api_parse_body(trunc, strlen(trunc), &j, &e), -EINVAL);
	expect_error_shape(e, 400, "InputParameterError", "line 2");
	assert_non_null(strstr(json_string_value(json_object_get(e, "details")), "position"));
	json_decref(e);

	static const char *const bad[] = {
	    "[1,2]",	"42",	 "\"s\"",	"{\"a\": \"\xff\xfe\"}", "{\"a\": \"\\u0000\"}",
	    "{\"a\":}", "{} {}", "{\"a\": 1,}", "\xef\xbb\xbf{}",
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		e = NULL;
		assert_int_equal(api_parse_body(bad[i], strlen(bad[i]), &j, &e), -EINVAL);
		expect_error_shape(e, 400, "InputParameterError", NULL);
		json_decref(e);
	}
	/* Deep nesting is refused by the parser's depth limit, not by the stack. */
	size_t depth = 100000;
	char *deep = malloc(depth * 2 + 1);
	assert_non_null(deep);
	memset(deep, '[', depth);
	memset(deep + depth, ']', depth);
	deep[0] = '{';
	deep[depth * 2] = 0;
	assert_int_equal(api_parse_body(deep, depth * 2, &j, &e), -EINVAL);
	expect_error_shape(e, 400, "InputParameterError", NULL);
	json_decref(e);
	free(deep);
}

static void test_errors(void **state)
{
	json_t *e = op_error_body(404, NULL, "no such guest %s", "x");
	expect_error_shape(e, 404, "NotFoundError", "no such guest x");
	json_decref(e);
	e = op_error_body(409, "CustomError", "busy");
	expect_error_shape(e, 409, "CustomError", "busy");
	json_decref(e);
	/* A long message (a libvirt error quoting XML, say) is kept whole, not cut. */
	char long_msg[5000];
	memset(long_msg, 'x', sizeof(long_msg) - 2);
	long_msg[sizeof(long_msg) - 2] = 'y';
	long_msg[sizeof(long_msg) - 1] = 0;
	e = op_error_body(500, NULL, "libvirt: %s", long_msg);
	const char *details = json_string_value(json_object_get(e, "details"));
	assert_int_equal(strlen(details ? details : ""),
			 strlen("libvirt: ") + sizeof(long_msg) - 1);
	assert_true(details && details[strlen(details) - 1] == 'y');
	json_decref(e);
	assert_string_equal(api_error_class(405), "MethodNotAllowedError");
	assert_string_equal(api_error_class(413), "TooLargeEntityError");
	assert_string_equal(api_error_class(429), "TooManyRequestsError");
	assert_string_equal(api_error_class(502), "InternalServerError");
}

/* The one errno -> HTTP map of the operations (agent/ops.h's vocabulary). */
static void test_errno_http(void **state)
{
	static const struct {
		int error, code;
		const char *cls; /* the class of the error body the API builds */
	} table[] = {
	    {-EINVAL, 400, "InputParameterError"},
	    {-EHOSTDOWN, 400, "InvalidStatusError"}, /* Cloudpods' httperrors: 400 */
	    {-EPERM, 403, "ForbiddenError"},
	    {-EACCES, 403, "ForbiddenError"},
	    {-ENOENT, 404, "NotFoundError"},
	    {-ESRCH, 404, "NotFoundError"},
	    {-EEXIST, 409, "ConflictError"},
	    {-EBUSY, 409, "ConflictError"},
	    {-EOPNOTSUPP, 501, "NotImplementedError"},
	    {-EREMOTEIO, 502, "InternalServerError"},
	    {-EBADMSG, 502, "InternalServerError"},
	    {-EAGAIN, 503, "ServiceUnavailableError"},
	    {-ENOTCONN, 503, "ServiceUnavailableError"},
	    {-ESHUTDOWN, 503, "ServiceUnavailableError"},
	    {-ETIMEDOUT, 504, "TimeoutError"},
	    {-ENOSPC, 507, "InternalServerError"},
	    {-ENOMEM, 500, "InternalServerError"},
	    {-EIO, 500, "InternalServerError"},
	    {-ELOOP, 500, "InternalServerError"}, /* anything else is ours */
	};
	for (size_t i = 0; i < ELEMENTSOF(table); i++) {
		const char *cls;
		int code = api_errno_http(table[i].error, &cls);
		if (code != table[i].code)
			fail_msg("%s: expected %d, got %d", strerror(-table[i].error),
				 table[i].code, code);
		json_t *e = op_error_body(code, cls, "x");
		expect_error_shape(e, table[i].code, table[i].cls, "x");
		json_decref(e);
	}
}

static void test_task_result(void **state)
{
	json_t *ok = json_pack("{s:i,s:b}", "vnc_port", 5901, "is_running", 1);
	json_t *r = api_task_result(200, ok);
	assert_true(json_equal(r, ok));
	assert_null(json_object_get(r, "__status__"));
	json_decref(r);
	json_decref(ok);

	json_t *err = op_error_body(409, NULL, "guest is busy");
	r = api_task_result(409, err);
	assert_string_equal(json_string_value(json_object_get(r, "__status__")), "error");
	assert_string_equal(json_string_value(json_object_get(r, "__reason__")), "guest is busy");
	json_decref(r);
	json_decref(err);

	r = api_task_result(500, NULL);
	assert_string_equal(json_string_value(json_object_get(r, "__reason__")),
			    "failed with status 500");
	json_decref(r);
}

/* The disk routes: two path parameters, literal /disks/image_cache before the parameters. */
static void test_disk_routes(void **state)
{
	struct api_match m;
	static const struct {
		const char *name;
		int op;
	} ops[] = {
	    {"create", DISK_OP_CREATE}, {"delete", DISK_OP_DELETE}, {"resize", DISK_OP_RESIZE}};
	for (size_t i = 0; i < ELEMENTSOF(ops); i++) {
		char url[128], tpl[128];
		snprintf(url, sizeof(url), "/disks/st-1/%s/disk_2", ops[i].name);
		snprintf(tpl, sizeof(tpl), "/disks/:storage/%s/:disk", ops[i].name);
		expect_route("POST", url, API_ROUTE_DISK_OP, ops[i].op, "st-1", tpl);
		assert_int_equal(api_route_match("POST", url, &m), 0);
		assert_string_equal(m.id2, "disk_2");
	}
	expect_route("GET", "/disks/st-1/d%2D1/status", API_ROUTE_DISK_STATUS, DISK_OP_STATUS,
		     "st-1", "/disks/:storage/:disk/status");
	assert_int_equal(api_route_match("GET", "/disks/st-1/d%2D1/status", &m), 0);
	assert_string_equal(m.id2, "d-1");
	expect_route("POST", "/disks/image_cache", API_ROUTE_IMAGE_CACHE, -1, "",
		     "/disks/image_cache");
	expect_route("DELETE", "/disks/image_cache", API_ROUTE_IMAGE_UNCACHE, -1, "",
		     "/disks/image_cache");
	assert_int_equal(api_route_match("POST", "/disks/image_cache", &m), 0);
	assert_string_equal(m.id2, "");
	/* Either parameter is validated after decoding. */
	expect_fail("POST", "/disks/st-1/create/..", 400, NULL);
	expect_fail("POST", "/disks/st-1/create/a%2Fb", 400, NULL);
	expect_fail("POST", "/disks/%2e%2e/create/d1", 400, NULL);
	expect_fail("GET", "/disks/st-1/create/d1", 405, "POST");
	expect_fail("GET", "/disks/image_cache", 405, "POST, DELETE");
	expect_fail("POST", "/disks/st-1/explode/d1", 404, NULL);
	expect_fail("POST", "/disks/st-1/create/d1/x", 404, NULL);
	expect_fail("GET", "/disks/st-1/d1", 404, NULL);
	/* Server routes keep one parameter and no second. */
	assert_int_equal(api_route_match("GET", "/servers/abc/status", &m), 0);
	assert_string_equal(m.id2, "");
	assert_int_equal(api_route_by_id(API_ROUTE_DISK_OP)->auth, API_AUTH_TOKEN);
	assert_int_equal(api_route_by_id(API_ROUTE_IMAGE_CACHE)->auth, API_AUTH_TOKEN);
	assert_int_equal(api_route_by_id(API_ROUTE_IMAGE_UNCACHE)->auth, API_AUTH_TOKEN);
}

static void test_upload_ids(void **state)
{
	(void)state;
	static const struct {
		const char *body, *error;
	} rows[] = {
	    {"{\"guest_ids\": [\"a-1\", \"b_2\"]}", NULL},
	    {"{\"guest_ids\": []}", NULL},
	    {"{}", "guest_ids: missing or not an array"},
	    {"{\"guest_ids\": \"a\"}", "guest_ids: missing or not an array"},
	    {"{\"guest_ids\": [\"a\", 7]}", "guest_ids[1]: not a guest id"},
	    {"{\"guest_ids\": [\"../x\"]}", "guest_ids[0]: not a guest id"},
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		json_t *j = json_loads(rows[i].body, 0, NULL);
		assert_non_null(j);
		char msg[96] = "";
		int r = api_upload_ids_check(j, msg, sizeof(msg));
		if (rows[i].error) {
			assert_int_equal(r, -EINVAL);
			assert_string_equal(msg, rows[i].error);
		} else
			assert_int_equal(r, 0);
		json_decref(j);
	}
	json_t *many = json_pack("{s:[]}", "guest_ids");
	for (int i = 0; i <= API_UPLOAD_IDS_MAX; i++)
		json_array_append_new(json_object_get(many, "guest_ids"), json_string("g"));
	char msg[96];
	assert_int_equal(api_upload_ids_check(many, msg, sizeof(msg)), -EINVAL);
	assert_string_equal(msg, "guest_ids: more than 4096 guests");
	json_decref(many);
}

TEST_MAIN(cmocka_unit_test(test_matching), cmocka_unit_test(test_disk_routes),
	  cmocka_unit_test(test_upload_ids), cmocka_unit_test(test_not_found),
	  cmocka_unit_test(test_method), cmocka_unit_test(test_ids), cmocka_unit_test(test_decode),
	  cmocka_unit_test(test_body), cmocka_unit_test(test_errors),
	  cmocka_unit_test(test_errno_http), cmocka_unit_test(test_task_result))

/* agent/guests.c: the guest operations of agent/ops.h as the API and hostctl call them, on a real
 * struct agent in this process, against libvirt's test driver with a node XML fixture
 * (tests/data/virt/node.xml: a running domain hostagent did not define, and a shut-off one with
 * hostagent metadata whose workspace the test writes). Each operation goes through the worker
 * pool and comes back on the event loop, which the test pumps; what is asserted is what a
 * caller sees: the reply's code and body, the next status read from libvirt, the agent's view,
 * and the files of the workspace and disk roots. */
#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/guests.h"
#include "agent/ops.h"
#include "common/config.h"
#include "common/fs.h"
#include "test-common.h"

#define ADOPT_UUID "1695eb01-f6a4-8304-79aa-97f2502e193f"

struct fx {
	char *dir;
	struct agent *a;
};

struct result {
	bool done;
	int error; /* the operation's errno (agent/ops.h), no HTTP here */
	char *message;
	json_t *body;
};

static void on_done(struct op_reply *reply, void *userdata)
{
	struct result *res = userdata;
	assert_false(res->done); /* exactly once */
	res->done = true;
	res->error = reply->error;
	res->message = reply->message ? strdup(reply->message) : NULL;
	res->body = json_incref(reply->body);
	assert_true(reply->error <= 0);
	/* A failure says what failed; a success has a body. */
	if (reply->error < 0)
		assert_non_null(reply->message);
	else
		assert_non_null(reply->body);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Runs the loop until *done or 20 s have passed. */
static void pump_until(struct agent *a, const bool *done)
{
	uint64_t end = now_ms() + 20000;
	while (!*done && now_ms() < end)
		assert_true(sd_event_run(a->event, 50 * 1000) >= 0);
	assert_true(*done);
}

/* One operation with args given as JSON text (NULL: none); the reply is the caller's. */
static struct result op(struct agent *a, enum guest_op o, const char *sid, const char *args)
{
	struct result res = {0};
	json_error_t jerr;
	json_t *j = args ? json_loads(args, 0, &jerr) : NULL;
	if (args && !j)
		fail_msg("bad test JSON %s: %s", args, jerr.text);
	_cleanup_free_ char *why = NULL;
	int r = guests_op(a->guests, o, sid, j, on_done, &res, &why);
	if (r < 0)
		fail_msg("%s %s refused: %s", guest_op_to_string(o), sid, strempty(why));
	assert_false(res.done); /* never before guests_op() returned */
	json_decref(j);
	pump_until(a, &res.done);
	return res;
}

static void result_done(struct result *res)
{
	json_decref(res->body);
	res->body = NULL;
	free(res->message);
	res->message = NULL;
}

static const char *body_str(const struct result *res, const char *key)
{
	const char *s = json_string_value(json_object_get(res->body, key));
	return s ? s : "";
}

/* Expects error (0: success) and, when key is given, the string value of key in the reply's
 * body (success) or, for a failure, value in its message (key "message"). */
static void expect(struct agent *a, enum guest_op o, const char *sid, const char *args, int error,
		   const char *key, const char *value)
{
	struct result res = op(a, o, sid, args);
	if (res.error != error) {
		char *dump = res.body ? json_dumps(res.body, 0) : NULL;
		fail_msg("%s %s: expected %s, got %s: %s %s", guest_op_to_string(o), sid,
			 error ? strerror(-error) : "success",
			 res.error ? strerror(-res.error) : "success", strempty(res.message),
			 dump ? dump : "(no body)");
	}
	if (key && error)
		assert_non_null(strstr(strempty(res.message), value));
	else if (key)
		assert_string_equal(body_str(&res, key), value);
	result_done(&res);
}

/* The status libvirt reports (GUEST_OP_STATUS) and the one of the agent's view must agree. */
static void expect_status(struct agent *a, const char *sid, const char *status, const char *power)
{
	struct result res = op(a, GUEST_OP_STATUS, sid, NULL);
	assert_int_equal(res.error, 0);
	assert_string_equal(body_str(&res, "status"), status);
	assert_string_equal(body_str(&res, "power_states"), power);
	result_done(&res);
	/* The view follows libvirt's lifecycle events: let them arrive. */
	uint64_t end = now_ms() + 5000;
	for (;;) {
		struct op_reply view = {0};
		assert_int_equal(guests_status(a->guests, sid, &view), 0);
		bool same = streq(json_string_value(json_object_get(view.body, "status")), status);
		op_reply_clear(&view);
		if (same)
			break;
		if (now_ms() > end)
			fail_msg("view of %s did not become %s", sid, status);
		assert_true(sd_event_run(a->event, 50 * 1000) >= 0);
	}
}

static void set(struct config *cfg, const char *key, const char *value)
{
	_cleanup_free_ char *err = NULL;
	if (config_set(cfg, key, value, "test", &err) < 0)
		fail_msg("%s: %s", key, err ? err : "refused");
}

static char *path_in(const struct fx *f, const char *rel)
{
	char *p = strjoin(f->dir, "/", rel);
	assert_non_null(p);
	return p;
}

static bool exists(const struct fx *f, const char *rel)
{
	_cleanup_free_ char *p = path_in(f, rel);
	return access(p, F_OK) == 0;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	f->dir = test_tmpdir();
	/* The adopted guest's workspace exists before the agent connects, as after a restart. */
	_cleanup_free_ char *servers = path_in(f, "servers"), *ws = path_in(f, "servers/adopt-vm");
	assert_int_equal(mkdir_p(ws, 0700), 0);
	free(test_write(ws, "desc",
			"{\"uuid\": \"" ADOPT_UUID "\", \"name\": \"adopted\", \"cpu\": 1, "
			"\"mem\": 64}"));
	_cleanup_free_ char *node = test_data("virt/node.xml"), *uri = strjoin("test://", node);
	_cleanup_free_ char *state_dir = path_in(f, "state"), *disks = path_in(f, "disks"),
			    *sock = path_in(f, "admin.sock");
	struct config cfg;
	assert_int_equal(config_init(&cfg), 0);
	set(&cfg, "libvirt_uri", uri);
	set(&cfg, "virt_type", "qemu");
	set(&cfg, "servers_path", servers);
	set(&cfg, "local_image_path", disks);
	set(&cfg, "state_dir", state_dir);
	set(&cfg, "admin_socket", sock);
	set(&cfg, "listen_address", "127.0.0.1");
	set(&cfg, "task_workers", "2");
	_cleanup_free_ char *err = NULL;
	if (config_finish(&cfg, &err) < 0)
		fail_msg("config: %s", err);
	assert_int_equal(agent_new(&cfg, &f->a), 0);
	config_done(&cfg);
	/* Only the guest table: no API, region or host networks are needed for its operations. */
	assert_int_equal(guests_start(f->a->guests), 0);
	uint64_t end = now_ms() + 10000;
	for (;;) {
		struct op_reply r = {0};
		int k = guests_status(f->a->guests, "adopt-vm", &r);
		op_reply_clear(&r);
		if (k == 0)
			break;
		if (now_ms() > end)
			fail_msg("libvirt's test driver did not connect (last status: %s)",
				 strerror(-k));
		assert_true(sd_event_run(f->a->event, 50 * 1000) >= 0);
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	agent_free(f->a);
	rm_rf(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

#define DESC(sid, mem)                                                                             \
	"{\"desc\": {\"uuid\": \"0c4ce5a8-7f3e-4d57-8a0e-5b4f1b2d9e01\", \"name\": \"ops " sid     \
	"\", \"cpu\": 1, \"mem\": " #mem ", \"disks\": [{\"disk_id\": \"" sid "-sys\", "           \
	"\"index\": 0, \"size\": 32}]}}"

/* The whole life of a guest the agent creates. */
static void test_lifecycle(void **state)
{
	struct fx *f = *state;
	struct agent *a = f->a;
	expect(a, GUEST_OP_CREATE, "g1", DESC("g1", 128), 0, NULL, NULL);
	assert_true(exists(f, "servers/g1/desc"));
	assert_true(exists(f, "disks/g1-sys")); /* the blank system disk, under the disk root */
	assert_true(guests_managed(a->guests, "g1"));
	expect_status(a, "g1", "ready", "off");
	/* The same create again is answered as done; another descriptor is a conflict. */
	expect(a, GUEST_OP_CREATE, "g1", DESC("g1", 128), 0, "details", "already exists");
	expect(a, GUEST_OP_CREATE, "g1", DESC("g1", 256), -EEXIST, "message",
	       "different descriptor");

	struct result res = op(a, GUEST_OP_START, "g1", "{}");
	assert_int_equal(res.error, 0);
	assert_true(json_is_true(json_object_get(res.body, "is_running")));
	assert_string_equal(body_str(&res, "details"), "started");
	result_done(&res);
	expect_status(a, "g1", "running", "on");
	expect(a, GUEST_OP_START, "g1", "{}", 0, "details", "already running");

	expect(a, GUEST_OP_SUSPEND, "g1", NULL, 0, "details", "done");
	expect_status(a, "g1", "suspend", "on");
	expect(a, GUEST_OP_SUSPEND, "g1", NULL, 0, "details", "already suspended");
	expect(a, GUEST_OP_RESUME, "g1", NULL, 0, "details", "done");
	expect_status(a, "g1", "running", "on");
	expect(a, GUEST_OP_RESUME, "g1", NULL, 0, "details", "already running");

	/* A cold reboot: asked to power off, then started again; a forced one is a reset. */
	expect(a, GUEST_OP_REBOOT, "g1", "{\"timeout\": 5}", 0, "details", "rebooted");
	expect_status(a, "g1", "running", "on");
	expect(a, GUEST_OP_REBOOT, "g1", "{\"is_force\": true}", 0, "details", "rebooted");
	expect_status(a, "g1", "running", "on");

	/* The monitor: the allow-list refuses before libvirt; the test driver has no QEMU. */
	expect(a, GUEST_OP_MONITOR, "g1", "{\"cmd\": \"quit\"}", -EPERM, "message",
	       "only read-only queries");
	expect(a, GUEST_OP_MONITOR, "g1", "{\"cmd\": \"drive_add 0 file=/etc/shadow\"}", -EPERM,
	       NULL, NULL);
	expect(a, GUEST_OP_MONITOR, "g1", "{\"cmd\": 7}", -EINVAL, NULL, NULL);
	expect(a, GUEST_OP_MONITOR, "g1", "{\"cmd\": \"info status\"}", -EBUSY, NULL, NULL);

	/* Graceful stop: the power-off request, then the loop waits for the guest to go off
	 * (the test driver's guests obey at once). */
	expect(a, GUEST_OP_STOP, "g1", "{\"timeout\": 5}", 0, "details", "graceful");
	expect_status(a, "g1", "ready", "off");
	expect(a, GUEST_OP_STOP, "g1", "{}", 0, "details", "already stopped");
	expect(a, GUEST_OP_SUSPEND, "g1", NULL, -EHOSTDOWN, "message", "is not running");
	expect(a, GUEST_OP_REBOOT, "g1", NULL, -EHOSTDOWN, NULL, NULL);
	expect(a, GUEST_OP_START, "g1", "{}", 0, "details", "started");
	expect(a, GUEST_OP_STOP, "g1", "{\"is_force\": true}", 0, "details", "forced");
	expect_status(a, "g1", "ready", "off");
	/* Bad stop bodies are refused before anything happens. */
	expect(a, GUEST_OP_STOP, "g1", "{\"timeout\": \"soon\"}", -EINVAL, NULL, NULL);
	expect(a, GUEST_OP_STOP, "g1", "{\"timeout\": 99999}", -EINVAL, NULL, NULL);

	/* Sync: a new descriptor for the existing guest, stored in its workspace. */
	expect(a, GUEST_OP_SYNC, "g1", DESC("g1", 256), 0, NULL, NULL);
	_cleanup_free_ char *descp = path_in(f, "servers/g1/desc"), *text = NULL;
	assert_int_equal(read_file(descp, 1 << 20, &text, NULL), 0);
	_cleanup_(json_decrefp) json_t *stored = json_loads(text, 0, NULL);
	assert_int_equal(json_integer_value(json_object_get(stored, "mem")), 256);
	expect(a, GUEST_OP_SYNC, "nosuch", DESC("nosuch", 128), -ENOENT, NULL, NULL);

	/* Delete: domain and workspace gone, the disk stays (the region deletes it). */
	expect(a, GUEST_OP_DELETE, "g1", NULL, 0, NULL, NULL);
	assert_false(exists(f, "servers/g1"));
	assert_true(exists(f, "disks/g1-sys"));
	expect(a, GUEST_OP_STATUS, "g1", NULL, -ENOENT, NULL, NULL);
	struct op_reply view = {0};
	assert_int_equal(guests_status(a->guests, "g1", &view), -ENOENT);
	assert_int_equal(view.error, -ENOENT);
	assert_null(view.body);
	op_reply_clear(&view);
	expect(a, GUEST_OP_DELETE, "g1", NULL, 0, "details", "already deleted");
}

/* Refused at once, before any worker runs: guests_op returns the errno with a message and
 * never calls back. */
static struct result refused; /* what a refused operation must never call back */

static void expect_refused_at_once(struct agent *a, enum guest_op o, const char *sid, json_t *args,
				   int error, const char *what)
{
	_cleanup_free_ char *why = NULL;
	assert_int_equal(guests_op(a->guests, o, sid, args, on_done, &refused, &why), error);
	assert_non_null(why);
	if (!strstr(why, what))
		fail_msg("refusal of %s %s: expected \"%s\" in \"%s\"", guest_op_to_string(o), sid,
			 what, why);
	assert_false(refused.done);
}

static void test_refusals(void **state)
{
	struct fx *f = *state;
	struct agent *a = f->a;
	_cleanup_(json_decrefp) json_t *arr = json_array();
	expect_refused_at_once(a, GUEST_OP_START, "../etc", NULL, -EINVAL, "invalid guest id");
	expect_refused_at_once(a, GUEST_OP_START, "", NULL, -EINVAL, "invalid guest id");
	expect_refused_at_once(a, GUEST_OP_START, "a/b", NULL, -EINVAL, "invalid guest id");
	expect_refused_at_once(a, GUEST_OP_STOP, "g2", arr, -EINVAL, "expected a JSON object");
	expect_refused_at_once(a, _GUEST_OP_MAX, "g2", NULL, -EINVAL, "unknown operation");
	/* Nothing is left to call back later. */
	for (int i = 0; i < 5; i++)
		assert_true(sd_event_run(a->event, 10 * 1000) >= 0);
	assert_false(refused.done);
	/* No such guest. */
	expect(a, GUEST_OP_START, "nosuch", "{}", -ENOENT, "message", "guest nosuch not found");
	expect(a, GUEST_OP_STATUS, "nosuch", NULL, -ENOENT, NULL, NULL);
	/* Bad descriptors: nothing is left behind. */
	expect(a, GUEST_OP_CREATE, "g2", "{}", -EINVAL, NULL, NULL);
	expect(a, GUEST_OP_CREATE, "g2", "{\"desc\": {\"name\": \"x\"}}", -EINVAL, NULL, NULL);
	expect(a, GUEST_OP_CREATE, "g2",
	       "{\"desc\": {\"uuid\": \"0c4ce5a8-7f3e-4d57-8a0e-5b4f1b2d9e01\", \"name\": \"x\", "
	       "\"cpu\": 1, \"mem\": 128, \"disks\": [{\"disk_id\": \"d\", \"index\": 0, "
	       "\"path\": \"/etc/passwd\"}]}}",
	       -EINVAL, NULL, NULL);
	assert_false(exists(f, "servers/g2"));
	assert_int_equal(test_count_entries(f->a->cfg.local_image_path[0]), 0);
	expect(a, GUEST_OP_STATUS, "g2", NULL, -ENOENT, NULL, NULL);
}

/* A domain someone else defined is listed but never touched. */
static void test_unmanaged(void **state)
{
	struct fx *f = *state;
	struct agent *a = f->a;
	assert_false(guests_managed(a->guests, "unmanaged-vm"));
	expect_status(a, "unmanaged-vm", "running", "on");
	expect(a, GUEST_OP_STOP, "unmanaged-vm", "{\"is_force\": true}", -EEXIST, "message",
	       "not defined by hostagent");
	expect(a, GUEST_OP_SUSPEND, "unmanaged-vm", NULL, -EEXIST, NULL, NULL);
	expect(a, GUEST_OP_DELETE, "unmanaged-vm", NULL, -EEXIST, NULL, NULL);
	expect(a, GUEST_OP_CREATE, "unmanaged-vm", DESC("unmanaged-vm", 128), -EEXIST, NULL, NULL);
	expect(a, GUEST_OP_MONITOR, "unmanaged-vm", "{\"cmd\": \"info status\"}", -EEXIST, NULL,
	       NULL);
	/* Still running, still defined, and no workspace or disk was made for it. */
	expect_status(a, "unmanaged-vm", "running", "on");
	assert_false(exists(f, "servers/unmanaged-vm"));
	assert_false(exists(f, "disks/unmanaged-vm-sys"));
}

/* A shut-off domain with hostagent metadata and a workspace, found when libvirt connects:
 * adopted as it is and driven like any other. */
static void test_adopted(void **state)
{
	struct fx *f = *state;
	struct agent *a = f->a;
	assert_true(guests_managed(a->guests, "adopt-vm"));
	expect_status(a, "adopt-vm", "ready", "off");
	expect(a, GUEST_OP_START, "adopt-vm", "{}", 0, "details", "started");
	expect_status(a, "adopt-vm", "running", "on");
	expect(a, GUEST_OP_STOP, "adopt-vm", "{\"is_force\": true}", 0, "details", "forced");
	expect_status(a, "adopt-vm", "ready", "off");
	expect(a, GUEST_OP_DELETE, "adopt-vm", NULL, 0, NULL, NULL);
	assert_false(exists(f, "servers/adopt-vm"));
	expect(a, GUEST_OP_STATUS, "adopt-vm", NULL, -ENOENT, NULL, NULL);
}

/* Once the agent stops, new work is refused at once; running guests are left running. */
static void test_stopping(void **state)
{
	struct fx *f = *state;
	struct agent *a = f->a;
	agent_stop(a, 0);
	expect_refused_at_once(a, GUEST_OP_STOP, "unmanaged-vm", NULL, -ESHUTDOWN, "shutting down");
	expect_refused_at_once(a, GUEST_OP_CREATE, "g3", NULL, -ESHUTDOWN, "shutting down");
	assert_int_equal(agent_run(a), 0); /* the drain ends: nothing was in flight */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_lifecycle, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unmanaged, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_adopted, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stopping, setup, teardown),
	};
	return test_run(__FILE__, tests, ELEMENTSOF(tests));
}

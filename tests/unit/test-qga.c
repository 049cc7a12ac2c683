/* The guest agent's pure parts (agent/qga.c): the allow-list, request bodies, replies as the Go
 * agent answers them, and the table of answering agents with its bounded probe choice. */
#include "agent/qga.h"
#include "tests/unit/test-common.h"

static json_t *body(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);
	assert_non_null(j);
	return j;
}

static void test_allow_list(void **state)
{
	const char *ok[] = {"guest-ping", "guest-info", "guest-get-osinfo",
			    "guest-network-get-interfaces", "guest-get-host-name"};
	const char *bad[] = {"guest-exec",
			     "guest-exec-status",
			     "guest-file-open",
			     "guest-file-write",
			     "guest-set-user-password",
			     "guest-shutdown",
			     "guest-fsfreeze-freeze",
			     "guest-suspend-disk",
			     "guest-set-time",
			     "guest-ssh-add-authorized-keys",
			     "",
			     "GUEST-PING",
			     "guest-ping "};
	for (size_t i = 0; i < ELEMENTSOF(ok); i++)
		assert_true(qga_command_allowed(ok[i]));
	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		assert_false(qga_command_allowed(bad[i]));
	assert_false(qga_command_allowed(NULL));
	assert_string_equal(qga_op_to_string(QGA_OP_GUEST_INFO), "qga-guest-info-task");
	assert_string_equal(qga_op_to_string(_QGA_OP_MAX), "?");
}

static void test_parse_command(void **state)
{
	char err[512];
	char *cmd = NULL, *name = NULL;
	int t = -1;
	/* The Go agent's form: the command as JSON text. Re-serialized, so what reaches libvirt
	 * is exactly one object with execute and arguments. */
	json_auto_t *b1 = body("{\"command\": \"{\\\"execute\\\": \\\"guest-get-time\\\"}\"}");
	assert_int_equal(qga_parse_command(b1, &cmd, &name, &t, err, sizeof(err)), 0);
	assert_string_equal(cmd, "{\"execute\":\"guest-get-time\"}");
	assert_string_equal(name, "guest-get-time");
	assert_int_equal(t, QGA_TIMEOUT_DEFAULT);
	free(cmd);
	free(name);
	/* An object is taken too; arguments kept; the timeout capped. */
	json_auto_t *b2 = body("{\"command\": {\"execute\": \"guest-get-fsinfo\", \"arguments\": "
			       "{}}, \"timeout\": 999}");
	assert_int_equal(qga_parse_command(b2, &cmd, &name, &t, err, sizeof(err)), 0);
	assert_string_equal(cmd, "{\"execute\":\"guest-get-fsinfo\",\"arguments\":{}}");
	assert_int_equal(t, QGA_TIMEOUT_MAX);
	free(cmd);
	free(name);

	/* Forbidden: 403 naming the command. */
	json_auto_t *b3 = body("{\"command\": \"{\\\"execute\\\": \\\"guest-exec\\\", "
			       "\\\"arguments\\\": {\\\"path\\\": \\\"/bin/sh\\\"}}\"}");
	cmd = name = NULL;
	assert_int_equal(qga_parse_command(b3, &cmd, &name, &t, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "\"guest-exec\" is not allowed"));
	assert_null(cmd);

	/* Malformed bodies: 400 with a reason. */
	static const struct {
		const char *body, *want;
	} bad[] = {
	    {"{}", "command: missing"},
	    {"{\"command\": 5}", "command: missing"},
	    {"{\"command\": \"\"}", "command: empty"},
	    {"{\"command\": \"{nope\"}", "command: not JSON"},
	    {"{\"command\": \"[1]\"}", "expected a JSON object"},
	    {"{\"command\": \"{\\\"execute\\\": 1}\"}", "execute: missing or not a string"},
	    {"{\"command\": {\"execute\": \"guest-ping\", \"id\": 1}}", "unexpected key \"id\""},
	    {"{\"command\": {\"execute\": \"guest-ping\", \"arguments\": []}}",
	     "arguments: expected an object"},
	    {"{\"command\": {\"execute\": \"guest-ping\"}, \"timeout\": \"x\"}", "timeout:"},
	    {"{\"command\": {\"execute\": \"guest-ping\"}, \"timeout\": -1}", "timeout:"},
	    /* Duplicate keys: the one the agent would act on is ambiguous. */
	    {"{\"command\": \"{\\\"execute\\\": \\\"guest-ping\\\", \\\"execute\\\": "
	     "\\\"guest-exec\\\"}\"}",
	     "command: not JSON"},
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		json_auto_t *b = body(bad[i].body);
		err[0] = 0;
		assert_int_equal(qga_parse_command(b, &cmd, &name, &t, err, sizeof(err)), -EINVAL);
		if (!strstr(err, bad[i].want))
			fail_msg("%s: '%s' lacks '%s'", bad[i].body, err, bad[i].want);
	}
}

static void test_parse_set_password(void **state)
{
	char err[256];
	const char *u, *p;
	bool crypted = true;
	json_auto_t *b = body("{\"username\": \"root\", \"password\": \"s3cret!\"}");
	assert_int_equal(qga_parse_set_password(b, &u, &p, &crypted, err, sizeof(err)), 0);
	assert_string_equal(u, "root");
	assert_string_equal(p, "s3cret!");
	assert_false(crypted);
	json_auto_t *b2 =
	    body("{\"username\": \"cloud-user\", \"password\": \"$6$x$y\", \"crypted\": true}");
	assert_int_equal(qga_parse_set_password(b2, &u, &p, &crypted, err, sizeof(err)), 0);
	assert_true(crypted);

	static const struct {
		const char *body, *want;
	} bad[] = {
	    {"{\"password\": \"pw-secret\"}", "username: missing"},
	    {"{\"username\": \"\", \"password\": \"pw-secret\"}", "username: missing"},
	    {"{\"username\": \"root:x\", \"password\": \"pw-secret\"}", "username: only"},
	    {"{\"username\": \"../etc\", \"password\": \"pw-secret\"}", "username: only"},
	    {"{\"username\": \"-root\", \"password\": \"pw-secret\"}", "username: only"},
	    {"{\"username\": \"root\"}", "password: missing"},
	    {"{\"username\": \"root\", \"password\": 5}", "password: missing"},
	    {"{\"username\": \"root\", \"password\": \"pw-secret\", \"crypted\": 1}",
	     "crypted: expected a boolean"},
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		json_auto_t *j = body(bad[i].body);
		assert_int_equal(qga_parse_set_password(j, &u, &p, &crypted, err, sizeof(err)),
				 -EINVAL);
		if (!strstr(err, bad[i].want))
			fail_msg("%s: '%s' lacks '%s'", bad[i].body, err, bad[i].want);
		/* The password is never quoted back. */
		assert_null(strstr(err, "pw-secret"));
	}
}

static void test_parse_reply(void **state)
{
	char err[256];
	json_t *r = NULL;
	assert_int_equal(qga_parse_reply("{\"return\": {}}", &r, err, sizeof(err)), 0);
	assert_true(json_is_object(r));
	json_decref(r);
	assert_int_equal(
	    qga_parse_reply("{\"return\": [{\"name\": \"lo\"}]}", &r, err, sizeof(err)), 0);
	assert_true(json_is_array(r));
	json_decref(r);
	assert_int_equal(qga_parse_reply("{\"return\": 1733100000000000000}", &r, err, sizeof(err)),
			 0);
	assert_true(json_is_integer(r));
	json_decref(r);
	assert_int_equal(qga_parse_reply("{\"error\": {\"class\": \"CommandNotFound\", \"desc\": "
					 "\"The command guest-foo has not been found\"}}",
					 &r, err, sizeof(err)),
			 -EREMOTEIO);
	assert_string_equal(err, "CommandNotFound: The command guest-foo has not been found");
	assert_int_equal(qga_parse_reply("not json", &r, err, sizeof(err)), -EBADMSG);
	assert_int_equal(qga_parse_reply("[]", &r, err, sizeof(err)), -EBADMSG);
	assert_int_equal(qga_parse_reply(NULL, &r, err, sizeof(err)), -EBADMSG);
	assert_int_equal(qga_parse_reply("{\"foo\": 1}", &r, err, sizeof(err)), -EBADMSG);
}

static void test_os_info(void **state)
{
	json_auto_t *ret = body("{\"id\": \"debian\", \"name\": \"Debian GNU/Linux\", "
				"\"pretty-name\": \"Debian GNU/Linux 12 (bookworm)\", "
				"\"version-id\": \"12\", \"kernel-release\": \"6.1.0-28-amd64\", "
				"\"machine\": \"x86_64\", \"extra\": 1}");
	json_auto_t *o = qga_os_info(ret);
	assert_non_null(o);
	/* Every field of the Go agent's GuestOsInfo, "" when the guest left it out. */
	assert_int_equal(json_object_size(o), 8);
	assert_string_equal(json_string_value(json_object_get(o, "id")), "debian");
	assert_string_equal(json_string_value(json_object_get(o, "pretty-name")),
			    "Debian GNU/Linux 12 (bookworm)");
	assert_string_equal(json_string_value(json_object_get(o, "version")), "");
	assert_string_equal(json_string_value(json_object_get(o, "kernel-version")), "");
	assert_null(json_object_get(o, "extra"));
	json_auto_t *empty = qga_os_info(NULL);
	assert_int_equal(json_object_size(empty), 8);
}

static void test_timeout(void **state)
{
	char err[128];
	int t;
	json_auto_t *a = body("{}"), *b = body("{\"timeout\": 0}"), *c = body("{\"timeout\": 3}"),
		    *d = body("{\"timeout\": 1.5}");
	assert_int_equal(qga_parse_timeout(a, 7, &t, err, sizeof(err)), 0);
	assert_int_equal(t, 7);
	assert_int_equal(qga_parse_timeout(b, 7, &t, err, sizeof(err)), 0);
	assert_int_equal(t, 7);
	assert_int_equal(qga_parse_timeout(c, 7, &t, err, sizeof(err)), 0);
	assert_int_equal(t, 3);
	assert_int_equal(qga_parse_timeout(d, 7, &t, err, sizeof(err)), -EINVAL);
}

static size_t strv_len(char **l)
{
	size_t n = 0;
	while (l && l[n])
		n++;
	return n;
}

static void test_tracker(void **state)
{
	struct qga_tracker *t;
	assert_int_equal(qga_tracker_new(&t), 0);
	json_auto_t *none = qga_tracker_running(t);
	assert_int_equal(json_array_size(none), 0);

	/* Ten guests that never answer, two that do, one disconnected. */
	char sid[32];
	for (int i = 0; i < 10; i++) {
		snprintf(sid, sizeof(sid), "dead-%02d", i);
		assert_int_equal(qga_tracker_channel(t, sid, QGA_CHANNEL_CONNECTED), 0);
		assert_int_equal(qga_tracker_answered(t, sid, false, 0), 0);
	}
	assert_int_equal(qga_tracker_channel(t, "off", QGA_CHANNEL_DISCONNECTED), 0);
	assert_int_equal(qga_tracker_answered(t, "good-b", true, 100), 0);
	assert_int_equal(qga_tracker_answered(t, "good-a", true, 100), 0);
	assert_int_equal(qga_tracker_count_answering(t), 2);
	json_auto_t *run = qga_tracker_running(t);
	assert_int_equal(json_array_size(run), 2);
	assert_string_equal(json_string_value(json_array_get(run, 0)), "good-a"); /* sorted */

	/* A round probes the answering ones and at most 3 others; never the disconnected one.
	 * Rounds go through all the others, least recently probed first. */
	uint64_t now = 1000;
	bool seen[10] = {false};
	for (int round = 0; round < 4; round++) {
		char **p = qga_tracker_pick(t, 16, 3);
		assert_non_null(p);
		assert_true(strv_len(p) <= 5);
		assert_string_equal(p[0], "good-a");
		assert_string_equal(p[1], "good-b");
		for (size_t i = 2; p[i]; i++) {
			assert_true(strncmp(p[i], "dead-", 5) == 0);
			seen[atoi(p[i] + 5)] = true;
			assert_int_equal(qga_tracker_answered(t, p[i], false, now++), 0);
		}
		for (size_t i = 0; p[i]; i++)
			free(p[i]);
		free(p);
	}
	for (int i = 0; i < 10; i++)
		assert_true(seen[i]);
	assert_int_equal(qga_tracker_count_answering(t), 2);

	/* An agent that stops answering leaves the list; a disconnect too; a reconnect forgets
	 * the last answer until the next probe. */
	assert_int_equal(qga_tracker_answered(t, "good-b", false, now++), 0);
	assert_int_equal(qga_tracker_answer(t, "good-b"), QGA_ANSWER_NO);
	assert_int_equal(qga_tracker_channel(t, "good-a", QGA_CHANNEL_DISCONNECTED), 0);
	assert_int_equal(qga_tracker_count_answering(t), 0);
	assert_int_equal(qga_tracker_channel(t, "good-a", QGA_CHANNEL_CONNECTED), 0);
	assert_int_equal(qga_tracker_answer(t, "good-a"), QGA_ANSWER_UNKNOWN);
	/* Never probed since its channel came up: a fresh one, probed besides the bounded
	 * others. */
	char **p = qga_tracker_pick(t, 1, 1);
	assert_int_equal(strv_len(p), 2);
	assert_string_equal(p[0], "good-a");
	assert_true(strncmp(p[1], "dead-", 5) == 0 || streq(p[1], "good-b"));
	for (size_t i = 0; p[i]; i++)
		free(p[i]);
	free(p);
	/* Many fresh ones (agents of guests found running after a restart): at most max_fresh. */
	for (int i = 0; i < 40; i++) {
		snprintf(sid, sizeof(sid), "fresh-%02d", i);
		assert_int_equal(qga_tracker_channel(t, sid, QGA_CHANNEL_CONNECTED), 0);
	}
	p = qga_tracker_pick(t, 16, 3);
	size_t fresh = 0;
	for (size_t i = 0; p[i]; i++) {
		fresh += strncmp(p[i], "fresh-", 6) == 0;
		free(p[i]);
	}
	assert_int_equal(fresh, 16);
	assert_int_equal(strv_len(p), 16 + 3); /* fresh ones (before good-a by name), others */
	free(p);
	for (int i = 0; i < 40; i++) {
		snprintf(sid, sizeof(sid), "fresh-%02d", i);
		qga_tracker_remove(t, sid);
	}
	/* An answer marks the channel up (its event may come later). */
	assert_int_equal(qga_tracker_answered(t, "off", true, now++), 0);
	assert_int_equal(qga_tracker_count_answering(t), 1);
	qga_tracker_remove(t, "off");
	qga_tracker_remove(t, "not-there");
	assert_int_equal(qga_tracker_count_answering(t), 0);
	assert_int_equal(qga_tracker_answer(t, "off"), QGA_ANSWER_UNKNOWN);
	qga_tracker_free(t);
}

TEST_MAIN(cmocka_unit_test(test_allow_list), cmocka_unit_test(test_parse_command),
	  cmocka_unit_test(test_parse_set_password), cmocka_unit_test(test_parse_reply),
	  cmocka_unit_test(test_os_info), cmocka_unit_test(test_timeout),
	  cmocka_unit_test(test_tracker))

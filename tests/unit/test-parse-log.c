#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/parse.h"
#include "tests/unit/test-common.h"

static void test_ints(void **state)
{
	int64_t v;
	int i;
	assert_int_equal(parse_int64("42", 0, 100, &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(parse_int64("-5", -10, 10, &v), 0);
	assert_int_equal(parse_int64("", 0, 10, &v), -EINVAL);
	assert_int_equal(parse_int64(" 5", 0, 10, &v), -EINVAL);
	assert_int_equal(parse_int64("5x", 0, 10, &v), -EINVAL);
	assert_int_equal(parse_int64("11", 0, 10, &v), -ERANGE);
	assert_int_equal(parse_int64("99999999999999999999", 0, INT64_MAX, &v), -ERANGE);
	assert_int_equal(parse_int("2147483648", 0, INT32_MAX, &i), -ERANGE);
	bool b;
	assert_int_equal(parse_bool("yes", &b), 0);
	assert_true(b);
	assert_int_equal(parse_bool("off", &b), 0);
	assert_false(b);
	assert_int_equal(parse_bool("maybe", &b), -EINVAL);
}

static void test_mac_utf8(void **state)
{
	assert_true(mac_is_valid("52:54:00:aB:cd:ef"));
	assert_false(mac_is_valid("52:54:00:ab:cd"));
	assert_false(mac_is_valid("52-54-00-ab-cd-ef"));
	assert_false(mac_is_valid("52:54:00:ab:cd:eg"));
	assert_true(utf8_is_valid("h\xc3\xa9llo", 6));
	assert_false(utf8_is_valid("\xc3", 1));
	assert_false(utf8_is_valid("\xc0\xaf", 2));	/* overlong */
	assert_false(utf8_is_valid("\xed\xa0\x80", 3)); /* surrogate */
	assert_false(utf8_is_valid("\xff", 1));
}

static void test_hostnames(void **state)
{
	assert_true(hostname_is_valid("vm-1"));
	assert_true(hostname_is_valid("a.b-c.example"));
	assert_true(hostname_is_valid("web_1")); /* the region allows '_' */
	assert_true(hostname_is_valid("_srv.x_y"));
	assert_true(hostname_is_valid("0"));
	char label[65];
	memset(label, 'a', 63);
	label[63] = 0;
	assert_true(hostname_is_valid(label));
	label[63] = 'a';
	label[64] = 0;
	assert_false(hostname_is_valid(label));
	char name[HOSTNAME_MAX + 2];
	for (size_t i = 0; i < sizeof(name) - 1; i++)
		name[i] = i % 2 ? '.' : 'a';
	name[HOSTNAME_MAX] = 0;
	assert_true(hostname_is_valid(name));
	name[HOSTNAME_MAX] = 'a';
	name[HOSTNAME_MAX + 1] = 0;
	assert_false(hostname_is_valid(name));
	assert_false(hostname_is_valid("a..b"));
	assert_false(hostname_is_valid("-a"));
	assert_false(hostname_is_valid("a-.b"));
	assert_false(hostname_is_valid("a.-b"));
	assert_false(hostname_is_valid("a b"));
	assert_false(hostname_is_valid("a."));
	assert_false(hostname_is_valid(".a"));
	assert_false(hostname_is_valid("a/b"));
	assert_false(hostname_is_valid("h\xc3\xa9"));
	assert_false(hostname_is_valid(""));
	assert_false(hostname_is_valid(NULL));
}

static void test_log_lines(void **state)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	log_set_stream(f);
	log_set_max_level(LOG_INFO);
	log_info("Guest %s started", "g1");
	log_debug("hidden");
	int r = log_error_errno(-ENOENT, "Failed to open \"%s\": %m", "x y");
	assert_int_equal(r, -ENOENT);
	log_kv(LOG_WARNING, "Module missing", "module", "nbd", "reason", "not found", NULL);
	log_set_format(LOG_FORMAT_JSON);
	log_kv(LOG_INFO, "json line", "sid", "a\"b", NULL);
	log_set_format(LOG_FORMAT_TEXT);
	log_set_stream(NULL);
	fclose(f);
	assert_non_null(strstr(buf, "level=info msg=\"Guest g1 started\"\n"));
	assert_null(strstr(buf, "hidden"));
	assert_non_null(strstr(
	    buf, "level=error msg=\"Failed to open \\\"x y\\\": No such file or directory\""));
	assert_non_null(
	    strstr(buf, "level=warning msg=\"Module missing\" module=nbd reason=\"not found\"\n"));
	assert_non_null(
	    strstr(buf, "\"level\":\"info\",\"msg\":\"json line\",\"sid\":\"a\\\"b\"}\n"));
	/* One event, one line. */
	int lines = 0;
	for (char *p = buf; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, 4);
	free(buf);
}

TEST_MAIN(cmocka_unit_test(test_ints), cmocka_unit_test(test_mac_utf8),
	  cmocka_unit_test(test_hostnames), cmocka_unit_test(test_log_lines))

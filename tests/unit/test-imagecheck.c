/* Checks of untrusted images (agent/imagecheck.c): qemu-img's JSON refused when it names a
 * backing file, an external data file (H2), a protocol filename or another format; and the
 * same on real images made with qemu-img when it is installed. */
#include <stdlib.h>
#include <unistd.h>

#include "agent/imagecheck.h"
#include "common/spawn.h"
#include "tests/unit/test-common.h"

static int check(const char *text, const char *path, const char *fmt, char **err)
{
	json_t *j = json_loads(text, 0, NULL);
	assert_non_null(j);
	struct image_info ii;
	int r = image_info_check(j, path, fmt, &ii, err);
	if (r == 0) {
		assert_string_equal(ii.format, fmt);
		assert_true(ii.virtual_size > 0);
	}
	json_decref(j);
	return r;
}

static void test_json(void **state)
{
	char *err = NULL;
	const char *leaf = "{\"virtual-size\": 65536, \"filename\": \"/c/img\", \"format\": "
			   "\"qcow2\", \"format-specific\": {\"type\": \"qcow2\", \"data\": "
			   "{\"compat\": \"1.1\"}}}";
	assert_int_equal(check(leaf, "/c/img", "qcow2", &err), 0);
	assert_null(err);
	/* Announced raw, but it is qcow2 (or the other way round). */
	assert_int_equal(check(leaf, "/c/img", "raw", &err), -EMEDIUMTYPE);
	assert_non_null(strstr(err, "not the announced raw"));
	free(err), err = NULL;
	assert_int_equal(check(leaf, "/c/img", "vmdk", &err), -EMEDIUMTYPE);
	free(err), err = NULL;
	const char *backed = "{\"virtual-size\": 1, \"filename\": \"/c/img\", \"format\": "
			     "\"qcow2\", \"backing-filename\": \"/etc/shadow\"}";
	assert_int_equal(check(backed, "/c/img", "qcow2", &err), -EMEDIUMTYPE);
	assert_non_null(strstr(err, "/etc/shadow"));
	free(err), err = NULL;
	const char *datafile = "{\"virtual-size\": 65536, \"filename\": \"/c/img\", \"format\": "
			       "\"qcow2\", \"format-specific\": {\"type\": \"qcow2\", \"data\": "
			       "{\"data-file\": \"/root/secret.raw\", \"data-file-raw\": true}}}";
	assert_int_equal(check(datafile, "/c/img", "qcow2", &err), -EMEDIUMTYPE);
	assert_non_null(strstr(err, "data file /root/secret.raw"));
	free(err), err = NULL;
	const char *proto = "{\"virtual-size\": 1, \"filename\": \"json:{\\\"file\\\": 1}\", "
			    "\"format\": \"raw\"}";
	assert_int_equal(check(proto, "json:{\"file\": 1}", "raw", &err), -EMEDIUMTYPE);
	free(err), err = NULL;
	const char *nbd = "{\"virtual-size\": 1, \"filename\": \"nbd://h/x\", \"format\": \"raw\"}";
	assert_int_equal(check(nbd, "nbd://h/x", "raw", &err), -EMEDIUMTYPE);
	free(err), err = NULL;
	const char *child = "{\"virtual-size\": 1, \"filename\": \"/c/img\", \"format\": \"qcow2\","
			    " \"children\": [{\"name\": \"file\"}, {\"name\": \"data-file\"}]}";
	assert_int_equal(check(child, "/c/img", "qcow2", &err), -EMEDIUMTYPE);
	free(err), err = NULL;
	assert_int_equal(check("{\"format\": \"qcow2\"}", "/c/img", "qcow2", &err), -EBADMSG);
	free(err), err = NULL;
}

static bool have_qemu_img(void)
{
	const char *argv[] = {"qemu-img", "--version", NULL};
	struct spawn_opts o = {.capture = true};
	struct spawn_result res = {};
	int r = spawn_run((char *const *)argv, &o, &res);
	bool ok = r == 0 && res.exit_status == 0;
	spawn_result_done(&res);
	return ok;
}

static void run(const char *const *argv)
{
	struct spawn_opts o = {.capture = true};
	struct spawn_result res = {};
	assert_int_equal(spawn_run((char *const *)argv, &o, &res), 0);
	assert_int_equal(res.exit_status, 0);
	spawn_result_done(&res);
}

static void test_real_images(void **state)
{
	if (!have_qemu_img())
		skip();
	_cleanup_free_ char *dir = test_tmpdir();
	char good[256], evil[256], data[256], over[256];
	snprintf(good, sizeof(good), "%s/good", dir);
	snprintf(evil, sizeof(evil), "%s/evil", dir);
	snprintf(data, sizeof(data), "%s/secret.raw", dir);
	snprintf(over, sizeof(over), "%s/overlay", dir);
	char opt[512];
	snprintf(opt, sizeof(opt), "data_file=%s,data_file_raw=on", data);
	run((const char *const[]){"qemu-img", "create", "-q", "-f", "qcow2", good, "1M", NULL});
	run((const char *const[]){"qemu-img", "create", "-q", "-f", "qcow2", "-o", opt, evil, "64K",
				  NULL});
	run((const char *const[]){"qemu-img", "create", "-q", "-f", "qcow2", "-b", good, "-F",
				  "qcow2", over, NULL});
	struct image_info ii;
	char *err = NULL;
	assert_int_equal(image_inspect(good, "qcow2", &ii, &err), 0);
	assert_int_equal(ii.virtual_size, 1024 * 1024);
	assert_int_equal(image_inspect(evil, "qcow2", &ii, &err), -EMEDIUMTYPE);
	assert_non_null(strstr(err, data));
	free(err), err = NULL;
	assert_int_equal(image_inspect(over, "qcow2", &ii, &err), -EMEDIUMTYPE);
	assert_non_null(strstr(err, "backing file"));
	free(err), err = NULL;
	/* Read as raw, a qcow2 file is "raw" to qemu-img: announced raw is accepted as raw. */
	assert_int_equal(image_inspect(good, "raw", &ii, &err), 0);
	/* Announced qcow2, it is not one (here a raw file): refused, not taken for what it is. */
	assert_int_equal(image_inspect(data, "qcow2", &ii, &err), -EIO);
	assert_non_null(strstr(err, "as qcow2"));
	free(err), err = NULL;
	unlink(good), unlink(evil), unlink(data), unlink(over), rmdir(dir);
}

TEST_MAIN(cmocka_unit_test(test_json), cmocka_unit_test(test_real_images))

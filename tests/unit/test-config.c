#include <stdio.h>

#include "agent/args.h"
#include "common/config.h"
#include "common/fs.h"
#include "tests/unit/test-common.h"

static void test_defaults(void **state)
{
	struct config c;
	assert_int_equal(config_init(&c), 0);
	_cleanup_free_ char *err = NULL;
	assert_int_equal(config_finish(&c, &err), 0);
	assert_int_equal(c.port, 8885);
	assert_string_equal(c.listen_address, "0.0.0.0");
	assert_string_equal(c.servers_path, "/opt/cloud/workspace/servers");
	assert_string_equal(c.local_image_path[0], "/opt/cloud/workspace/disks");
	assert_null(c.local_image_path[1]);
	assert_string_equal(c.api_token_file, "/var/lib/hostagent/api-token");
	assert_string_equal(c.libvirt_uri, "qemu:///system");
	assert_true(config_standalone(&c));
	assert_int_equal(c.ping_region_interval, 60);
	/* Defaults name the modules a KVM node needs; nbd carries its parameter. */
	bool nbd = false, tun = false, kvm = false;
	for (size_t i = 0; i < c.n_kernel_modules; i++) {
		if (streq(c.kernel_modules[i].name, "nbd")) {
			nbd = true;
			assert_string_equal(c.kernel_modules[i].params, "max_part=16");
		}
		if (streq(c.kernel_modules[i].name, "tun"))
			tun = c.kernel_modules[i].required;
		if (streq(c.kernel_modules[i].name, "kvm"))
			kvm = c.kernel_modules[i].required;
	}
	assert_true(nbd && tun && kvm);
	config_done(&c);
}

static void test_valid_file(void **state)
{
	struct config c;
	_cleanup_free_ char *err = NULL, *path = test_data("config/valid.yaml");
	assert_int_equal(config_init(&c), 0);
	assert_int_equal(config_load_file(&c, path, &err), 0);
	assert_null(err);
	assert_int_equal(config_finish(&c, &err), 0);
	assert_string_equal(c.listen_address, "10.0.0.5");
	assert_int_equal(c.port, 18885);
	assert_string_equal(c.local_image_path[1], "/data/disks");
	assert_int_equal(strv_length(c.local_image_path), 2);
	assert_string_equal(c.auth_url, "http://keystone:5000/v3");
	assert_string_equal(c.session_endpoint_type, "public");
	assert_false(config_standalone(&c));
	assert_false(c.enforce_placement);
	assert_int_equal(c.n_kernel_modules, 3);
	assert_string_equal(c.kernel_modules[1].name, "nbd");
	assert_string_equal(c.kernel_modules[1].params, "max_part=16");
	assert_false(c.kernel_modules[1].required);
	assert_true(c.kernel_modules[2].required);
	assert_string_equal(c.api_token_file, "/srv/state/api-token");
	config_done(&c);
}

/* Each invalid file is refused with a message naming file, line and key. */
static void test_invalid_files(void **state)
{
	static const struct {
		const char *yaml, *expect;
	} cases[] = {
	    {"port: 8885\nfoo: 1\n", ":2: unknown key 'foo'"},
	    {"port: abc\n", ":1: key 'port': expected integer, got 'abc'"},
	    {"port: \"80\"\n", ":1: key 'port': expected integer, got string '80'"},
	    {"\nport: 70000\n", ":2: key 'port': value 70000 out of range 0..65535"},
	    {"port: -1\n", "key 'port': value -1 out of range 0..65535"},
	    {"port: [1, 2]\n", ":1: key 'port': expected integer, got a list"},
	    {"log_level: loud\n", "key 'log_level': invalid value 'loud' (allowed: debug, info"},
	    {"servers_path: relative/dir\n", "key 'servers_path': path must be absolute"},
	    {"local_image_path: /one\n", "key 'local_image_path': expected list of strings"},
	    {"local_image_path:\n  - [x]\n", ":2: key 'local_image_path': expected string item"},
	    {"enforce_placement: maybe\n",
	     "key 'enforce_placement': expected boolean, got 'maybe'"},
	    {"kernel_modules:\n  - name: \"tun;rm\"\n", "invalid or missing module name 'tun;rm'"},
	    {"kernel_modules:\n  - name: nbd\n    params: \"$(reboot)\"\n",
	     "key 'kernel_modules.params': invalid parameters"},
	    {"kernel_modules:\n  - name: nbd\n    color: red\n",
	     ":3: unknown key 'kernel_modules.color'"},
	    {"port: 1\n  bad: [\n", "YAML syntax error"},
	    {"- a\n- b\n", ":1: expected a mapping of keys"},
	    {"ping_region_interval: 1\n",
	     "key 'ping_region_interval': value 1 out of range 5..3600"},
	};
	_cleanup_free_ char *dir = test_tmpdir();
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		struct config c;
		_cleanup_free_ char *err = NULL;
		_cleanup_free_ char *path = test_write(dir, "bad.yaml", cases[i].yaml);
		assert_int_equal(config_init(&c), 0);
		int r = config_load_file(&c, path, &err);
		if (r >= 0)
			fail_msg("case %zu accepted: %s", i, cases[i].yaml);
		assert_non_null(err);
		if (!strstr(err, cases[i].expect) || !strstr(err, path))
			fail_msg("case %zu: message '%s' lacks '%s'", i, err, cases[i].expect);
		config_done(&c);
	}
	rm_rf(dir);
}

static void test_missing_file(void **state)
{
	struct config c;
	_cleanup_free_ char *err = NULL;
	assert_int_equal(config_init(&c), 0);
	assert_int_equal(config_load_file(&c, "/nonexistent/host.conf", &err), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/host.conf: cannot read configuration"));
	config_done(&c);
}

static void test_cross_checks(void **state)
{
	struct config c;
	_cleanup_free_ char *err = NULL;
	assert_int_equal(config_init(&c), 0);
	assert_int_equal(config_set(&c, "auth_url", "http://ks/v3", "test", &err), 0);
	assert_int_equal(config_finish(&c, &err), -EINVAL);
	assert_non_null(strstr(err, "'admin_user' and 'admin_password' are required"));
	config_done(&c);

	free(err);
	err = NULL;
	assert_int_equal(config_init(&c), 0);
	assert_int_equal(config_set(&c, "tls_cert_file", "/etc/cert.pem", "test", &err), 0);
	assert_int_equal(config_finish(&c, &err), -EINVAL);
	assert_non_null(strstr(err, "must be set together"));
	config_done(&c);
}

/* Order: file < environment < flags. */
static void test_overrides(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir();
	_cleanup_free_ char *path = test_write(dir, "host.conf",
					       "port: 1000\nlog_level: error\n"
					       "zone: filezone\n");
	char *argv[] = {"hostagent",	  "--config",	   path, "--log-level=debug",
			"--servers_path", "/flag/servers", NULL};
	char *env[] = {"HOSTAGENT_PORT=2000",
		       "HOSTAGENT_LOG_LEVEL=warning",
		       "HOSTAGENT_LOCAL_IMAGE_PATH=/e1,/e2",
		       "HOSTAGENT_KERNEL_MODULES=nbd max_part=8;tun?",
		       "HOSTAGENT_UNRELATED=x",
		       "PATH=/bin",
		       NULL};
	struct agent_args a;
	_cleanup_free_ char *err = NULL;
	assert_int_equal(agent_args_parse(6, argv, &a, &err), 0);
	struct config c;
	assert_int_equal(agent_config_build(&a, env, &c, &err), 0);
	assert_int_equal(c.port, 2000);		   /* env over file */
	assert_string_equal(c.log_level, "debug"); /* flag over env */
	assert_string_equal(c.zone, "filezone");   /* file over default */
	assert_string_equal(c.servers_path, "/flag/servers");
	assert_string_equal(c.local_image_path[1], "/e2");
	assert_int_equal(c.n_kernel_modules, 2);
	assert_string_equal(c.kernel_modules[0].params, "max_part=8");
	assert_false(c.kernel_modules[1].required);
	config_done(&c);
	agent_args_done(&a);

	char *bad_env[] = {"HOSTAGENT_PORT=http", NULL};
	char *argv2[] = {"hostagent", NULL};
	assert_int_equal(agent_args_parse(1, argv2, &a, &err), 0);
	assert_int_equal(agent_config_build(&a, bad_env, &c, &err), -EINVAL);
	assert_non_null(strstr(err, "environment HOSTAGENT_PORT: key 'port': expected integer"));
	agent_args_done(&a);

	free(err);
	err = NULL;
	char *argv3[] = {"hostagent", "--no-such-key=1", NULL};
	assert_int_equal(agent_args_parse(2, argv3, &a, &err), -EINVAL);
	assert_non_null(strstr(err, "unknown option '--no-such-key=1'"));
	free(err);
	err = NULL;
	char *argv4[] = {"hostagent", "--port", NULL};
	assert_int_equal(agent_args_parse(2, argv4, &a, &err), -EINVAL);
	assert_non_null(strstr(err, "'--port' needs a value"));
	rm_rf(dir);
}

static void test_print_masks_secrets(void **state)
{
	struct config c;
	_cleanup_free_ char *err = NULL, *path = test_data("config/valid.yaml");
	assert_int_equal(config_init(&c), 0);
	assert_int_equal(config_load_file(&c, path, &err), 0);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	config_print(&c, f);
	fclose(f);
	assert_null(strstr(buf, "s3cr3t-pass"));
	assert_non_null(strstr(buf, "admin_password: \"********\""));
	assert_non_null(strstr(buf, "port: 18885"));
	assert_non_null(strstr(buf, "  - \"/data/disks\""));
	assert_non_null(strstr(buf, "    params: \"max_part=16\""));

	/* The printed configuration is itself a valid file that loads to the same values. */
	_cleanup_free_ char *dir = test_tmpdir();
	_cleanup_free_ char *p2 = test_write(dir, "printed.yaml", buf);
	struct config c2;
	assert_int_equal(config_init(&c2), 0);
	assert_int_equal(config_load_file(&c2, p2, &err), 0);
	assert_int_equal(c2.port, 18885);
	assert_string_equal(c2.zone, "zone1");
	assert_int_equal(c2.n_kernel_modules, 3);
	config_done(&c2);
	free(buf);
	config_done(&c);
	rm_rf(dir);
}

TEST_MAIN(cmocka_unit_test(test_defaults), cmocka_unit_test(test_valid_file),
	  cmocka_unit_test(test_invalid_files), cmocka_unit_test(test_missing_file),
	  cmocka_unit_test(test_cross_checks), cmocka_unit_test(test_overrides),
	  cmocka_unit_test(test_print_masks_secrets))

/* agent/configdrive.c: the deploy fields checked and rendered as NoCloud files. */
#include <jansson.h>
#include <string.h>
#include <yaml.h>

#include "agent/configdrive.h"
#include "test-common.h"

#define KEY1 "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGj0ZUtIz0h3mQq2Y4xW7mYb0Jrj1zQq5mUe9P2Zb1Xy a@b"

static json_t *load(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);
	if (!j)
		fail_msg("bad fixture JSON: %s", e.text);
	return j;
}

/* Every scalar of a YAML document, as the parser reads it (NULL-terminated). */
static char **scalars(const char *doc)
{
	yaml_parser_t p;
	assert_true(yaml_parser_initialize(&p));
	yaml_parser_set_input_string(&p, (const unsigned char *)doc, strlen(doc));
	char **out = NULL;
	for (;;) {
		yaml_event_t ev;
		if (!yaml_parser_parse(&p, &ev))
			fail_msg("not YAML (%s):\n%s", p.problem, doc);
		if (ev.type == YAML_SCALAR_EVENT)
			assert_int_equal(strv_extend(&out, (const char *)ev.data.scalar.value), 0);
		bool end = ev.type == YAML_STREAM_END_EVENT;
		yaml_event_delete(&ev);
		if (end)
			break;
	}
	yaml_parser_delete(&p);
	return out;
}

static int parse(const char *args, const char *desc, struct configdrive **ret, char **ret_error)
{
	json_t *a = load(args), *d = desc ? load(desc) : NULL;
	int r = configdrive_parse(a, d, ret, ret_error);
	json_decref(a);
	json_decref(d);
	return r;
}

static const char *DESC =
    "{\"uuid\": \"6b1d3e0a-1c2b-4f5e-8a9b-0c1d2e3f4a5b\", \"name\": \"web 1\", \"hostname\": "
    "\"web-1\", \"os_name\": \"Linux\", \"nics\": ["
    "{\"index\": 1, \"mac\": \"52:54:00:AA:00:02\"},"
    "{\"index\": 0, \"mac\": \"52:54:00:aa:00:01\", \"ip\": \"10.0.0.5\", \"masklen\": 24, "
    "\"gateway\": \"10.0.0.1\", \"dns\": \"10.0.0.2,10.0.0.3\", \"domain\": \"example.org\", "
    "\"mtu\": 1450}]}";

static void test_fields(void **state)
{
	_cleanup_configdrive_ struct configdrive *cd = NULL;
	_cleanup_free_ char *err = NULL;
	assert_int_equal(
	    parse("{\"password\": \"S3cret-pass\", \"reset_password\": true, "
		  "\"public_key\": \"" KEY1 "\\n\", \"keypair_name\": \"k1\", "
		  "\"deploys\": [{\"path\": \"/etc/motd\", \"content\": \"hello\\n\"}, "
		  "{\"path\": \"/root/log\", \"content\": \"x\", \"action\": "
		  "\"append\"}], \"enable_cloud_init\": true}",
		  DESC, &cd, &err),
	    0);
	assert_string_equal(cd->account, "root");
	assert_string_equal(cd->hostname, "web-1");
	assert_string_equal(cd->os, "Linux");
	assert_true(cd->reset_password);
	assert_true(cd->enable_cloud_init);
	assert_int_equal(strv_length(cd->public_keys), 1);
	assert_int_equal(cd->n_files, 2);
	assert_true(cd->files[1].append);
	assert_int_equal(cd->n_nics, 2);
	assert_int_equal(cd->nics[0].index, 0); /* sorted */
	assert_string_equal(cd->nics[1].mac, "52:54:00:aa:00:02");

	struct configdrive_docs docs = {};
	assert_int_equal(configdrive_render(cd, "vm-1.0a1b", "$6$salt$HASH./x", false, &docs), 0);
	/* meta-data */
	_cleanup_strv_free_ char **m = scalars(docs.meta_data);
	assert_true(strv_contains(m, "instance-id"));
	assert_true(strv_contains(m, "vm-1.0a1b"));
	assert_true(strv_contains(m, "web-1"));
	/* user-data: the header cloud-init looks for, then the fields */
	assert_true(strneq(docs.user_data, "#cloud-config\n", 14));
	assert_null(strstr(docs.user_data, "S3cret-pass"));
	_cleanup_strv_free_ char **u = scalars(docs.user_data);
	assert_true(strv_contains(u, "hashed_passwd"));
	assert_true(strv_contains(u, "$6$salt$HASH./x"));
	assert_true(strv_contains(u, KEY1));
	assert_true(strv_contains(u, "/etc/motd"));
	assert_true(strv_contains(u, "aGVsbG8K")); /* base64 of "hello\n" */
	assert_true(strv_contains(u, "append"));
	assert_true(strv_contains(u, "ssh_pwauth"));
	assert_false(strv_contains(u, "ssh_deletekeys")); /* first boot: fresh host keys */
	assert_non_null(strstr(docs.user_data, "lock_passwd: false"));
	assert_non_null(strstr(docs.user_data, "disable_root: false"));
	/* network-config: static on eth0 by MAC, DHCP on eth1, one default route */
	assert_non_null(docs.network_config);
	_cleanup_strv_free_ char **n = scalars(docs.network_config);
	assert_true(strv_contains(n, "52:54:00:aa:00:01"));
	assert_true(strv_contains(n, "10.0.0.5/24"));
	assert_true(strv_contains(n, "gateway4"));
	assert_true(strv_contains(n, "10.0.0.1"));
	assert_true(strv_contains(n, "10.0.0.3"));
	assert_true(strv_contains(n, "example.org"));
	assert_true(strv_contains(n, "1450"));
	assert_true(strv_contains(n, "dhcp4"));
	assert_true(strv_contains(n, "eth1"));
	configdrive_docs_done(&docs);

	/* A deploy on a guest that ran: host keys kept; no password: no hash, no ssh_pwauth. */
	assert_int_equal(configdrive_render(cd, "vm-1.2", NULL, true, &docs), 0);
	_cleanup_strv_free_ char **u2 = scalars(docs.user_data);
	assert_true(strv_contains(u2, "ssh_deletekeys"));
	assert_false(strv_contains(u2, "hashed_passwd"));
	assert_false(strv_contains(u2, "ssh_pwauth"));
	configdrive_docs_done(&docs);
	/* Keys pasted with CRLF line ends (a Windows client) are the same keys. */
	cd = configdrive_free(cd);
	assert_int_equal(
	    parse("{\"public_key\": \"" KEY1 "\\r\\n" KEY1 " c@d\\r\\n\"}", NULL, &cd, &err), 0);
	assert_int_equal(strv_length(cd->public_keys), 2);
	assert_string_equal(cd->public_keys[0], KEY1);
	assert_string_equal(cd->public_keys[1], KEY1 " c@d");
}

/* What could break out of a YAML scalar stays inside one: quotes, backslashes, "key: value",
 * "# comment", document markers, non-ASCII, line and paragraph separators. */
static void test_escaping(void **state)
{
	const char *nasty[] = {
	    "/etc/a\"b\\c: d # e",
	    "/srv/--- ... - x",
	    "/srv/caf\xc3\xa9 \xe2\x80\xa8 \xc2\x85 \xef\xbb\xbf",
	    "/srv/{a: [b]}, &x *y !z |",
	};
	for (size_t i = 0; i < ELEMENTSOF(nasty); i++) {
		json_t *a = json_pack("{s:[{s:s,s:s}]}", "deploys", "path", nasty[i], "content",
				      "line1\n\"quoted\"\n");
		json_t *d = json_pack("{s:s,s:s}", "name", "x", "hostname", "h");
		_cleanup_configdrive_ struct configdrive *cd = NULL;
		_cleanup_free_ char *err = NULL;
		assert_int_equal(configdrive_parse(a, d, &cd, &err), 0);
		struct configdrive_docs docs = {};
		assert_int_equal(configdrive_render(cd, "i-1", NULL, false, &docs), 0);
		_cleanup_strv_free_ char **u = scalars(docs.user_data);
		assert_true(strv_contains(u, nasty[i]));
		assert_true(strv_contains(u, "bGluZTEKInF1b3RlZCIK"));
		configdrive_docs_done(&docs);
		json_decref(a);
		json_decref(d);
	}
	/* A key comment cannot add a list item or a key. */
	_cleanup_configdrive_ struct configdrive *cd = NULL;
	_cleanup_free_ char *err = NULL;
	const char *k = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ== a\"], b: [\"c";
	json_t *a = json_pack("{s:s,s:s}", "public_key", k, "password", "p\"w: x");
	assert_int_equal(configdrive_parse(a, NULL, &cd, &err), 0);
	json_decref(a);
	struct configdrive_docs docs = {};
	assert_int_equal(configdrive_render(cd, "i-2", "$6$s$h", false, &docs), 0);
	_cleanup_strv_free_ char **u = scalars(docs.user_data);
	assert_true(strv_contains(u, k));
	assert_false(strv_contains(u, "b"));
	configdrive_docs_done(&docs);
	/* Instance ids and hashes come from the agent; anything else is refused. */
	assert_int_equal(configdrive_render(cd, "i-3\n- x", NULL, false, &docs), -EINVAL);
	assert_int_equal(configdrive_render(cd, "i-3", "$6$s$h\"", false, &docs), -EINVAL);
}

static void refused(const char *args, const char *desc, const char *want)
{
	_cleanup_configdrive_ struct configdrive *cd = NULL;
	_cleanup_free_ char *err = NULL;
	assert_int_equal(parse(args, desc, &cd, &err), -EINVAL);
	assert_null(cd);
	assert_non_null(err);
	if (!strstr(err, want))
		fail_msg("refusal of %s says '%s', not '%s'", args, err, want);
}

static void test_refusals(void **state)
{
	/* Deploy paths that are not absolute and normalized. */
	static const char *const bad_paths[] = {"etc/motd", "/etc/../root/x", "/etc/..", "/etc/./x",
						"/etc//x",  "/etc/",	      "/"};
	for (size_t i = 0; i < ELEMENTSOF(bad_paths); i++) {
		_cleanup_free_ char *args = NULL;
		assert_true(asprintf(&args, "{\"deploys\": [{\"path\": \"%s\"}]}", bad_paths[i]) >
			    0);
		refused(args, NULL, "deploys[0].path");
	}
	refused("{\"deploys\": [{\"content\": \"x\"}]}", NULL, "deploys[0].path");
	refused("{\"deploys\": [{\"path\": \"/etc/x\\ny\"}]}", NULL, "control character");
	refused("{\"deploys\": [{\"path\": \"/a\", \"content\": 5}]}", NULL, "deploys[0].content");
	refused("{\"deploys\": {\"path\": \"/a\"}}", NULL, "deploys: expected an array");
	refused("{\"login_account\": \"Root;rm\"}", NULL, "login_account");
	refused("{\"public_key\": \"not a key\"}", NULL, "public_key: line 1");
	refused("{\"public_key\": \"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ==\\u0001\"}", NULL,
		"public_key");
	refused("{\"reset_password\": \"yes\"}", NULL, "reset_password");
	refused("{}", "{\"hostname\": \"-bad-host\"}", "desc.hostname");
	refused("{}", "{\"hostname\": \"bad host\"}", "desc.hostname");
	refused("{}", "{\"nics\": [{\"mac\": \"52:54:00:00:00:01\", \"ip\": \"10.0.0.300\"}]}",
		"desc.nics[0].ip");
	refused("{}", "{\"nics\": [{\"mac\": \"zz\"}]}", "desc.nics[0].mac");
	refused("{}",
		"{\"nics\": [{\"mac\": \"52:54:00:00:00:01\", \"ip\": \"10.0.0.3\", \"masklen\": "
		"33}]}",
		"desc.nics[0].masklen");
	refused("{}", "{\"nics\": [{\"mac\": \"52:54:00:00:00:01\", \"dns\": \"1.1.1.1,x\"}]}",
		"desc.nics[0].dns");
	/* A NUL in a path (JSON allows \u0000) is refused. */
	_cleanup_configdrive_ struct configdrive *cd = NULL;
	_cleanup_free_ char *err = NULL;
	json_t *a = json_pack("{s:[{s:s},{s:o}]}", "deploys", "path", "/a", "path",
			      json_stringn("/etc/x\0y", 8));
	assert_int_equal(configdrive_parse(a, NULL, &cd, &err), -EINVAL);
	assert_non_null(strstr(err, "deploys[1].path: NUL character not allowed"));
	json_decref(a);
	free(err);
	err = NULL;
	/* A refused password is never quoted back: a control character, invalid UTF-8. */
	a = json_pack("{s:s}", "password", "Top\x01Secret");
	assert_int_equal(configdrive_parse(a, NULL, &cd, &err), -EINVAL);
	assert_null(strstr(err, "Secret"));
	json_decref(a);
	free(err);
	err = NULL;
	a = json_pack("{s:o}", "password", json_stringn_nocheck("Top\xc3Secret", 10));
	assert_int_equal(configdrive_parse(a, NULL, &cd, &err), -EINVAL);
	assert_non_null(strstr(err, "password: invalid UTF-8"));
	assert_null(strstr(err, "Secret"));
	json_decref(a);
	/* Limits. */
	json_t *files = json_array();
	for (int i = 0; i <= CONFIGDRIVE_FILES_MAX; i++)
		json_array_append_new(files, json_pack("{s:s}", "path", "/a"));
	a = json_pack("{s:o}", "deploys", files);
	free(err);
	err = NULL;
	assert_int_equal(configdrive_parse(a, NULL, &cd, &err), -EINVAL);
	assert_non_null(strstr(err, "more than"));
	json_decref(a);
}

static void test_defaults(void **state)
{
	/* No NIC with an address: no network-config (cloud-init's DHCP fallback). Hostname from
	 * the name when it is one; a non-root account gets a shell and sudo. */
	_cleanup_configdrive_ struct configdrive *cd = NULL;
	_cleanup_free_ char *err = NULL;
	assert_int_equal(parse("{\"login_account\": \"cloud\", \"password\": \"pw\"}",
			       "{\"name\": \"db-2\", \"nics\": [{\"mac\": \"52:54:00:00:00:09\"}]}",
			       &cd, &err),
			 0);
	assert_string_equal(cd->hostname, "db-2");
	assert_string_equal(cd->account, "cloud");
	struct configdrive_docs docs = {};
	assert_int_equal(configdrive_render(cd, "i", "$6$a$b", false, &docs), 0);
	assert_null(docs.network_config);
	_cleanup_strv_free_ char **u = scalars(docs.user_data);
	assert_true(strv_contains(u, "cloud"));
	assert_true(strv_contains(u, "ALL=(ALL) NOPASSWD:ALL"));
	configdrive_docs_done(&docs);
	configdrive_free(TAKE_PTR(cd));
	/* The region allows '_' in a hostname set on a guest (common/parse.h). */
	assert_int_equal(parse("{}", "{\"hostname\": \"web_1.example\"}", &cd, &err), 0);
	assert_string_equal(cd->hostname, "web_1.example");
	configdrive_free(TAKE_PTR(cd));
	/* A name that is no host name: no hostname at all. */
	assert_int_equal(parse("{}", "{\"name\": \"my web server\"}", &cd, &err), 0);
	assert_null(cd->hostname);
	assert_string_equal(cd->account, "root");
}

static void test_requested(void **state)
{
	const char *yes[] = {"{\"password\": \"x\"}", "{\"public_key\": \"x\"}",
			     "{\"deploys\": []}", "{\"login_account\": \"a\"}",
			     "{\"reset_password\": true}"};
	const char *no[] = {"{}", "{\"desc\": {}}", "{\"reset_password\": false}",
			    "{\"password\": null, \"enable_cloud_init\": false}"};
	for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
		json_t *j = load(yes[i]);
		assert_true(configdrive_requested(j));
		json_decref(j);
	}
	for (size_t i = 0; i < ELEMENTSOF(no); i++) {
		json_t *j = load(no[i]);
		assert_false(configdrive_requested(j));
		json_decref(j);
	}
}

/* Known answers from `openssl enc -aes-256-cfb8` with the key Cloudpods derives from the guest
 * id (first 32 bytes, else padded with '$'). */
static void test_login_key(void **state)
{
	const uint8_t iv[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
	_cleanup_free_ char *a = NULL, *b = NULL;
	assert_int_equal(
	    configdrive_login_key("6b1d3e0a-1c2b-4f5e-8a9b-0c1d2e3f4a5b", "Secret#1", iv, &a), 0);
	assert_string_equal(a, "AAECAwQFBgcICQoLDA0OD00lLZxZqfwH");
	assert_int_equal(configdrive_login_key("vm1", "pw", iv, &b), 0);
	assert_string_equal(b, "AAECAwQFBgcICQoLDA0ODxTQ");
}

TEST_MAIN(cmocka_unit_test(test_fields), cmocka_unit_test(test_escaping),
	  cmocka_unit_test(test_refusals), cmocka_unit_test(test_defaults),
	  cmocka_unit_test(test_requested), cmocka_unit_test(test_login_key))

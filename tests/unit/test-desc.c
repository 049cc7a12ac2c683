/* Descriptor parsing: accepted fixtures, defaults, and refusals with the exact field-naming
 * message.
 * "@ROOT@" in descriptors and messages stands for the temporary directory of the run. */
#include <jansson.h>
#include <limits.h>
#include <sys/stat.h>

#include "agent/desc.h"
#include "agent/hostnet.h"
#include "common/fs.h"
#include "tests/unit/test-common.h"

#define U "\"uuid\": \"0c4ce5a8-7f3e-4d57-8a0e-5b4f1b2d9e01\""

/* The roots, with disks/link pointing outside them. */
static int setup(void **state)
{
	test_roots_setup(state);
	struct test_roots *f = *state;
	_cleanup_free_ char *link = strjoin(f->disks, "/link");
	assert_int_equal(symlink(f->outside, link), 0);
	return 0;
}

static char *replace_root(const char *s, const char *root)
{
	const char *p = strstr(s, "@ROOT@");
	if (!p)
		return strdup(s);
	_cleanup_free_ char *head = strndup(s, (size_t)(p - s));
	_cleanup_free_ char *tail = replace_root(p + 6, root);
	return strjoin(head, root, tail);
}

static int parse_text(struct test_roots *f, const char *text, struct guest_desc **ret, char **err)
{
	_cleanup_free_ char *t = replace_root(text, f->dir);
	json_error_t jerr;
	json_auto_t *j = json_loads(t, 0, &jerr);
	if (!j)
		fail_msg("bad test JSON: %s: %s", jerr.text, t);
	return guest_desc_parse(j, f->roots, ret, err);
}

static void expect_refusal(struct test_roots *f, const char *text, const char *msg)
{
	struct guest_desc *d = (struct guest_desc *)0x1;
	_cleanup_free_ char *err = NULL;
	int r = parse_text(f, text, &d, &err);
	_cleanup_free_ char *want = replace_root(msg, f->dir);
	if (r != -EINVAL || !err || !streq(err, want))
		fail_msg("for %s\n  want -EINVAL \"%s\"\n  got %d \"%s\"", text, want, r,
			 strempty(err));
	assert_ptr_equal(d, (struct guest_desc *)0x1); /* untouched on failure */
}

static const struct {
	const char *json, *msg;
} bad[] = {
    {"[]", "desc: expected object, got array"},
    {"{\"name\": \"a\", \"mem\": 128}", "uuid: missing"},
    {"{\"uuid\": \"\", \"name\": \"a\", \"mem\": 128}", "uuid: missing"},
    {"{\"uuid\": 5, \"name\": \"a\", \"mem\": 128}", "uuid: expected string, got integer"},
    {"{\"uuid\": \"not-a-uuid\", \"name\": \"a\", \"mem\": 128}",
     "uuid: invalid UUID \"not-a-uuid\""},
    {"{" U ", \"mem\": 128}", "name: missing"},
    {"{" U ", \"name\": 7, \"mem\": 128}", "name: expected string, got integer"},
    {"{" U ", \"name\": \"a\\nb\", \"mem\": 128}", "name: control character not allowed"},
    {"{" U ", \"name\": \"a\"}", "mem: missing"},
    {"{" U ", \"name\": \"a\", \"mem\": -1}", "mem: must be a positive integer"},
    {"{" U ", \"name\": \"a\", \"mem\": 0}", "mem: must be a positive integer"},
    {"{" U ", \"name\": \"a\", \"mem\": \"128\"}", "mem: expected integer, got string"},
    {"{" U ", \"name\": \"a\", \"mem\": 99999999999}",
     "mem: out of range (99999999999, allowed 1..16777216)"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"cpu\": \"2\"}", "cpu: expected integer, got string"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"cpu\": 1.5}", "cpu: expected integer, got real"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"cpu\": true}", "cpu: expected integer, got boolean"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"cpu\": 4, \"cpu_sockets\": 3}",
     "cpu_sockets: 3 does not divide cpu (4)"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"bios\": \"CSM\"}",
     "bios: unsupported value \"CSM\""},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"boot_order\": \"cx\"}",
     "boot_order: unsupported value \"cx\" (letters c, d, n once each)"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"machine\": \"pc q35\"}",
     "machine: invalid machine type \"pc q35\""},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"disks\": {}}", "disks: expected array, got object"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"disks\": [\"x\"]}",
     "disks[0]: expected object, got string"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"disks\": [{\"size\": 1}]}",
     "disks[0].disk_id: missing"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"disks\": [{\"disk_id\": \"../x\", \"size\": 1}]}",
     "disks[0].disk_id: invalid id \"../x\""},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"disks\": [{\"disk_id\": \"a\"}]}",
     "disks[0].size: missing (required without image_path)"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"disks\": [{\"disk_id\": \"a\", \"size\": -5}]}",
     "disks[0].size: must be a positive integer"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"disks\": [{\"disk_id\": \"a\", \"size\": 1}, "
     "{\"disk_id\": \"b\", \"size\": 1, \"format\": \"vmdkx\"}]}",
     "disks[1].format: unsupported value \"vmdkx\""},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"disks\": [{\"disk_id\": \"a\", \"size\": 1}, "
     "{\"disk_id\": \"b\", \"size\": 1, \"index\": 0}]}",
     "disks[1].index: duplicate index 0"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"disks\": [{\"disk_id\": \"a\", \"size\": 1}, "
     "{\"disk_id\": \"a\", \"size\": 1}]}",
     "disks[1].disk_id: duplicate id \"a\""},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"disks\": [{\"disk_id\": \"a\", \"size\": 1, "
     "\"boot_index\": 0}, {\"disk_id\": \"b\", \"size\": 1, \"boot_index\": 0}]}",
     "disks[1].boot_index: duplicate 0"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"disks\": [{\"disk_id\": \"a\", \"size\": 1, "
     "\"index\": 26}]}",
     "disks[0].index: out of range (26, allowed 0..25)"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"disks\": [{\"disk_id\": \"a\", \"size\": 1, "
     "\"path\": \"@ROOT@/disks/../escape.qcow2\"}]}",
     "disks[0].path: \"@ROOT@/disks/../escape.qcow2\" is outside the disk roots"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"disks\": [{\"disk_id\": \"a\", \"size\": 1, "
     "\"path\": \"../../etc/passwd\"}]}",
     "disks[0].path: \"../../etc/passwd\" is outside the disk roots"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"disks\": [{\"disk_id\": \"a\", \"size\": 1, "
     "\"path\": \"@ROOT@/disks/link/a.qcow2\"}]}",
     "disks[0].path: \"@ROOT@/disks/link/a.qcow2\" is outside the disk roots"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"disks\": [{\"disk_id\": \"a\", \"size\": 1, "
     "\"path\": \"@ROOT@/disks\"}]}",
     "disks[0].path: \"@ROOT@/disks\" is outside the disk roots"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"disks\": [{\"disk_id\": \"a\", "
     "\"image_path\": \"/etc/passwd\"}]}",
     "disks[0].image_path: \"/etc/passwd\" is outside the disk roots"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"disks\": [{\"disk_id\": \"a\", \"format\": \"raw\", "
     "\"image_path\": \"@ROOT@/images/base.qcow2\"}]}",
     "disks[0].image_path: a backing image needs format \"qcow2\""},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"disks\": [{\"disk_id\": \"a\", \"size\": 1, "
     "\"path\": \"@ROOT@/disks/x\"}, {\"disk_id\": \"b\", \"size\": 1, \"path\": "
     "\"@ROOT@/disks/x\"}]}",
     "disks[1].path: used by disks[0]"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"nics\": [{\"mac\": \"zz\", \"bridge\": \"br0\"}]}",
     "nics[0].mac: invalid MAC \"zz\""},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"nics\": [{\"bridge\": \"br0\"}]}",
     "nics[0].mac: missing"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"nics\": [{\"mac\": \"01:00:5e:00:00:01\", "
     "\"bridge\": \"br0\"}]}",
     "nics[0].mac: multicast MAC \"01:00:5e:00:00:01\" not allowed"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"nics\": [{\"mac\": \"52:54:00:00:00:01\", "
     "\"bridge\": \"br0\"}, {\"mac\": \"52:54:00:00:00:01\", \"bridge\": \"br0\"}]}",
     "nics[1].mac: duplicate MAC 52:54:00:00:00:01"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"nics\": [{\"mac\": \"52:54:00:00:00:01\"}]}",
     "nics[0].bridge: missing"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"nics\": [{\"mac\": \"52:54:00:00:00:01\", "
     "\"bridge\": \"br/0\"}]}",
     "nics[0].bridge: invalid bridge name \"br/0\""},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"nics\": [{\"mac\": \"52:54:00:00:00:01\", "
     "\"bridge\": \"br0\", \"ifname\": \"abcdefghijklmnop\"}]}",
     "nics[0].ifname: invalid interface name \"abcdefghijklmnop\""},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"nics\": [{\"mac\": \"52:54:00:00:00:01\", "
     "\"bridge\": \"br0\", \"vlan\": 5000}]}",
     "nics[0].vlan: out of range (5000, allowed 0..4094)"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"nics\": [{\"mac\": \"52:54:00:00:00:01\", "
     "\"bridge\": \"br0\", \"bw\": \"fast\"}]}",
     "nics[0].bw: expected integer, got string"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"nics\": [{\"mac\": \"52:54:00:00:00:01\", "
     "\"bridge\": \"br0\", \"ip\": \"10.0.0.256\"}]}",
     "nics[0].ip: invalid IP address \"10.0.0.256\""},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"nics\": [{\"mac\": \"52:54:00:00:00:01\", "
     "\"bridge\": \"br0\", \"mtu\": 10}]}",
     "nics[0].mtu: out of range (10, allowed 68..65535)"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"nics\": [{\"mac\": \"52:54:00:00:00:01\", "
     "\"bridge\": \"br0\", \"ip\": \"10.0.0.5\", \"masklen\": 33}]}",
     "nics[0].masklen: out of range (33, allowed 0..32)"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"nics\": [{\"mac\": \"52:54:00:00:00:01\", "
     "\"bridge\": \"br0\", \"gateway\": \"fe80::1\"}]}",
     "nics[0].gateway: invalid IPv4 address \"fe80::1\""},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"nics\": [{\"mac\": \"52:54:00:00:00:01\", "
     "\"bridge\": \"br0\", \"dns\": \"8.8.8.8,dns.example\"}]}",
     "nics[0].dns: invalid IP address \"dns.example\""},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"nics\": [{\"mac\": \"52:54:00:00:00:01\", "
     "\"bridge\": \"br0\", \"dns\": [\"8.8.8.8\", 4]}]}",
     "nics[0].dns[1]: expected string, got integer"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"nics\": [{\"mac\": \"52:54:00:00:00:01\", "
     "\"bridge\": \"br0\", \"dns\": 5}]}",
     "nics[0].dns: expected string or array, got integer"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"nics\": [{\"mac\": \"52:54:00:00:00:01\", "
     "\"bridge\": \"br0\", \"domain\": \"a,b\"}]}",
     "nics[0].domain: invalid domain name \"a,b\""},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"nics\": [{\"mac\": \"52:54:00:00:00:01\", "
     "\"bridge\": \"br0\", \"routes\": [[\"10.0.0.0\", \"10.0.0.1\"]]}]}",
     "nics[0].routes[0]: invalid prefix \"10.0.0.0\" (ADDRESS/LEN)"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"nics\": [{\"mac\": \"52:54:00:00:00:01\", "
     "\"bridge\": \"br0\", \"routes\": [[\"10.0.0.0/33\", \"10.0.0.1\"]]}]}",
     "nics[0].routes[0]: invalid prefix length in \"10.0.0.0/33\""},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"nics\": [{\"mac\": \"52:54:00:00:00:01\", "
     "\"bridge\": \"br0\", \"routes\": [[\"10.0.0.0/8\", \"::1\"]]}]}",
     "nics[0].routes[0]: invalid gateway \"::1\""},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"nics\": [{\"mac\": \"52:54:00:00:00:01\", "
     "\"bridge\": \"br0\", \"routes\": [\"10.0.0.0/8\"]}]}",
     "nics[0].routes[0]: expected [\"PREFIX/LEN\", \"GATEWAY\"]"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"nics\": [{\"mac\": \"52:54:00:00:00:01\", "
     "\"bridge\": \"br0\", \"is_default\": \"yes\"}]}",
     "nics[0].is_default: expected boolean, got string"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"hostname\": \"-bad\"}",
     "hostname: invalid host name \"-bad\""},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"cdroms\": [{\"path\": \"/etc/shadow\"}]}",
     "cdroms[0].path: \"/etc/shadow\" is outside the disk roots"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"metadata\": []}",
     "metadata: expected object, got array"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"metadata\": {\"owner\": 5}}",
     "metadata.owner: expected string, got integer"},
    {"{" U ", \"name\": \"a\", \"mem\": 128, \"metadata\": {\"k\": \"\\u0001\"}}",
     "metadata.k: control character not allowed"},
};

static void test_refusals(void **state)
{
	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		expect_refusal(*state, bad[i].json, bad[i].msg);
}

static json_t *base(void)
{
	json_t *j = json_pack("{s:s, s:s, s:i}", "uuid", "0c4ce5a8-7f3e-4d57-8a0e-5b4f1b2d9e01",
			      "name", "a", "mem", 128);
	assert_non_null(j);
	return j;
}

static void expect_json_refusal(struct test_roots *f, json_t *j, const char *msg)
{
	struct guest_desc *d = NULL;
	_cleanup_free_ char *err = NULL;
	assert_int_equal(guest_desc_parse(j, f->roots, &d, &err), -EINVAL);
	assert_null(d);
	assert_non_null(err);
	assert_string_equal(err, msg);
}

static void test_hostile_strings(void **state)
{
	struct test_roots *f = *state;

	/* A 10 MB name. */
	size_t n = 10 * 1024 * 1024;
	_cleanup_free_ char *big = malloc(n + 1);
	memset(big, 'x', n);
	big[n] = 0;
	json_auto_t *j = base();
	json_object_set_new(j, "name", json_string(big));
	expect_json_refusal(f, j, "name: too long (10485760 bytes, max 128)");

	/* Invalid UTF-8 cannot come from json_loads(), but a caller could build it. */
	json_object_set_new(j, "name", json_string_nocheck("bad \xff\xfe"));
	expect_json_refusal(f, j, "name: invalid UTF-8");
	json_object_set_new(j, "name", json_string_nocheck("\xc0\xaf overlong"));
	expect_json_refusal(f, j, "name: invalid UTF-8");
	json_object_set_new(j, "name", json_stringn_nocheck("a\0b", 3));
	expect_json_refusal(f, j, "name: NUL character not allowed");
	json_object_set_new(j, "name",
			    json_string("non\xef\xbf\xbf"
					"char"));
	expect_json_refusal(f, j, "name: non-character U+FFFF not allowed");

	json_object_set_new(j, "name", json_string("ok"));
	json_object_set_new(j, "metadata",
			    json_pack("{s:o}", "k", json_string_nocheck("\xed\xa0\x80")));
	expect_json_refusal(f, j, "metadata.k: invalid UTF-8");
	json_object_set_new(j, "metadata", json_pack("{s:s}", "k", big));
	expect_json_refusal(f, j, "metadata.k: too long (10485760 bytes, max 262144)");
	json_object_set_new(j, "metadata", json_pack("{s:s}", "bad key\n", "v"));
	expect_json_refusal(f, j, "metadata key #0: control character not allowed");

	/* Long hostile values are quoted, escaped and truncated in messages. */
	json_object_del(j, "metadata");
	json_object_set_new(j, "bios", json_string("\"<x>\xc3\xa9"));
	expect_json_refusal(f, j, "bios: unsupported value \"\\\"<x>\\xc3\\xa9\"");
	char quotes[61];
	memset(quotes, '"', 60);
	quotes[60] = 0;
	json_object_set_new(j, "bios", json_string(quotes));
	_cleanup_free_ char *err = NULL;
	struct guest_desc *d = NULL;
	assert_int_equal(guest_desc_parse(j, f->roots, &d, &err), -EINVAL);
	assert_true(strlen(err) < 120);
	assert_non_null(strstr(err, "...\""));

	/* Too many entries. */
	json_object_del(j, "bios");
	json_t *disks = json_array();
	for (int i = 0; i < GUEST_DISKS_MAX + 1; i++)
		json_array_append_new(disks, json_pack("{s:s, s:i}", "disk_id", "x", "size", 1));
	json_object_set_new(j, "disks", disks);
	expect_json_refusal(f, j, "disks: too many entries (17, max 16)");
}

/* Metadata as real guests carry it: values up to 256 KiB, 1 MiB in all; beyond, a refusal
 * naming the key. */
static void test_metadata_limits(void **state)
{
	struct test_roots *f = *state;
	size_t n = 256 * 1024;
	_cleanup_free_ char *v = malloc(n + 2);
	memset(v, 'a', n + 1);
	v[n] = 0;
	json_auto_t *j = base();
	json_t *m = json_object();
	json_object_set_new(m, "__qemu_cmdline", json_string(v));
	json_object_set_new(m, "user_data", json_string("line1\nline2"));
	json_object_set_new(j, "metadata", m);
	_cleanup_(guest_desc_freep) struct guest_desc *d = NULL;
	_cleanup_free_ char *err = NULL;
	assert_int_equal(guest_desc_parse(j, f->roots, &d, &err), 0);
	assert_int_equal(d->n_metadata, 2);
	assert_int_equal(strlen(d->metadata[0].value), n);

	v[n] = 'a';
	v[n + 1] = 0;
	json_object_set_new(m, "__qemu_cmdline", json_string(v));
	expect_json_refusal(f, j, "metadata.__qemu_cmdline: too long (262145 bytes, max 262144)");

	/* Four values of 256 KiB fit, with their keys, only if the total stays under 1 MiB. */
	v[n] = 0;
	json_object_clear(m);
	json_object_set_new(m, "k1", json_string(v));
	json_object_set_new(m, "k2", json_string(v));
	json_object_set_new(m, "k3", json_string(v));
	guest_desc_free(TAKE_PTR(d));
	assert_int_equal(guest_desc_parse(j, f->roots, &d, &err), 0);
	json_object_set_new(m, "k4", json_string(v));
	expect_json_refusal(f, j,
			    "metadata.k4: metadata too large in all (over 1048576 bytes of "
			    "keys and values)");
}

/* NICs without a bridge take the one of the host network on their wire. */
static void test_fill_bridges(void **state)
{
	char *entries[] = {"eth0/br0/192.0.2.10", "eth1/br1", NULL};
	_cleanup_(hostnets_freep) struct hostnets *h = NULL;
	_cleanup_free_ char *err = NULL;
	assert_int_equal(hostnets_new(entries, &h, &err), 0);
	hostnets_get(h, 1)->wire_id = strdup("wire-b");

	json_auto_t *ok =
	    json_pack("{s:[{s:s},{s:s,s:s},{s:s,s:s}]}", "nics", "wire_id", "wire-b", "bridge",
		      "brX", "wire_id", "wire-b", "bridge", "", "wire_id", "wire-b");
	json_t *filled = NULL;
	assert_int_equal(guest_desc_fill_bridges(ok, h, &filled, &err), 0);
	assert_non_null(filled);
	json_t *nics = json_object_get(filled, "nics");
	assert_string_equal(json_string_value(json_object_get(json_array_get(nics, 0), "bridge")),
			    "br1");
	assert_string_equal(json_string_value(json_object_get(json_array_get(nics, 1), "bridge")),
			    "brX");
	assert_string_equal(json_string_value(json_object_get(json_array_get(nics, 2), "bridge")),
			    "br1");
	/* The caller's descriptor is untouched. */
	assert_null(json_object_get(json_array_get(json_object_get(ok, "nics"), 0), "bridge"));
	json_decref(filled);

	json_auto_t *all_set = json_pack("{s:[{s:s}]}", "nics", "bridge", "br0");
	assert_int_equal(guest_desc_fill_bridges(all_set, h, &filled, &err), 0);
	assert_null(filled);

	json_auto_t *unknown =
	    json_pack("{s:[{s:s},{s:s}]}", "nics", "bridge", "br0", "wire_id", "wire-zz");
	assert_int_equal(guest_desc_fill_bridges(unknown, h, &filled, &err), -EINVAL);
	assert_string_equal(err, "nics[1].bridge: missing, and no host network of this host is on "
				 "wire \"wire-zz\"");
	free(TAKE_PTR(err));
	json_auto_t *no_wire = json_pack("{s:[{s:s}]}", "nics", "mac", "00:22:aa:bb:cc:01");
	assert_int_equal(guest_desc_fill_bridges(no_wire, h, &filled, &err), -EINVAL);
	assert_string_equal(err, "nics[0].bridge: missing, and no wire_id to find the host network "
				 "by");
	free(TAKE_PTR(err));
	assert_int_equal(guest_desc_fill_bridges(no_wire, NULL, &filled, &err), -EINVAL);
}

static void test_parse_full(void **state)
{
	struct test_roots *f = *state;
	_cleanup_free_ char *path = test_data("desc/two-nics.json");
	_cleanup_free_ char *text = NULL;
	assert_int_equal(read_file(path, 1 << 20, &text, NULL), 0);
	_cleanup_(guest_desc_freep) struct guest_desc *d = NULL;
	_cleanup_free_ char *err = NULL;
	assert_int_equal(parse_text(f, text, &d, &err), 0);
	assert_null(err);
	assert_string_equal(d->uuid, "2c8e3d4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f");
	assert_int_equal(d->cpu, 4);
	assert_int_equal(d->cpu_sockets, 2);
	assert_int_equal(d->mem_mb, 1024);
	assert_string_equal(d->machine, "q35");
	assert_int_equal(d->bios, GUEST_BIOS_BIOS);
	assert_string_equal(d->vga, "vga");
	assert_int_equal(d->n_nics, 2);
	/* Sorted by index; MACs lower-cased. */
	assert_int_equal(d->nics[0].index, 0);
	assert_string_equal(d->nics[0].mac, "00:22:aa:bb:cc:01");
	assert_string_equal(d->nics[0].driver, "e1000");
	assert_int_equal(d->nics[1].index, 1);
	assert_string_equal(d->nics[1].mac, "00:22:aa:bb:cc:02");
	assert_int_equal(d->nics[1].vlan, 42);
	assert_int_equal(d->nics[1].bw_mbps, 100);
	assert_int_equal(d->nics[1].mtu, 1450);
	assert_string_equal(d->nics[1].ifname, "vnet-r-1");
	/* The region's IPAM for DHCP: dns as a comma list or an array, routes as networks. */
	assert_string_equal(d->hostname, "router-1");
	assert_int_equal(d->nics[1].masklen, 24);
	assert_string_equal(d->nics[1].gateway, "10.0.1.1");
	assert_int_equal(strv_length(d->nics[1].dns), 2);
	assert_string_equal(d->nics[1].dns[0], "10.0.1.53");
	assert_string_equal(d->nics[1].dns[1], "2001:db8::53");
	assert_string_equal(d->nics[1].domain, "corp.example");
	assert_int_equal(d->nics[1].n_routes, 2);
	assert_string_equal(d->nics[1].routes[0].prefix, "172.16.0.0");
	assert_int_equal(d->nics[1].routes[0].len, 16);
	assert_string_equal(d->nics[1].routes[0].gateway, "10.0.1.254");
	assert_string_equal(d->nics[1].routes[1].prefix, "2001:db8:1::");
	assert_true(d->nics[1].is_default);
	assert_false(d->nics[0].is_default);
	assert_null(d->nics[0].gateway);
	assert_int_equal(strv_length(d->nics[0].dns), 1);
	assert_string_equal(d->nics[0].dns[0], "192.168.0.53");
	assert_int_equal(d->n_cdroms, 1);
	assert_string_equal(d->cdroms[0].dev, "sda"); /* q35: SATA */

	/* Defaults and the default disk path. */
	json_auto_t *j =
	    json_pack("{s:s, s:s, s:i, s:[{s:s, s:i}, {s:s, s:i, s:i}]}", "uuid",
		      "0C4CE5A8-7F3E-4D57-8A0E-5B4F1B2D9E01", "name", "n", "mem", 64, "disks",
		      "disk_id", "d0", "size", 10, "disk_id", "d1", "size", 20, "index", 3);
	_cleanup_(guest_desc_freep) struct guest_desc *e = NULL;
	assert_int_equal(guest_desc_parse(j, f->roots, &e, NULL), 0);
	assert_string_equal(e->uuid, "0c4ce5a8-7f3e-4d57-8a0e-5b4f1b2d9e01");
	assert_int_equal(e->cpu, 1);
	assert_int_equal(e->cpu_sockets, 1);
	assert_string_equal(e->machine, "pc");
	assert_string_equal(e->boot_order, "cdn");
	assert_int_equal(e->vdi, GUEST_VDI_VNC);
	assert_int_equal(e->n_disks, 2);
	_cleanup_free_ char *p0 = strjoin(f->disks, "/d0");
	assert_string_equal(e->disks[0].path, p0);
	assert_string_equal(e->disks[0].dev, "vda");
	assert_string_equal(e->disks[0].cache_mode, "none");
	assert_int_equal(e->disks[0].format, DISK_FORMAT_QCOW2);
	assert_int_equal(e->disks[0].boot_index, -1);
	assert_string_equal(e->disks[1].dev, "vdd");

	/* The normalized JSON parses back to the same normalized JSON. */
	json_auto_t *n1 = guest_desc_to_json(d);
	assert_non_null(n1);
	_cleanup_(guest_desc_freep) struct guest_desc *again = NULL;
	assert_int_equal(guest_desc_parse(n1, f->roots, &again, NULL), 0);
	json_auto_t *n2 = guest_desc_to_json(again);
	assert_true(json_equal(n1, n2));
}

/* A disk with only template_id (the region never got the cache path) backs onto the image
 * cache of its own storage; image_path, when given, wins. */
static void test_template_id(void **state)
{
	struct test_roots *f = *state;
	_cleanup_(guest_desc_freep) struct guest_desc *d = NULL;
	_cleanup_free_ char *err = NULL;
	assert_int_equal(parse_text(f,
				    "{" U ", \"name\": \"a\", \"mem\": 128, \"disks\": ["
				    "{\"disk_id\": \"d0\", \"template_id\": \"img-1\"},"
				    "{\"disk_id\": \"d1\", \"path\": \"@ROOT@/images/d1\", "
				    "\"template_id\": \"img-1\"},"
				    "{\"disk_id\": \"d2\", \"template_id\": \"img-1\", "
				    "\"image_path\": \"@ROOT@/images/base\"}]}",
				    &d, &err),
			 0);
	_cleanup_free_ char *c0 = strjoin(f->disks, "/image_cache/img-1");
	_cleanup_free_ char *c1 = strjoin(f->images, "/image_cache/img-1");
	_cleanup_free_ char *c2 = strjoin(f->images, "/base");
	assert_string_equal(d->disks[0].image_path, c0);
	assert_string_equal(d->disks[1].image_path, c1);
	assert_string_equal(d->disks[2].image_path, c2);
	expect_refusal(f,
		       "{" U ", \"name\": \"a\", \"mem\": 128, \"disks\": ["
		       "{\"disk_id\": \"d0\", \"template_id\": \"../../etc\"}]}",
		       "disks[0].template_id: invalid id \"../../etc\"");
}

/* L7: the workspace stores resolved paths, and a stored path that resolves elsewhere later (a
 * directory replaced by a symlink to another guest's directory) is refused at load. */
static void test_resolved_json(void **state)
{
	struct test_roots *f = *state;
	_cleanup_free_ char *sub = strjoin(f->disks, "/g1"), *other = strjoin(f->disks, "/g2");
	assert_int_equal(mkdir(sub, 0700), 0);
	assert_int_equal(mkdir(other, 0700), 0);
	json_auto_t *j = json_pack("{s:s,s:s,s:i,s:[{s:s,s:i},{s:s,s:s,s:i}],s:[{s:s}]}", "uuid",
				   "0c4ce5a8-7f3e-4d57-8a0e-5b4f1b2d9e01", "name", "a", "mem", 128,
				   "disks", "disk_id", "d0", "size", 8, "disk_id", "d1", "path",
				   "g1/d1.qcow2", "size", 8, "cdroms", "path", "g1/cd.iso");
	_cleanup_(guest_desc_freep) struct guest_desc *d = NULL;
	assert_int_equal(guest_desc_parse(j, f->roots, &d, NULL), 0);
	json_auto_t *stored = guest_desc_resolved_json(j, d);
	assert_non_null(stored);
	_cleanup_free_ char *d0 = strjoin(f->disks, "/d0"), *d1 = strjoin(sub, "/d1.qcow2"),
			    *cd = strjoin(sub, "/cd.iso");
	json_t *disks = json_object_get(stored, "disks");
	assert_string_equal(json_string_value(json_object_get(json_array_get(disks, 0), "path")),
			    d0);
	assert_string_equal(json_string_value(json_object_get(json_array_get(disks, 1), "path")),
			    d1);
	assert_string_equal(json_string_value(json_object_get(
				json_array_get(json_object_get(stored, "cdroms"), 0), "path")),
			    cd);
	/* The request itself is not changed; the stored copy loads and checks clean. */
	assert_string_equal(json_string_value(json_object_get(
				json_array_get(json_object_get(j, "disks"), 1), "path")),
			    "g1/d1.qcow2");
	_cleanup_(guest_desc_freep) struct guest_desc *again = NULL;
	assert_int_equal(guest_desc_parse(stored, f->roots, &again, NULL), 0);
	assert_int_equal(guest_desc_check_resolved(stored, again, NULL), 0);
	/* g1 becomes a symlink to g2 (inside the roots, so the parse still accepts it). */
	_cleanup_free_ char *moved = strjoin(f->disks, "/g1.old");
	assert_int_equal(rename(sub, moved), 0);
	assert_int_equal(symlink(other, sub), 0);
	_cleanup_(guest_desc_freep) struct guest_desc *swapped = NULL;
	assert_int_equal(guest_desc_parse(stored, f->roots, &swapped, NULL), 0);
	_cleanup_free_ char *err = NULL;
	assert_int_equal(guest_desc_check_resolved(stored, swapped, &err), -EPERM);
	assert_non_null(strstr(err, "disks[1].path"));
	assert_non_null(strstr(err, "now resolves to"));
	/* A descriptor stored before L7 (relative paths) is not refused. */
	assert_int_equal(guest_desc_check_resolved(j, swapped, NULL), 0);
	assert_int_equal(unlink(sub), 0);
	assert_int_equal(rename(moved, sub), 0);
}

static void test_ids(void **state)
{
	assert_true(guest_uuid_is_valid("0c4ce5a8-7f3e-4d57-8a0e-5b4f1b2d9e01"));
	assert_false(guest_uuid_is_valid("0c4ce5a8-7f3e-4d57-8a0e-5b4f1b2d9e0"));
	assert_false(guest_uuid_is_valid("0c4ce5a8x7f3e-4d57-8a0e-5b4f1b2d9e01"));
	assert_false(guest_uuid_is_valid(NULL));
	assert_true(guest_ifname_is_valid("vnet12"));
	assert_true(guest_ifname_is_valid("abcdefghijklmno"));
	assert_false(guest_ifname_is_valid("abcdefghijklmnop"));
	assert_false(guest_ifname_is_valid("-x"));
	assert_false(guest_ifname_is_valid("a b"));
	assert_false(guest_ifname_is_valid(".."));
	assert_false(guest_ifname_is_valid(""));
}

TEST_MAIN(cmocka_unit_test_setup_teardown(test_refusals, setup, test_roots_teardown),
	  cmocka_unit_test_setup_teardown(test_resolved_json, setup, test_roots_teardown),
	  cmocka_unit_test_setup_teardown(test_hostile_strings, setup, test_roots_teardown),
	  cmocka_unit_test_setup_teardown(test_metadata_limits, setup, test_roots_teardown),
	  cmocka_unit_test(test_fill_bridges),
	  cmocka_unit_test_setup_teardown(test_parse_full, setup, test_roots_teardown),
	  cmocka_unit_test_setup_teardown(test_template_id, setup, test_roots_teardown),
	  cmocka_unit_test(test_ids))

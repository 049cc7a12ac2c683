/* Host facts (agent/hostinfo.c) read from a fixture root: the typed record, the JSON the API
 * shows (host_info_to_json()) and the heartbeat figures from /proc/meminfo and /proc/stat. */
#include <stdlib.h>

#include "agent/hostinfo.h"
#include "common/config.h"
#include "common/fs.h"
#include "tests/unit/test-common.h"

static void put(const char *root, const char *rel, const char *text)
{
	_cleanup_free_ char *p = strjoin(root, rel);
	assert_int_equal(write_file_atomic(p, text, strlen(text), 0644), 0);
}

/* A fixture root with /proc and /etc; *ret_root to remove with rm_rf. */
static char *fixture(void)
{
	char *tmp = test_tmpdir();
	_cleanup_free_ char *proc = strjoin(tmp, "/proc"), *etc = strjoin(tmp, "/etc");
	assert_int_equal(mkdir_p(proc, 0755), 0);
	assert_int_equal(mkdir_p(etc, 0755), 0);
	put(tmp, "/proc/cpuinfo", "model name\t: Test CPU\ncpu MHz\t\t: 2400.000\n");
	put(tmp, "/proc/meminfo",
	    "MemTotal:       16384000 kB\nMemFree:  1000 kB\nMemAvailable:    8192000 kB\n");
	put(tmp, "/etc/os-release", "NAME=Debian\nPRETTY_NAME=\"Debian GNU/Linux 12\"\n");
	return tmp;
}

static struct host_info *collect(const char *root, const char *virt_type,
				 const struct virt_node_facts *node)
{
	struct config c;
	assert_int_equal(config_init(&c), 0);
	_cleanup_free_ char *err = NULL;
	if (virt_type)
		assert_int_equal(config_set(&c, "virt_type", virt_type, "test", &err), 0);
	/* Two roots: one that exists (the fixture), one that does not. */
	_cleanup_free_ char *paths = strjoin(root, ",/nonexistent/hostinfo-test");
	assert_int_equal(config_set(&c, "local_image_path", paths, "test", &err), 0);
	assert_int_equal(config_finish(&c, &err), 0);
	struct host_info *hi = NULL;
	assert_int_equal(hostinfo_collect(&c, root, node, &hi), 0);
	config_done(&c);
	return hi;
}

static void test_virt_type(void **state)
{
	_cleanup_free_ char *tmp = fixture();
	_cleanup_(host_info_freep) struct host_info *def = collect(tmp, NULL, NULL),
						    *tcg = collect(tmp, "qemu", NULL);
	assert_string_equal(def->sys.virt_type, "kvm");
	assert_string_equal(tcg->sys.virt_type, "qemu");
	json_auto_t *j = host_info_to_json(tcg);
	json_t *sys = json_object_get(j, "sys_info");
	assert_string_equal(json_string_value(json_object_get(sys, "virt_type")), "qemu");
	/* The region's host type is unchanged by the domain type. */
	assert_string_equal(json_string_value(json_object_get(j, "host_type")), "hypervisor");
	assert_string_equal(json_string_value(json_object_get(j, "cpu_desc")), "Test CPU");
	assert_int_equal(rm_rf(tmp), 0);
}

static void test_facts(void **state)
{
	_cleanup_free_ char *tmp = fixture();
	struct virt_node_facts nf = {.numa_nodes = 2};
	strcpy(nf.libvirt_version, "9.0.0");
	strcpy(nf.qemu_version, "8.2.2");
	strcpy(nf.uri, "qemu:///system");
	_cleanup_(host_info_freep) struct host_info *hi = collect(tmp, NULL, &nf);
	assert_string_equal(hi->cpu_desc, "Test CPU");
	assert_int_equal(hi->cpu_mhz, 2400);
	assert_int_equal(hi->mem_size_mb, 16000);
	assert_int_equal(hi->mem_reserved_mb, 2000);
	assert_string_equal(hi->sys.os, "Debian GNU/Linux 12");
	assert_int_equal(hi->node_count, 2);
	assert_string_equal(hi->libvirt_uri, "qemu:///system");
	assert_null(hi->access_ip);
	/* One storage per root; the missing root is unknown and not in the sums. */
	assert_int_equal(hi->n_storages, 2);
	assert_true(hi->storages[0].known);
	assert_false(hi->storages[1].known);
	assert_true(hi->storages[0].capacity_mb > 0);
	assert_int_equal(hi->storage_size_mb, hi->storages[0].capacity_mb);
	assert_int_equal(hi->storage_free_mb, hi->storages[0].free_mb);
	assert_true(hi->cpu_count > 0);

	/* What the API shows, keys and types included. */
	json_auto_t *j = host_info_to_json(hi);
	assert_non_null(j);
	static const char *const ints[] = {"cpu_count",	   "cpu_mhz",	   "mem_size",
					   "mem_reserved", "storage_size", "storage_free",
					   "node_count",   "page_size_kb"};
	for (size_t i = 0; i < ELEMENTSOF(ints); i++)
		assert_true(json_is_integer(json_object_get(j, ints[i])));
	assert_int_equal(json_integer_value(json_object_get(j, "mem_size")), 16000);
	assert_int_equal(json_integer_value(json_object_get(j, "node_count")), 2);
	assert_int_equal(json_integer_value(json_object_get(j, "storage_size")),
			 hi->storage_size_mb);
	assert_string_equal(json_string_value(json_object_get(j, "manager_uri")), "qemu:///system");
	assert_string_equal(json_string_value(json_object_get(j, "version")), PACKAGE_VERSION);
	assert_true(json_is_boolean(json_object_get(j, "kvm")));
	assert_null(json_object_get(j, "access_ip"));
	assert_null(json_object_get(j, "access_mac"));
	json_t *sys = json_object_get(j, "sys_info");
	assert_string_equal(json_string_value(json_object_get(sys, "libvirt_version")), "9.0.0");
	assert_string_equal(json_string_value(json_object_get(sys, "qemu_version")), "8.2.2");
	assert_string_equal(json_string_value(json_object_get(sys, "os")), "Debian GNU/Linux 12");
	assert_null(json_object_get(j, "storages"));

	hi->access_ip = strdup("10.0.0.5");
	hi->access_mac = strdup("52:54:00:12:34:56");
	json_auto_t *a = host_info_to_json(hi);
	assert_string_equal(json_string_value(json_object_get(a, "access_ip")), "10.0.0.5");
	assert_string_equal(json_string_value(json_object_get(a, "access_mac")),
			    "52:54:00:12:34:56");
	assert_int_equal(rm_rf(tmp), 0);
}

/* Without cpuinfo, meminfo, os-release or libvirt: those facts are unknown and left out. */
static void test_unknown(void **state)
{
	_cleanup_free_ char *tmp = test_tmpdir();
	_cleanup_(host_info_freep) struct host_info *hi = collect(tmp, NULL, NULL);
	assert_null(hi->cpu_desc);
	assert_int_equal(hi->cpu_mhz, -1);
	assert_int_equal(hi->mem_size_mb, -1);
	assert_int_equal(hi->node_count, -1);
	assert_null(hi->sys.os);
	json_auto_t *j = host_info_to_json(hi);
	static const char *const absent[] = {"cpu_desc",     "cpu_mhz",	   "mem_size",
					     "mem_reserved", "node_count", "manager_uri"};
	for (size_t i = 0; i < ELEMENTSOF(absent); i++)
		assert_null(json_object_get(j, absent[i]));
	json_t *sys = json_object_get(j, "sys_info");
	assert_true(json_is_object(sys));
	assert_null(json_object_get(sys, "os"));
	assert_null(json_object_get(sys, "libvirt_version"));
	assert_int_equal(rm_rf(tmp), 0);
}

static void test_stats(void **state)
{
	_cleanup_free_ char *tmp = fixture();
	put(tmp, "/proc/stat", "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n");
	struct host_cpu_sample prev = {0};
	struct host_stats st;
	hostinfo_stats(tmp, &prev, &st);
	assert_int_equal(st.memory_used_mb, (16384000 - 8192000) / 1024);
	/* Since boot: 200 busy of 1000. */
	assert_true(st.cpu_usage_percent > 19.99 && st.cpu_usage_percent < 20.01);
	assert_int_equal(prev.total, 1000);
	assert_int_equal(prev.idle, 800);
	/* 100 more ticks, 50 idle: half busy. */
	put(tmp, "/proc/stat", "cpu  150 0 100 750 100 0 0 0 0 0\n");
	hostinfo_stats(tmp, &prev, &st);
	assert_true(st.cpu_usage_percent > 49.99 && st.cpu_usage_percent < 50.01);
	/* No new ticks: no share. */
	hostinfo_stats(tmp, &prev, &st);
	assert_true(st.cpu_usage_percent < 0);
	assert_int_equal(rm_rf(tmp), 0);

	/* Nothing readable: both unknown, the sample unchanged. */
	_cleanup_free_ char *empty = test_tmpdir();
	hostinfo_stats(empty, &prev, &st);
	assert_int_equal(st.memory_used_mb, -1);
	assert_true(st.cpu_usage_percent < 0);
	assert_int_equal(prev.total, 1100);
	assert_int_equal(rm_rf(empty), 0);
}

TEST_MAIN(cmocka_unit_test(test_virt_type), cmocka_unit_test(test_facts),
	  cmocka_unit_test(test_unknown), cmocka_unit_test(test_stats))

/* Host information (agent/hostinfo.c) read from a fixture root: the domain type guests get is
 * reported in sys_info, from config virt_type. */
#include <stdlib.h>

#include "agent/hostinfo.h"
#include "common/config.h"
#include "common/fs.h"
#include "tests/unit/test-common.h"

static json_t *collect(const char *virt_type)
{
	struct config c;
	assert_int_equal(config_init(&c), 0);
	_cleanup_free_ char *err = NULL;
	if (virt_type)
		assert_int_equal(config_set(&c, "virt_type", virt_type, "test", &err), 0);
	assert_int_equal(config_finish(&c, &err), 0);
	_cleanup_free_ char *tmp = test_tmpdir();
	_cleanup_free_ char *proc = strjoin(tmp, "/proc"), *cpu = strjoin(tmp, "/proc/cpuinfo");
	assert_int_equal(mkdir_p(proc, 0755), 0);
	const char *ci = "model name\t: Test CPU\ncpu MHz\t\t: 2400.000\n";
	assert_int_equal(write_file_atomic(cpu, ci, strlen(ci), 0644), 0);
	json_t *j = NULL;
	assert_int_equal(hostinfo_collect(&c, tmp, NULL, &j), 0);
	assert_int_equal(rm_rf(tmp), 0);
	config_done(&c);
	return j;
}

static void test_virt_type(void **state)
{
	json_auto_t *def = collect(NULL), *tcg = collect("qemu");
	json_t *sys = json_object_get(def, "sys_info");
	assert_string_equal(json_string_value(json_object_get(sys, "virt_type")), "kvm");
	sys = json_object_get(tcg, "sys_info");
	assert_string_equal(json_string_value(json_object_get(sys, "virt_type")), "qemu");
	/* The region's host type is unchanged by the domain type. */
	assert_string_equal(json_string_value(json_object_get(tcg, "host_type")), "hypervisor");
	assert_string_equal(json_string_value(json_object_get(tcg, "cpu_desc")), "Test CPU");
}

TEST_MAIN(cmocka_unit_test(test_virt_type))

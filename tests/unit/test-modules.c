/* agent/modules: the request handed to kmod from the configured module list. */
#include "agent/modules.h"
#include "common/config.h"
#include "common/fs.h"
#include "kmod/modload.h"
#include "tests/unit/test-common.h"

static const struct modload_request *find(const struct modload_request *req, size_t n,
					  const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (streq(req[i].name, name))
			return &req[i];
	return NULL;
}

/* The default list names the vendor module by its placeholder; the request carries the module
 * of the CPU (Intel, AMD, Hygon) and leaves the entry out on another CPU. */
static void test_default_request(void **state)
{
	_cleanup_free_ char *tmp = test_tmpdir();
	_cleanup_free_ char *intel =
	    test_write(tmp, "intel", "processor\t: 0\nvendor_id\t: GenuineIntel\n");
	_cleanup_free_ char *hygon = test_write(tmp, "hygon", "vendor_id\t: HygonGenuine\n");
	_cleanup_free_ char *other = test_write(tmp, "other", "vendor_id\t: CentaurHauls\n");
	struct config c;
	assert_int_equal(config_init(&c), 0);
	size_t placeholder = SIZE_MAX;
	for (size_t i = 0; i < c.n_kernel_modules; i++)
		if (streq(c.kernel_modules[i].name, CONFIG_MODULE_KVM_VENDOR))
			placeholder = i;
	assert_true(placeholder != SIZE_MAX);
	assert_false(c.kernel_modules[placeholder].required);

	struct modload_request *req;
	size_t n;
	assert_int_equal(agent_modules_request(&c, intel, &req, &n), 0);
	assert_int_equal(n, c.n_kernel_modules);
	assert_string_equal(req[placeholder].name, "kvm_intel");
	assert_false(req[placeholder].required);
	assert_null(find(req, n, CONFIG_MODULE_KVM_VENDOR));
	const struct modload_request *nbd = find(req, n, "nbd"), *kvm = find(req, n, "kvm");
	assert_true(nbd && kvm);
	assert_string_equal(nbd ? nbd->params : "", "max_part=16");
	assert_true(kvm && kvm->required);
	free(req);

	assert_int_equal(agent_modules_request(&c, hygon, &req, &n), 0);
	assert_string_equal(req[placeholder].name, "kvm_amd");
	free(req);

	assert_int_equal(agent_modules_request(&c, other, &req, &n), 0);
	assert_int_equal(n, c.n_kernel_modules - 1);
	assert_null(find(req, n, "kvm_intel"));
	assert_null(find(req, n, "kvm_amd"));
	assert_null(find(req, n, CONFIG_MODULE_KVM_VENDOR));
	assert_non_null(find(req, n, "tun"));
	free(req);
	config_done(&c);
	assert_int_equal(rm_rf(tmp), 0);
}

TEST_MAIN(cmocka_unit_test(test_default_request))

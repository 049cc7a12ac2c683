/* modload on the fixture tree tests/data/modules/root/lib/modules/6.0.0-test, with sysfs and
 * proc roots in a temp dir and the insert syscall faked: asserts exactly which modules are
 * inserted, in which order, with which options. */
#include <libkmod.h>
#include <sys/stat.h>

#include "common/fs.h"
#include "kmod/modload.h"
#include "tests/unit/test-common.h"

struct fake {
	char **calls;	       /* "name" or "name opts" */
	const char *fail_name; /* insert of this module fails with fail_errno */
	int fail_errno;
	int modprobe_result;
};

static int fake_insert(void *userdata, struct kmod_module *mod, const char *options)
{
	struct fake *f = userdata;
	const char *name = kmod_module_get_name(mod);
	char *s = options ? strjoin(name, " ", options) : strdup(name);
	assert_non_null(s);
	assert_int_equal(strv_push(&f->calls, s), 0);
	if (f->fail_name && streq(f->fail_name, name))
		return -f->fail_errno;
	return 0;
}

static int fake_modprobe(void *userdata, const char *name, char *const *params)
{
	struct fake *f = userdata;
	_cleanup_free_ char *p = NULL;
	char *s = strjoin("modprobe ", name);
	assert_non_null(s);
	for (size_t i = 0; params && params[i]; i++) {
		char *t = strjoin(s, " ", params[i]);
		free(s);
		s = t;
		assert_non_null(s);
	}
	assert_int_equal(strv_push(&f->calls, s), 0);
	return f->modprobe_result;
}

static const struct modload_ops fake_ops = {fake_insert, fake_modprobe};

struct env {
	char *tmp, *sys, *proc;
	struct fake fake;
	struct modload *m;
};

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	e->tmp = test_tmpdir_with("sys", &e->sys, "proc", &e->proc, NULL);
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;
	modload_free(e->m);
	strv_free(e->fake.calls);
	rm_rf(e->tmp);
	free(e->tmp);
	free(e->sys);
	free(e->proc);
	free(e);
	return 0;
}

static const char *const no_config[] = {NULL};

static void open_tree(struct env *e, const char *tree)
{
	_cleanup_free_ char *dir = test_data(tree);
	struct modload_opts o = {
	    .modules_dir = dir,
	    .sysfs_root = e->sys,
	    .proc_root = e->proc,
	    .config_paths = no_config,
	    .modprobe_fallback = true,
	    .ops = &fake_ops,
	    .ops_userdata = &e->fake,
	};
	assert_int_equal(modload_new(&o, &e->m), 0);
}

#define TREE "modules/root/lib/modules/6.0.0-test"

static void sys_module(struct env *e, const char *name, bool loadable)
{
	_cleanup_free_ char *d = strjoin(e->sys, "/module/", name);
	assert_int_equal(mkdir_p(d, 0755), 0);
	if (loadable)
		free(test_write(d, "initstate", "live\n"));
}

static struct modload_report *ensure(struct env *e, const struct modload_request *mods, size_t n)
{
	struct modload_report *r = NULL;
	assert_int_equal(modload_ensure(e->m, mods, n, &r), 0);
	assert_int_equal(r->n_results, n);
	return r;
}

static void assert_calls(struct env *e, const char *const *want)
{
	size_t n = strv_length(e->fake.calls);
	for (size_t i = 0; want[i]; i++) {
		assert_true(i < n);
		assert_string_equal(e->fake.calls[i], want[i]);
	}
	assert_int_equal(n, strv_length((char *const *)want));
}

static void test_dependency_order(void **state)
{
	struct env *e = *state;
	open_tree(e, TREE);
	struct modload_request mods[] = {{"vhost_net", NULL, true}};
	_cleanup_(modload_report_freep) struct modload_report *r = ensure(e, mods, 1);
	assert_int_equal(r->results[0].status, MODLOAD_LOADED_NOW);
	assert_true(r->tree_available);
	/* Every dependency before its user, in libkmod's (modprobe's) order. */
	assert_calls(e, (const char *[]){"vhost_iotlb", "vhost", "tun", "vhost_net", NULL});
	assert_int_equal(strv_length(r->results[0].inserted), 4);
	assert_true(modload_report_ok(r));
}

static void test_alias_and_params(void **state)
{
	struct env *e = *state;
	open_tree(e, TREE);
	struct modload_request mods[] = {{"block-major-43", "max_part=16", true},
					 {"kvm-intel", "nested=1", true}};
	_cleanup_(modload_report_freep) struct modload_report *r = ensure(e, mods, 2);
	assert_string_equal(r->results[0].resolved, "nbd");
	assert_int_equal(r->results[0].status, MODLOAD_LOADED_NOW);
	assert_string_equal(r->results[1].resolved, "kvm_intel");
	/* nbd's soft pre-dependency (crc32c alias) first; params only on the target. */
	assert_calls(e, (const char *[]){"crc32c_generic", "nbd max_part=16", "kvm",
					 "kvm_intel nested=1", NULL});
}

static void test_builtin_loaded_missing(void **state)
{
	struct env *e = *state;
	open_tree(e, TREE);
	sys_module(e, "bridge", true); /* loaded, has initstate */
	sys_module(e, "vxlan", false); /* built in: no initstate, not in the tree */
	free(test_write(e->proc, "modules", "kvm 1 0 - Live 0x0\nllc 1 0 - Live 0x0\n"));
	struct modload_request mods[] = {
	    {"veth", NULL, true},	  {"bridge", NULL, true},
	    {"vxlan", NULL, true},	  {"kvm", NULL, true},
	    {"br_netfilter", NULL, true}, {"no_such_module", NULL, true},
	    {"openvswitch", NULL, false},
	};
	_cleanup_(modload_report_freep) struct modload_report *r = ensure(e, mods, 7);
	assert_int_equal(r->results[0].status, MODLOAD_BUILTIN); /* modules.builtin */
	assert_int_equal(r->results[1].status, MODLOAD_ALREADY_LOADED);
	assert_int_equal(r->results[2].status, MODLOAD_BUILTIN);	/* /sys/module only */
	assert_int_equal(r->results[3].status, MODLOAD_ALREADY_LOADED); /* /proc/modules */
	assert_int_equal(r->results[4].status, MODLOAD_LOADED_NOW);
	assert_int_equal(r->results[5].status, MODLOAD_MISSING);
	assert_int_equal(r->results[6].status, MODLOAD_MISSING);
	/* bridge/llc are loaded: only stp, br_netfilter's soft pre-dep and itself. */
	assert_calls(e, (const char *[]){"stp", "nf_conntrack", "br_netfilter", NULL});

	assert_false(modload_report_ok(r));
	_cleanup_strv_free_ char **reasons = NULL, **warnings = NULL;
	assert_int_equal(modload_report_reasons(r, &reasons), 0);
	assert_int_equal(strv_length(reasons), 1);
	assert_string_equal(reasons[0], "required kernel module no_such_module is missing");
	assert_int_equal(modload_report_warnings(r, &warnings), 0);
	assert_int_equal(strv_length(warnings), 1);
	assert_string_equal(warnings[0], "optional kernel module openvswitch is missing");

	_cleanup_free_ char *text = NULL;
	assert_int_equal(modload_report_to_text(r, &text), 0);
	assert_non_null(strstr(text, "veth: builtin\n"));
	assert_non_null(
	    strstr(text, "br_netfilter: loaded now inserted=stp,nf_conntrack,br_netfilter\n"));
	assert_non_null(strstr(text, "openvswitch: missing optional\n"));

	/* What the agent's JSON is made of (agent/modules.c; modules-host.sh checks the JSON). */
	assert_int_equal(r->n_results, 7);
	assert_int_equal(r->results[5].status, MODLOAD_MISSING);
	assert_int_equal(strv_length(r->results[4].inserted), 3);
}

static void test_failure(void **state)
{
	struct env *e = *state;
	open_tree(e, TREE);
	e->fake.fail_name = "vhost";
	e->fake.fail_errno = ENOEXEC;
	struct modload_request mods[] = {{"vhost_net", NULL, true}, {"fails-to-load", NULL, false}};
	_cleanup_(modload_report_freep) struct modload_report *r = NULL;
	r = ensure(e, mods, 1);
	assert_int_equal(r->results[0].status, MODLOAD_FAILED);
	assert_int_equal(r->results[0].error, ENOEXEC);
	assert_string_equal(r->results[0].failed_dep, "vhost");
	/* Stops at the failed dependency. */
	assert_calls(e, (const char *[]){"vhost_iotlb", "vhost", NULL});
	_cleanup_strv_free_ char **reasons = NULL;
	assert_int_equal(modload_report_reasons(r, &reasons), 0);
	assert_string_equal(reasons[0], "required kernel module vhost_net failed to load: "
					"dependency vhost: Exec format error");
	modload_report_free(TAKE_PTR(r));

	e->fake.fail_name = "broken";
	e->fake.fail_errno = EPERM;
	r = ensure(e, mods + 1, 1);
	assert_int_equal(r->results[0].status, MODLOAD_FAILED);
	assert_int_equal(r->results[0].error, EPERM);
	assert_null(r->results[0].failed_dep);
	assert_true(modload_report_ok(r)); /* optional */
}

static void test_no_tree_fallback(void **state)
{
	struct env *e = *state;
	open_tree(e, "modules/does-not-exist");
	sys_module(e, "kvm", false);
	struct modload_request mods[] = {
	    {"kvm", NULL, true}, {"nbd", "max_part=16 nbds_max=4", true}, {"tun", NULL, true}};
	e->fake.modprobe_result = 0;
	_cleanup_(modload_report_freep) struct modload_report *r = ensure(e, mods, 2);
	assert_false(r->tree_available);
	assert_int_equal(r->results[0].status, MODLOAD_BUILTIN);
	assert_int_equal(r->results[1].status, MODLOAD_LOADED_NOW);
	assert_calls(e, (const char *[]){"modprobe nbd max_part=16 nbds_max=4", NULL});

	e->fake.modprobe_result = -ENOENT;
	_cleanup_(modload_report_freep) struct modload_report *r2 = ensure(e, mods + 2, 1);
	assert_int_equal(r2->results[0].status, MODLOAD_MISSING);
	_cleanup_strv_free_ char **reasons = NULL;
	assert_int_equal(modload_report_reasons(r2, &reasons), 0);
	assert_string_equal(reasons[0], "required kernel module tun is missing");

	/* A built-in tun has no /sys/module/tun, but its misc device class exists. */
	_cleanup_free_ char *misc = strjoin(e->sys, "/class/misc/tun");
	assert_int_equal(mkdir_p(misc, 0755), 0);
	_cleanup_(modload_report_freep) struct modload_report *r3 = ensure(e, mods + 2, 1);
	assert_int_equal(r3->results[0].status, MODLOAD_BUILTIN);
}

static void test_kvm_vendor(void **state)
{
	struct env *e = *state;
	const char *k = NULL;
	_cleanup_free_ char *intel =
	    test_write(e->tmp, "intel", "processor\t: 0\nvendor_id\t: GenuineIntel\n");
	_cleanup_free_ char *amd = test_write(e->tmp, "amd", "vendor_id\t: AuthenticAMD\n");
	_cleanup_free_ char *other = test_write(e->tmp, "other", "vendor_id\t: Foo\n");
	assert_int_equal(modload_kvm_module(intel, &k), 0);
	assert_string_equal(k, "kvm_intel");
	assert_int_equal(modload_kvm_module(amd, &k), 0);
	assert_string_equal(k, "kvm_amd");
	assert_int_equal(modload_kvm_module(other, &k), -EOPNOTSUPP);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
TEST_MAIN(T(test_dependency_order), T(test_alias_and_params), T(test_builtin_loaded_missing),
	  T(test_failure), T(test_no_tree_fallback), T(test_kvm_vendor))

/* Placement on fixture cgroupfs trees (v1, v2, hybrid) and a fake /proc: asserts which
 * cgroup files got which ids. Fixture writes append (see write_attr), so a file's content is
 * the list of every id written to it. */
#include <sys/stat.h>

#include "placement/placement-internal.h"
#include "placement/placement.h"
#include "common/fs.h"
#include "test-common.h"

#define SELF 4242
#define QEMU 5000

struct fx {
	char *tmp, *cg, *proc;
};

/* Writes dir/rel (creating parents) with text. */
static void put(const char *dir, const char *rel, const char *text)
{
	_cleanup_free_ char *path = strjoin(dir, "/", rel);
	_cleanup_free_ char *parent = NULL;

	assert_non_null(path);
	parent = strndup(path, (size_t)(strrchr(path, '/') - path));
	assert_int_equal(mkdir_p(parent, 0755), 0);
	assert_int_equal(write_file_atomic(path, text, strlen(text), 0644), 0);
}

static char *get(const char *dir, const char *rel)
{
	_cleanup_free_ char *path = strjoin(dir, "/", rel);
	char *text = NULL;

	if (read_file(path, 1 << 20, &text, NULL) < 0)
		return NULL;
	return text;
}

static bool exists(const char *dir, const char *rel)
{
	_cleanup_free_ char *path = strjoin(dir, "/", rel);

	return access(path, F_OK) == 0;
}

#define assert_file(fx_, rel, want)                                                                \
	do {                                                                                       \
		_cleanup_free_ char *t_ = get((fx_)->cg, rel);                                     \
		assert_non_null(t_);                                                               \
		assert_string_equal(t_, want);                                                     \
	} while (0)

/* A cgroup directory: v1 gets tasks + cgroup.procs, v2 cgroup.procs (+ controllers). */
static void mkcg(const struct fx *f, const char *hier, const char *path, bool v2, const char *procs)
{
	_cleanup_free_ char *d = strjoin(f->cg, "/", hier, path);

	assert_int_equal(mkdir_p(d, 0755), 0);
	put(d, "cgroup.procs", procs);
	if (v2) {
		put(d, "cgroup.controllers", "cpu memory pids\n");
		put(d, "cgroup.subtree_control", "");
	} else
		put(d, "tasks", procs);
	if (strstr(hier, "cpuset")) {
		put(d, "cpuset.cpus", "0-1\n");
		put(d, "cpuset.mems", "0\n");
	}
}

static struct fx *fx_new(void)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->tmp = test_tmpdir();
	f->cg = strjoin(f->tmp, "/cgroup");
	f->proc = strjoin(f->tmp, "/proc");
	assert_int_equal(mkdir_p(f->cg, 0755), 0);
	assert_int_equal(mkdir_p(f->proc, 0755), 0);
	return f;
}

static void fx_free(struct fx *f)
{
	rm_rf(f->tmp);
	free(f->tmp);
	free(f->cg);
	free(f->proc);
	free(f);
}

static void proc_self(const struct fx *f, const char *text)
{
	_cleanup_free_ char *rel = NULL;

	assert_int_equal(asprintf_safe(&rel, "%d/cgroup", SELF), 0);
	put(f->proc, rel, text);
}

static void proc_threads(const struct fx *f, const int *tids, size_t n, const char *text)
{
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *rel = NULL;

		assert_int_equal(asprintf_safe(&rel, "%d/task/%d/cgroup", QEMU, tids[i]), 0);
		put(f->proc, rel, text);
	}
}

static struct placement *open_fx(const struct fx *f)
{
	struct placement_opts o = {
	    .cgroup_root = f->cg,
	    .proc_root = f->proc,
	    .self_pid = SELF,
	    .systemd = PLACEMENT_SYSTEMD_NO,
	};
	struct placement *p = NULL;

	assert_int_equal(placement_new(&o, &p), 0);
	return p;
}

/* placement_check_pid() of QEMU succeeds and reports these counts of threads, misplaced, left and
 * moved (ANY: not checked). */
#define ANY (-1)
static void check_qemu(struct placement *p, const char *name, bool move,
		       struct placement_report *rep, int threads, int misplaced, int left,
		       int moved)
{
	assert_int_equal(placement_check_pid(p, QEMU, name, move, rep), 0);
	if (threads != ANY)
		assert_int_equal(rep->n_threads, threads);
	if (misplaced != ANY)
		assert_int_equal(rep->n_misplaced, misplaced);
	if (left != ANY)
		assert_int_equal(rep->n_left, left);
	if (moved != ANY)
		assert_int_equal(rep->n_moved, moved);
}

/* cgroup v2 with a private cgroup namespace (what a Kubernetes runtime gives the pod): the
 * agent sees "/", finds itself by scanning, and the libvirt container's QEMU is relative. */
static void test_v2_private_ns(void **state)
{
	struct fx *f = fx_new();
	_cleanup_placement_ struct placement *p = NULL;
	struct placement_report rep = {0};
	static const int tids[] = {QEMU, QEMU + 1, QEMU + 2};
	_cleanup_free_ char *reason = NULL;

	mkcg(f, "", "", true, "1\n");
	mkcg(f, "", "/kubepods/besteffort/pod123/ctrA", true, "17\n4242\n");
	mkcg(f, "", "/kubepods/besteffort/pod123/ctrB/machine/qemu-1-vm1", true, "5000\n");
	proc_self(f, "0::/\n");
	proc_threads(f, tids, 3, "0::/../ctrB/machine/qemu-1-vm1\n");

	p = open_fx(f);
	assert_int_equal(placement_layout(p), PLACEMENT_LAYOUT_V2);
	assert_string_equal(placement_container_cgroup(p), "/kubepods/besteffort/pod123");

	check_qemu(p, "vm1", false, &rep, 3, 3, 3, 0);
	assert_string_equal(rep.violation,
			    "tid=5000 hierarchy=unified "
			    "cgroup=/kubepods/besteffort/pod123/ctrB/machine/qemu-1-vm1");
	placement_report_done(&rep);
	assert_int_equal(placement_violations(p), 1);
	assert_false(exists(f->cg, "machine"));

	/* v2: the process once, all threads follow. */
	check_qemu(p, "vm1", true, &rep, ANY, ANY, ANY, 1);
	assert_string_equal(rep.target, "/machine/qemu-vm1.hostagent");
	assert_false(rep.systemd_used);
	placement_report_done(&rep);
	assert_file(f, "machine/qemu-vm1.hostagent/cgroup.procs", "5000\n");
	/* The partition and the VM cgroup get the controllers of their parents. */
	assert_file(f, "cgroup.subtree_control", "+cpu+memory+pids");
	/* The fake /proc did not change: still a violation, with a reason for /readyz. */
	assert_int_equal(placement_violations(p), 1);
	assert_int_equal(placement_violation_reason(p, &reason), 0);
	assert_non_null(strstr(reason, "vm1 (pid 5000"));

	/* What the kernel shows once moved (relative to the agent's namespace root). */
	proc_threads(f, tids, 3, "0::/../../../../machine/qemu-vm1.hostagent\n");
	check_qemu(p, "vm1", true, &rep, ANY, 0, 0, ANY);
	assert_null(rep.target);
	placement_report_done(&rep);
	assert_int_equal(placement_violations(p), 0);
	assert_int_equal(placement_violation_reason(p, &reason), -ENOENT);
	fx_free(f);
}

/* cgroup v1 (podman with cgroupfs): per-thread writes to tasks, cpuset cpus/mems copied to
 * every new level before a task goes in, hierarchies already placed are left alone. */
static void test_v1_threads_and_cpuset(void **state)
{
	struct fx *f = fx_new();
	_cleanup_placement_ struct placement *p = NULL;
	struct placement_report rep = {0};
	static const int tids[] = {QEMU, QEMU + 7, QEMU + 9};
	static const char *const h[] = {"cpuset", "memory", "systemd", "cpu,cpuacct"};

	for (size_t i = 0; i < ELEMENTSOF(h); i++) {
		mkcg(f, h[i], "", false, "1\n");
		mkcg(f, h[i], "/libpod_parent/libpod-aaa", false, "4242\n");
	}
	mkcg(f, "cpu,cpuacct", "/machine/qemu-1-vm2.libvirt-qemu", false, "5000\n");
	proc_self(f, "4:cpuset:/libpod_parent/libpod-aaa\n"
		     "3:memory:/libpod_parent/libpod-aaa\n"
		     "2:cpu,cpuacct:/libpod_parent/libpod-aaa\n"
		     "1:name=systemd:/libpod_parent/libpod-aaa\n");
	proc_threads(f, tids, 3,
		     "4:cpuset:/libpod_parent/libpod-bbb/machine/qemu-1-vm2.libvirt-qemu/vcpu0\n"
		     "3:memory:/libpod_parent/libpod-bbb/machine/qemu-1-vm2.libvirt-qemu\n"
		     "2:cpu,cpuacct:/machine/qemu-1-vm2.libvirt-qemu\n"
		     "1:name=systemd:/libpod_parent/libpod-bbb\n"
		     "0::/\n");

	p = open_fx(f);
	assert_int_equal(placement_layout(p), PLACEMENT_LAYOUT_V1);
	/* libpod_parent holds every podman container: the libvirt container's QEMU counts. */
	assert_string_equal(placement_container_cgroup(p), "/libpod_parent");

	check_qemu(p, "vm2", true, &rep, 3, 9, ANY, 9);
	placement_report_done(&rep);

	assert_file(f, "cpuset/machine/cpuset.cpus", "0-1\n");
	assert_file(f, "cpuset/machine/cpuset.mems", "0\n");
	assert_file(f, "cpuset/machine/qemu-vm2.hostagent/cpuset.cpus", "0-1\n");
	assert_file(f, "cpuset/machine/qemu-vm2.hostagent/cpuset.mems", "0\n");
	assert_file(f, "cpuset/machine/qemu-vm2.hostagent/tasks", "5000\n5007\n5009\n");
	assert_file(f, "memory/machine/qemu-vm2.hostagent/tasks", "5000\n5007\n5009\n");
	assert_file(f, "systemd/machine/qemu-vm2.hostagent/tasks", "5000\n5007\n5009\n");
	assert_false(exists(f->cg, "memory/machine/cpuset.cpus"));
	assert_false(exists(f->cg, "cpu,cpuacct/machine/qemu-vm2.hostagent"));
	assert_false(exists(f->cg, "cpuset/machine/qemu-vm2.hostagent/cgroup.procs"));

	/* The VM stopped: its record goes, and its empty cgroups (real cgroupfs shows no
	 * regular files to a rmdir; the fixture's must go first). */
	assert_int_equal(placement_violations(p), 1);
	assert_int_equal(rm_rf(f->cg) >= 0 ? 0 : -1, 0);
	assert_int_equal(mkdir_p(f->cg, 0755), 0);
	{
		_cleanup_free_ char *d = strjoin(f->cg, "/memory/machine/qemu-vm2.hostagent");

		assert_int_equal(mkdir_p(d, 0755), 0);
	}
	placement_forget(p, "vm2");
	assert_int_equal(placement_violations(p), 0);
	assert_false(exists(f->cg, "memory/machine/qemu-vm2.hostagent"));
	assert_true(exists(f->cg, "memory/machine"));
	fx_free(f);
}

/* Hybrid (this project's machines): v1 controllers plus cgroup2 at unified/. */
static void test_hybrid(void **state)
{
	struct fx *f = fx_new();
	_cleanup_placement_ struct placement *p = NULL;
	struct placement_report rep = {0};
	static const int tids[] = {QEMU, QEMU + 1};
	struct placement_opts o = {
	    .cgroup_root = f->cg,
	    .proc_root = f->proc,
	    .self_pid = SELF,
	    .systemd = PLACEMENT_SYSTEMD_NO,
	    .host_partition = "/hostvms",
	};

	mkcg(f, "pids", "", false, "1\n");
	mkcg(f, "unified", "", true, "1\n");
	mkcg(f, "pids", "/libpod_parent/libpod-aaa", false, "4242\n");
	mkcg(f, "unified", "/libpod_parent/libpod-aaa", true, "4242\n");
	/* The agent's view through a private cgroup namespace. */
	proc_self(f, "2:pids:/\n1:name=systemd:/\n0::/\n");
	proc_threads(f, tids, 2,
		     "2:pids:/../libpod-bbb\n1:name=systemd:/../libpod-bbb\n0::/../libpod-bbb\n");

	assert_int_equal(placement_new(&o, &p), 0);
	assert_int_equal(placement_layout(p), PLACEMENT_LAYOUT_HYBRID);
	assert_string_equal(placement_layout_to_string(placement_layout(p)), "hybrid");
	assert_string_equal(placement_container_cgroup(p), "/libpod_parent");

	/* name=systemd is not mounted in this fixture: ignored. */
	check_qemu(p, "my vm/1", true, &rep, ANY, 4, ANY, 3);
	assert_string_equal(rep.target, "/hostvms/qemu-my_vm_1.hostagent");
	placement_report_done(&rep);
	assert_file(f, "pids/hostvms/qemu-my_vm_1.hostagent/tasks", "5000\n5001\n");
	assert_file(f, "unified/hostvms/qemu-my_vm_1.hostagent/cgroup.procs", "5000\n");
	fx_free(f);
}

/* An agent that is not in a container (its cgroup is the root): nothing to enforce. */
static void test_not_in_container(void **state)
{
	struct fx *f = fx_new();
	_cleanup_placement_ struct placement *p = NULL;
	struct placement_report rep = {0};
	static const int tids[] = {QEMU};

	mkcg(f, "", "", true, "1\n4242\n");
	proc_self(f, "0::/\n");
	proc_threads(f, tids, 1, "0::/machine/qemu-1-vm.libvirt-qemu\n");
	p = open_fx(f);
	assert_string_equal(placement_container_cgroup(p), "/");
	check_qemu(p, "vm", true, &rep, ANY, 0, ANY, 0);
	placement_report_done(&rep);
	fx_free(f);
}

/* A container cgroup whose parent is not a pod: the container itself is what to avoid, and
 * an explicit container_cgroup wins. Gone processes and bad input. */
static void test_container_and_errors(void **state)
{
	struct fx *f = fx_new();
	_cleanup_placement_ struct placement *p = NULL, *q = NULL;
	struct placement_report rep = {0};
	struct placement_opts o = {.cgroup_root = f->cg,
				   .proc_root = f->proc,
				   .self_pid = SELF,
				   .systemd = PLACEMENT_SYSTEMD_NO,
				   .container_cgroup = "/other//x/"};
	static const int tids[] = {QEMU};

	mkcg(f, "", "", true, "1\n");
	mkcg(f, "", "/system.slice/agent.service", true, "4242\n");
	proc_self(f, "0::/system.slice/agent.service\n");
	proc_threads(f, tids, 1, "0::/system.slice/agent.service/sub\n");
	p = open_fx(f);
	assert_string_equal(placement_container_cgroup(p), "/system.slice/agent.service");
	check_qemu(p, "vm", false, &rep, ANY, ANY, 1, ANY);
	placement_report_done(&rep);
	assert_int_equal(placement_violations(p), 1);
	/* A move that fails is no check error: the violation stays, with the reason. */
	put(f->cg, "machine", "not a directory");
	check_qemu(p, "vm", true, &rep, ANY, ANY, 1, 0);
	assert_int_equal(rep.error, -ENOTDIR);
	placement_report_done(&rep);
	/* The process went away: -ESRCH and the record is dropped. */
	assert_int_equal(placement_check_pid(p, QEMU + 100, "vm", true, &rep), -ESRCH);
	assert_int_equal(placement_violations(p), 0);
	assert_int_equal(placement_check_pid(p, QEMU, "", true, &rep), -EINVAL);
	assert_int_equal(placement_check_pid(p, 0, "vm", true, &rep), -EINVAL);

	assert_int_equal(placement_new(&o, &q), 0);
	assert_string_equal(placement_container_cgroup(q), "/other/x");
	assert_int_equal(placement_check_pid(q, QEMU, "vm", false, NULL), 0);
	assert_int_equal(placement_violations(q), 0);

	o.host_partition = "relative";
	assert_int_equal(placement_new(&o, &q), -EINVAL);
	fx_free(f);
}

/* Only a subtree of the hierarchy is mounted (a systemd container): /proc paths start with the
 * mount's root (mountinfo), cgroups outside the mounted part are not the container's. */
static void test_subtree_mount(void **state)
{
	struct fx *f = fx_new();
	_cleanup_placement_ struct placement *p = NULL;
	_cleanup_free_ char *mi = NULL, *rel = NULL;
	struct placement_report rep = {0};
	static const int tids[] = {QEMU};

	mkcg(f, "", "", true, "1\n");
	mkcg(f, "", "/system.slice/agent.service", true, "4242\n");
	assert_int_equal(asprintf_safe(&rel, "%d/mountinfo", SELF), 0);
	assert_int_equal(
	    asprintf_safe(&mi,
			  "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
			  "31 1 0:26 /libpod_parent/libpod-x %s rw - cgroup2 cgroup2 rw\n",
			  f->cg),
	    0);
	put(f->proc, rel, mi);
	proc_self(f, "0::/libpod_parent/libpod-x/system.slice/agent.service\n");
	proc_threads(f, tids, 1, "0::/libpod_parent/libpod-x/system.slice/agent.service/libvirt\n");
	p = open_fx(f);
	assert_string_equal(placement_container_cgroup(p), "/system.slice/agent.service");
	check_qemu(p, "vm", true, &rep, ANY, 1, ANY, ANY);
	assert_string_equal(rep.target, "/machine/qemu-vm.hostagent");
	placement_report_done(&rep);
	assert_file(f, "machine/qemu-vm.hostagent/cgroup.procs", "5000\n");

	/* Moved by the host outside what is mounted here: not inside the container. */
	proc_threads(f, tids, 1, "0::/machine/qemu-1-vm.libvirt-qemu\n");
	check_qemu(p, "vm", false, &rep, ANY, 0, ANY, ANY);
	placement_report_done(&rep);
	fx_free(f);
}

static void test_unit_name(void **state)
{
	_cleanup_free_ char *a = NULL, *b = NULL;
	char *c = NULL;

	assert_int_equal(placement_systemd_unit_name("vm1", &a), 0);
	assert_string_equal(a, "hostagent-qemu-vm1.scope");
	assert_int_equal(placement_systemd_unit_name("my-vm/ä.1", &b), 0);
	assert_string_equal(b, "hostagent-qemu-my\\x2dvm\\x2f\\xc3\\xa4.1.scope");
	assert_int_equal(placement_systemd_unit_name("", &c), -EINVAL);
	assert_null(c);
}

static void test_no_hierarchy(void **state)
{
	struct fx *f = fx_new();
	struct placement *p = NULL;
	struct placement_opts o = {.cgroup_root = f->cg,
				   .proc_root = f->proc,
				   .self_pid = SELF,
				   .systemd = PLACEMENT_SYSTEMD_NO};

	assert_int_equal(placement_new(&o, &p), -ENOENT);
	assert_null(p);
	fx_free(f);
}

TEST_MAIN(cmocka_unit_test(test_v2_private_ns), cmocka_unit_test(test_v1_threads_and_cpuset),
	  cmocka_unit_test(test_hybrid), cmocka_unit_test(test_not_in_container),
	  cmocka_unit_test(test_container_and_errors), cmocka_unit_test(test_no_hierarchy),
	  cmocka_unit_test(test_subtree_mount), cmocka_unit_test(test_unit_name))

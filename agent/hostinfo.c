#include <fcntl.h>
#include <limits.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "agent/hostinfo.h"
#include "agent/hostnet.h"
#include "agent/virt.h"
#include "common/fs.h"
#include "common/log.h"

static char *path_in(const char *root, const char *p)
{
	return strjoin(streq(root, "/") ? "" : root, p);
}

/* Value of "key<spaces>: value" in a /proc style file, or NULL. */
static char *proc_field(const char *text, const char *key)
{
	size_t n = strlen(key);
	for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		if (!strneq(l, key, n) || (l[n] != ' ' && l[n] != '\t' && l[n] != ':'))
			continue;
		const char *c = strchr(l, ':');
		const char *e = strchrnul(l, '\n');
		if (!c || c > e)
			continue;
		c++;
		while (*c == ' ' || *c == '\t')
			c++;
		return strndup(c, (size_t)(e - c));
	}
	return NULL;
}

static void os_release(const char *root, json_t *sys)
{
	_cleanup_free_ char *p = path_in(root, "/etc/os-release"), *txt = NULL;
	if (read_file(p, 64 * 1024, &txt, NULL) < 0)
		return;
	for (char *l = strtok(txt, "\n"); l; l = strtok(NULL, "\n"))
		if (strneq(l, "PRETTY_NAME=", 12)) {
			char *v = l + 12;
			size_t n = strlen(v);
			if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
				v[n - 1] = 0;
				v++;
			}
			json_object_set_new(sys, "os", json_string(v));
		}
}

/* KVM_CAP_MAX_VCPUS of /dev/kvm: the most vCPUs one guest may have; -1 without KVM. */
static long kvm_max_vcpus(void)
{
	_cleanup_close_ int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int n = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (n <= 0)
		n = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	return n > 0 ? n : -1;
}

int hostinfo_storage(const char *root, json_t **ret)
{
	struct statvfs sv;
	struct stat st, rst;
	if (statvfs(root, &sv) < 0 || stat(root, &st) < 0)
		return negative_errno();
	json_int_t total = (json_int_t)(sv.f_blocks * sv.f_frsize / (1024 * 1024));
	json_int_t avail = (json_int_t)(sv.f_bavail * sv.f_frsize / (1024 * 1024));
	json_int_t used = (json_int_t)((sv.f_blocks - sv.f_bfree) * sv.f_frsize / (1024 * 1024));
	/* The block device's queue/rotational; a partition's queue is its parent's. Not a block
	 * device (tmpfs, overlay): no spinning disk under it. */
	bool rotational = false;
	char p[PATH_MAX];
	_cleanup_free_ char *rot = NULL;
	snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/queue/rotational", major(st.st_dev),
		 minor(st.st_dev));
	if (read_file(p, 16, &rot, NULL) < 0) {
		snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/../queue/rotational", major(st.st_dev),
			 minor(st.st_dev));
		(void)read_file(p, 16, &rot, NULL);
	}
	if (rot && rot[0] == '1')
		rotational = true;
	bool is_root = stat("/", &rst) == 0 && rst.st_dev == st.st_dev;
	json_t *o = json_pack("{s:I,s:I,s:I,s:s,s:b}", "capacity_mb", total, "used_mb", used,
			      "free_mb", avail, "medium_type", rotational ? "rotate" : "ssd",
			      "is_root_partition", is_root);
	if (!o)
		return -ENOMEM;
	*ret = o;
	return 0;
}

int hostinfo_collect(const struct config *cfg, const char *root, const struct virt_node_facts *node,
		     json_t **ret)
{
	json_t *host = json_object(), *sys = json_object();
	if (!host || !sys) {
		json_decref(host);
		json_decref(sys);
		return -ENOMEM;
	}
	struct utsname u;
	if (uname(&u) == 0) {
		json_object_set_new(host, "name", json_string(u.nodename));
		json_object_set_new(sys, "kernel", json_string(u.release));
		json_object_set_new(sys, "arch", json_string(u.machine));
		/* Cloudpods' CPU_ARCH_X86_64 / CPU_ARCH_AARCH64 are the kernel's names. */
		json_object_set_new(host, "cpu_architecture", json_string(u.machine));
	}
	long page = sysconf(_SC_PAGESIZE);
	if (page > 0)
		json_object_set_new(host, "page_size_kb", json_integer(page / 1024));
	long maxv = kvm_max_vcpus();
	if (maxv > 0)
		json_object_set_new(host, "kvm_cap_max_vcpu", json_integer(maxv));
	json_object_set_new(host, "host_type", json_string("hypervisor"));
	/* The domain type guests get: "qemu" means TCG emulation, several times slower. */
	if (cfg->virt_type)
		json_object_set_new(sys, "virt_type", json_string(cfg->virt_type));
	json_object_set_new(host, "version", json_string(PACKAGE_VERSION));
	json_object_set_new(host, "cpu_count", json_integer(sysconf(_SC_NPROCESSORS_ONLN)));

	_cleanup_free_ char *cpup = path_in(root, "/proc/cpuinfo"), *cpuinfo = NULL;
	if (read_file(cpup, 16 * 1024 * 1024, &cpuinfo, NULL) >= 0) {
		_cleanup_free_ char *model = proc_field(cpuinfo, "model name"),
				    *mhz = proc_field(cpuinfo, "cpu MHz");
		if (model)
			json_object_set_new(host, "cpu_desc", json_string(model));
		if (mhz)
			json_object_set_new(host, "cpu_mhz", json_integer(atol(mhz)));
	}
	_cleanup_free_ char *memp = path_in(root, "/proc/meminfo"), *meminfo = NULL;
	if (read_file(memp, 1024 * 1024, &meminfo, NULL) >= 0) {
		_cleanup_free_ char *total = proc_field(meminfo, "MemTotal");
		if (total) {
			long long mb = atoll(total) / 1024;
			json_object_set_new(host, "mem_size", json_integer(mb));
			/* What the region itself picks when none is given: min(mem/8, 4 GiB). */
			json_object_set_new(host, "mem_reserved", json_integer(MIN(mb / 8, 4096)));
		}
	}

	json_int_t storage_mb = 0, free_mb = 0;
	STRV_FOREACH (r, cfg->local_image_path) {
		struct statvfs sv;
		if (statvfs(*r, &sv) == 0) {
			storage_mb += (json_int_t)(sv.f_blocks * sv.f_frsize / (1024 * 1024));
			free_mb += (json_int_t)(sv.f_bavail * sv.f_frsize / (1024 * 1024));
		}
	}
	json_object_set_new(host, "storage_size", json_integer(storage_mb));
	json_object_set_new(host, "storage_free", json_integer(free_mb));
	json_object_set_new(host, "kvm", json_boolean(access("/dev/kvm", R_OK | W_OK) == 0));

	if (node) {
		if (node->numa_nodes > 0)
			json_object_set_new(host, "node_count", json_integer(node->numa_nodes));
		if (node->libvirt_version[0])
			json_object_set_new(sys, "libvirt_version",
					    json_string(node->libvirt_version));
		if (node->qemu_version[0])
			json_object_set_new(sys, "qemu_version", json_string(node->qemu_version));
		if (node->uri[0])
			json_object_set_new(host, "manager_uri", json_string(node->uri));
	}
	os_release(root, sys);
	json_object_set_new(host, "sys_info", sys);
	*ret = host;
	return 0;
}

void hostinfo_set_access(const struct hostnets *hn, json_t *host)
{
	const char *ip = hostnets_access_ip(hn), *mac = hostnets_access_mac(hn);
	if (ip && mac) {
		json_object_set_new(host, "access_ip", json_string(ip));
		json_object_set_new(host, "access_mac", json_string(mac));
	}
}

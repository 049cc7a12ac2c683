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

/* The leading integer of a /proc value ("2400.000", "16384000 kB"), or -1. */
static int64_t proc_int(const char *v)
{
	if (!v)
		return -1;
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	return end == v || errno || n < 0 ? -1 : (int64_t)n;
}

/* PRETTY_NAME of <root>/etc/os-release (the last one wins), or NULL. */
static int os_release(const char *root, char **ret)
{
	_cleanup_free_ char *p = path_in(root, "/etc/os-release"), *txt = NULL, *os = NULL;
	if (!p)
		return -ENOMEM;
	if (read_file(p, 64 * 1024, &txt, NULL) < 0) {
		*ret = NULL;
		return 0;
	}
	for (char *l = strtok(txt, "\n"); l; l = strtok(NULL, "\n"))
		if (strneq(l, "PRETTY_NAME=", 12)) {
			char *v = l + 12;
			size_t n = strlen(v);
			if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
				v[n - 1] = 0;
				v++;
			}
			free(os);
			if (!(os = strdup(v)))
				return -ENOMEM;
		}
	*ret = TAKE_PTR(os);
	return 0;
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

int hostinfo_storage(const char *root, struct host_storage *ret)
{
	struct statvfs sv;
	struct stat st, rst;
	*ret = (struct host_storage){0};
	if (statvfs(root, &sv) < 0 || stat(root, &st) < 0)
		return negative_errno();
	struct host_storage s = {
	    .known = true,
	    .capacity_mb = (int64_t)(sv.f_blocks * sv.f_frsize / (1024 * 1024)),
	    .used_mb = (int64_t)((sv.f_blocks - sv.f_bfree) * sv.f_frsize / (1024 * 1024)),
	    .free_mb = (int64_t)(sv.f_bavail * sv.f_frsize / (1024 * 1024)),
	};
	/* The block device's queue/rotational; a partition's queue is its parent's. Not a block
	 * device (tmpfs, overlay): no spinning disk under it. */
	char p[PATH_MAX];
	_cleanup_free_ char *rot = NULL;
	snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/queue/rotational", major(st.st_dev),
		 minor(st.st_dev));
	if (read_file(p, 16, &rot, NULL) < 0) {
		snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/../queue/rotational", major(st.st_dev),
			 minor(st.st_dev));
		(void)read_file(p, 16, &rot, NULL);
	}
	s.rotational = rot && rot[0] == '1';
	s.is_root_partition = stat("/", &rst) == 0 && rst.st_dev == st.st_dev;
	*ret = s;
	return 0;
}

struct host_info *host_info_free(struct host_info *hi)
{
	if (!hi)
		return NULL;
	free(hi->name);
	free(hi->cpu_architecture);
	free(hi->cpu_desc);
	free(hi->libvirt_uri);
	free(hi->sys.kernel);
	free(hi->sys.arch);
	free(hi->sys.virt_type);
	free(hi->sys.libvirt_version);
	free(hi->sys.qemu_version);
	free(hi->sys.os);
	free(hi->storages);
	free(hi->access_ip);
	free(hi->access_mac);
	free(hi);
	return NULL;
}

/* strdup of s unless NULL or empty; false on OOM. */
static bool dup_opt(char **dst, const char *s)
{
	if (isempty(s))
		return true;
	return (*dst = strdup(s)) != NULL;
}

int hostinfo_collect(const struct config *cfg, const char *root, const struct virt_node_facts *node,
		     struct host_info **ret)
{
	_cleanup_(host_info_freep) struct host_info *hi = calloc(1, sizeof(*hi));
	if (!hi)
		return -ENOMEM;
	hi->cpu_mhz = hi->mem_size_mb = hi->mem_reserved_mb = hi->page_size_kb = -1;
	hi->kvm_cap_max_vcpu = hi->node_count = -1;
	bool ok = true;
	struct utsname u;
	if (uname(&u) == 0)
		ok = ok && dup_opt(&hi->name, u.nodename) && dup_opt(&hi->sys.kernel, u.release) &&
		     dup_opt(&hi->sys.arch, u.machine) && dup_opt(&hi->cpu_architecture, u.machine);
	long page = sysconf(_SC_PAGESIZE);
	if (page > 0)
		hi->page_size_kb = page / 1024;
	long maxv = kvm_max_vcpus();
	if (maxv > 0)
		hi->kvm_cap_max_vcpu = maxv;
	ok = ok && dup_opt(&hi->sys.virt_type, cfg->virt_type);
	hi->cpu_count = sysconf(_SC_NPROCESSORS_ONLN);

	_cleanup_free_ char *cpup = path_in(root, "/proc/cpuinfo"), *cpuinfo = NULL;
	if (cpup && read_file(cpup, 16 * 1024 * 1024, &cpuinfo, NULL) >= 0) {
		_cleanup_free_ char *mhz = proc_field(cpuinfo, "cpu MHz");
		hi->cpu_desc = proc_field(cpuinfo, "model name");
		hi->cpu_mhz = proc_int(mhz);
	}
	_cleanup_free_ char *memp = path_in(root, "/proc/meminfo"), *meminfo = NULL;
	if (memp && read_file(memp, 1024 * 1024, &meminfo, NULL) >= 0) {
		_cleanup_free_ char *total = proc_field(meminfo, "MemTotal");
		int64_t kb = proc_int(total);
		if (kb >= 0) {
			hi->mem_size_mb = kb / 1024;
			hi->mem_reserved_mb = MIN(hi->mem_size_mb / 8, 4096);
		}
	}

	size_t n = strv_length(cfg->local_image_path);
	if (n > 0 && !(hi->storages = calloc(n, sizeof(*hi->storages))))
		return -ENOMEM;
	hi->n_storages = n;
	for (size_t i = 0; i < n; i++) {
		struct host_storage *s = &hi->storages[i];
		if (hostinfo_storage(cfg->local_image_path[i], s) < 0)
			continue;
		hi->storage_size_mb += s->capacity_mb;
		hi->storage_free_mb += s->free_mb;
	}
	hi->kvm = access("/dev/kvm", R_OK | W_OK) == 0;

	if (node) {
		if (node->numa_nodes > 0)
			hi->node_count = node->numa_nodes;
		ok = ok && dup_opt(&hi->sys.libvirt_version, node->libvirt_version) &&
		     dup_opt(&hi->sys.qemu_version, node->qemu_version) &&
		     dup_opt(&hi->libvirt_uri, node->uri);
	}
	if (!ok || !cpup || !memp || os_release(root, &hi->sys.os) < 0)
		return -ENOMEM;
	*ret = TAKE_PTR(hi);
	return 0;
}

int hostinfo_set_access(const struct hostnets *hn, struct host_info *hi)
{
	const char *ip = hostnets_access_ip(hn), *mac = hostnets_access_mac(hn);
	if (!ip || !mac)
		return 0;
	_cleanup_free_ char *i = strdup(ip), *m = strdup(mac);
	if (!i || !m)
		return -ENOMEM;
	free(hi->access_ip);
	free(hi->access_mac);
	hi->access_ip = TAKE_PTR(i);
	hi->access_mac = TAKE_PTR(m);
	return 0;
}

/* Sets key to a string unless s is NULL; false on OOM. */
static bool set_str(json_t *o, const char *key, const char *s)
{
	return !s || json_object_set_new(o, key, json_string(s)) == 0;
}

static bool set_int(json_t *o, const char *key, int64_t v)
{
	return json_object_set_new(o, key, json_integer((json_int_t)v)) == 0;
}

json_t *host_info_to_json(const struct host_info *hi)
{
	json_auto_t *host = json_object(), *sys = json_object();
	if (!host || !sys)
		return NULL;
	bool ok =
	    set_str(host, "name", hi->name) &&
	    set_str(host, "cpu_architecture", hi->cpu_architecture) &&
	    (hi->page_size_kb < 0 || set_int(host, "page_size_kb", hi->page_size_kb)) &&
	    (hi->kvm_cap_max_vcpu <= 0 ||
	     set_int(host, "kvm_cap_max_vcpu", hi->kvm_cap_max_vcpu)) &&
	    set_str(host, "host_type", "hypervisor") && set_str(host, "version", PACKAGE_VERSION) &&
	    set_int(host, "cpu_count", hi->cpu_count) && set_str(host, "cpu_desc", hi->cpu_desc) &&
	    (hi->cpu_mhz < 0 || set_int(host, "cpu_mhz", hi->cpu_mhz)) &&
	    (hi->mem_size_mb < 0 || set_int(host, "mem_size", hi->mem_size_mb)) &&
	    (hi->mem_reserved_mb < 0 || set_int(host, "mem_reserved", hi->mem_reserved_mb)) &&
	    set_int(host, "storage_size", hi->storage_size_mb) &&
	    set_int(host, "storage_free", hi->storage_free_mb) &&
	    json_object_set_new(host, "kvm", json_boolean(hi->kvm)) == 0 &&
	    (hi->node_count <= 0 || set_int(host, "node_count", hi->node_count)) &&
	    set_str(host, "manager_uri", hi->libvirt_uri);
	ok = ok && set_str(sys, "kernel", hi->sys.kernel) && set_str(sys, "arch", hi->sys.arch) &&
	     set_str(sys, "virt_type", hi->sys.virt_type) &&
	     set_str(sys, "libvirt_version", hi->sys.libvirt_version) &&
	     set_str(sys, "qemu_version", hi->sys.qemu_version) && set_str(sys, "os", hi->sys.os);
	ok = ok && json_object_set(host, "sys_info", sys) == 0;
	if (hi->access_ip && hi->access_mac)
		ok = ok && set_str(host, "access_ip", hi->access_ip) &&
		     set_str(host, "access_mac", hi->access_mac);
	return ok ? TAKE_PTR(host) : NULL;
}

void hostinfo_stats(const char *root, struct host_cpu_sample *prev, struct host_stats *ret)
{
	struct host_stats st = {.memory_used_mb = -1, .cpu_usage_percent = -1};
	_cleanup_free_ char *memp = path_in(root, "/proc/meminfo"),
			    *statp = path_in(root, "/proc/stat"), *mem = NULL, *stat = NULL;
	if (memp && read_file(memp, 65536, &mem, NULL) >= 0) {
		_cleanup_free_ char *t = proc_field(mem, "MemTotal"),
				    *a = proc_field(mem, "MemAvailable");
		int64_t total = proc_int(t), avail = proc_int(a);
		if (total >= 0 && avail >= 0 && avail <= total)
			st.memory_used_mb = (total - avail) / 1024;
	}
	if (statp && read_file(statp, 65536, &stat, NULL) >= 0 && strneq(stat, "cpu ", 4)) {
		unsigned long long v[8] = {0};
		if (sscanf(stat + 4, "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
			   &v[3], &v[4], &v[5], &v[6], &v[7]) >= 4) {
			uint64_t total = 0, idle = v[3] + v[4];
			for (size_t i = 0; i < 8; i++)
				total += v[i];
			uint64_t dt = total - prev->total, di = idle - prev->idle;
			if (total > prev->total && di <= dt)
				st.cpu_usage_percent = 100.0 * (double)(dt - di) / (double)dt;
			*prev = (struct host_cpu_sample){total, idle};
		}
	}
	*ret = st;
}

#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/hostinfo.h"
#include "agent/modules.h"
#include "agent/report.h"
#include "agent/tasks.h"
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

/* The first up, non-loopback interface with an IPv4 address: the host's access address. */
static void access_address(json_t *host)
{
	struct ifaddrs *ifs;
	if (getifaddrs(&ifs) < 0)
		return;
	for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET ||
		    (i->ifa_flags & IFF_LOOPBACK) || !(i->ifa_flags & IFF_UP))
			continue;
		char ip[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, ip, sizeof(ip));
		json_object_set_new(host, "access_ip", json_string(ip));
		_cleanup_free_ char *p = strjoin("/sys/class/net/", i->ifa_name, "/address"),
				    *mac = NULL;
		if (p && read_file(p, 64, &mac, NULL) >= 0) {
			mac[strcspn(mac, "\n")] = 0;
			json_object_set_new(host, "access_mac", json_string(mac));
		}
		json_object_set_new(host, "access_interface", json_string(i->ifa_name));
		break;
	}
	freeifaddrs(ifs);
}

int hostinfo_collect(const struct config *cfg, const char *root, virConnectPtr conn, json_t **ret)
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
	}
	json_object_set_new(host, "host_type", json_string("kvm"));
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
		if (total)
			json_object_set_new(host, "mem_size", json_integer(atoll(total) / 1024));
	}
	json_object_set_new(host, "mem_reserved", json_integer(0));

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
	access_address(host);

	if (conn) {
		virNodeInfo ni;
		if (virNodeGetInfo(conn, &ni) == 0)
			json_object_set_new(host, "node_count", json_integer(ni.nodes));
		unsigned long lv = 0;
		if (virConnectGetLibVersion(conn, &lv) == 0)
			json_object_set_new(sys, "libvirt_version",
					    json_sprintf("%lu.%lu.%lu", lv / 1000000,
							 (lv / 1000) % 1000, lv % 1000));
		_cleanup_free_ char *uri = virConnectGetURI(conn);
		if (uri)
			json_object_set_new(host, "manager_uri", json_string(uri));
	}
	os_release(root, sys);
	json_object_set_new(host, "sys_info", sys);
	*ret = host;
	return 0;
}

struct sync {
	struct agent *a;
	op_done_fn cb;
	void *userdata;
	json_t *host;
	int r;
};

static void sync_work(void *userdata)
{
	struct sync *s = userdata;
	virConnectPtr conn = virt_conn_ref(s->a->virt);
	s->r = hostinfo_collect(&s->a->cfg, "/", conn, &s->host);
	if (conn)
		virConnectClose(conn);
}

static void sync_done(void *userdata)
{
	struct sync *s = userdata;
	struct op_reply reply;
	if (s->r < 0 || !s->host)
		reply = (struct op_reply){500, op_error_body(500, "HostInfoError",
							     "cannot read host information: %s",
							     strerror(s->r < 0 ? -s->r : EIO))};
	else {
		if (s->a->modules) {
			json_t *m = agent_modules_json(s->a->modules);
			json_object_set(s->host, "kernel_modules", json_object_get(m, "modules"));
			json_decref(m);
		}
		reply = (struct op_reply){200, json_pack("{s:O}", "host", s->host)};
		report_host_info(s->a->report, s->host);
		log_info("Host information re-read");
	}
	s->cb(&reply, s->userdata);
	json_decref(reply.body);
	json_decref(s->host);
	free(s);
}

int hostinfo_sync(struct agent *a, const char *hid, op_done_fn cb, void *userdata)
{
	struct sync *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	*s = (struct sync){.a = a, .cb = cb, .userdata = userdata, .r = -ECANCELED};
	int r = tasks_submit(a->tasks, "host-info", sync_work, sync_done, s);
	if (r < 0) {
		s->r = r;
		sync_done(s);
	}
	return 0;
}

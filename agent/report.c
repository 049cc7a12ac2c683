#include <dirent.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/guests.h"
#include "agent/hostinfo.h"
#include "agent/metrics.h"
#include "agent/outbox.h"
#include "agent/region.h"
#include "agent/report.h"
#include "agent/tasks.h"
#include "agent/virt.h"
#include "common/fs.h"
#include "common/http-client.h"
#include "common/log.h"
#include "common/macros.h"

#define USEC_PER_SEC		     1000000ULL
#define REQUEST_TIMEOUT_MS	     15000
#define OFFLINE_TIMEOUT_MS	     10000
#define BACKOFF_MIN_USEC	     (1 * USEC_PER_SEC)
#define BACKOFF_MAX_USEC	     (60 * USEC_PER_SEC)
#define OUTBOX_BACKOFF_MAX	     (30 * USEC_PER_SEC)
#define SESSION_POLL_USEC	     (1 * USEC_PER_SEC)
#define PING_RETRY_USEC		     (20 * USEC_PER_SEC)
#define HOST_ID_MAX		     256
#define PING_FAILURES_METRIC	     "hostagent_region_ping_failures_total"
#define OUTBOX_METRIC		     "hostagent_region_outbox_pending"
#define OUTBOX_WRITE_FAILURES_METRIC "hostagent_region_outbox_write_failures_total"

enum reg_step {
	REG_IDLE,
	REG_COLLECT,
	REG_UPDATE,
	REG_LOOKUP,
	REG_CREATE,
	REG_NETIF,
	REG_ONLINE,
};

/* A job on the agent's worker pool; rp is cleared when the reporter goes first. */
struct report_job {
	struct report *rp; /* loop thread only */
	struct agent *a;   /* for the worker: immutable config, libvirt connection */
	bool stats;
	json_t *result; /* {"host": hostinfo, "nics": [...]} or the ping body */
	int r;
	uint64_t cpu_total, cpu_idle; /* stats: previous sample in, current out */
};

struct report {
	struct agent *a;
	bool enabled;
	bool stopping;
	struct outbox *outbox;
	char *id_path;
	char *host_id;
	bool registered;
	char *last_error;

	enum reg_step step;
	json_t *host_body; /* {"host": {...}} */
	json_t *nics;	   /* [{"mac", "ip", "ifname"}] */
	size_t nic_index;
	unsigned reg_failures;
	sd_event_source *reg_timer;
	struct region_http *reg_http;
	struct report_job *collect_job;
	struct region_http *sync_http;

	sd_event_source *ping_timer;
	struct region_http *ping_http;
	struct report_job *stats_job;
	uint64_t cpu_total, cpu_idle;

	sd_event_source *outbox_timer;
	struct region_http *outbox_http;
	char *outbox_sid;
	uint64_t outbox_seq;
	unsigned outbox_failures;
	bool outbox_waiting;		     /* backing off after a failed delivery */
	unsigned long outbox_write_failures; /* already counted in the metric */

	struct region_http *offline_http;
};

static uint64_t backoff(unsigned failures, uint64_t max)
{
	uint64_t d = BACKOFF_MIN_USEC;
	for (unsigned i = 1; i < failures && d < max; i++)
		d *= 2;
	return MIN(d, max);
}

static int arm(struct report *rp, sd_event_source **s, uint64_t after, sd_event_time_handler_t fn)
{
	if (!*s)
		return sd_event_add_time_relative(rp->a->event, s, CLOCK_MONOTONIC, after,
						  USEC_PER_SEC / 10, fn, rp);
	int k = sd_event_source_set_time_relative(*s, after);
	if (k < 0)
		return k;
	return sd_event_source_set_enabled(*s, SD_EVENT_ONESHOT);
}

static void set_error(struct report *rp, const char *fmt, ...) _printf_(2, 3);
static void set_error(struct report *rp, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	free(rp->last_error);
	rp->last_error = strdup(buf);
}

/* ---- pure helpers ---- */

const char *report_power_state(const char *status)
{
	if (streq_ptr(status, "running") || streq_ptr(status, "suspend") ||
	    streq_ptr(status, "stopping"))
		return "on";
	return "off";
}

int report_host_body(json_t *hostinfo, const struct config *cfg, json_t **ret)
{
	const char *ip = json_string_value(json_object_get(hostinfo, "access_ip"));
	const char *mac = json_string_value(json_object_get(hostinfo, "access_mac"));
	if (isempty(ip) || isempty(mac))
		return -ENODATA;
	json_auto_t *host = json_object();
	if (!host)
		return -ENOMEM;
	static const char *const strings[] = {"name", "cpu_desc", "version"};
	for (size_t i = 0; i < ELEMENTSOF(strings); i++) {
		json_t *v = json_object_get(hostinfo, strings[i]);
		if (json_is_string(v))
			json_object_set(host, strings[i], v);
	}
	static const char *const ints[] = {"cpu_count", "cpu_mhz", "mem_size", "mem_reserved",
					   "storage_size"};
	for (size_t i = 0; i < ELEMENTSOF(ints); i++) {
		json_t *v = json_object_get(hostinfo, ints[i]);
		json_object_set_new(host, ints[i],
				    json_integer(json_is_integer(v) ? json_integer_value(v) : 0));
	}
	json_t *nodes = json_object_get(hostinfo, "node_count");
	json_object_set_new(host, "node_count",
			    json_integer(json_is_integer(nodes) && json_integer_value(nodes) > 0
					     ? json_integer_value(nodes)
					     : 1));
	json_object_set_new(host, "access_ip", json_string(ip));
	json_object_set_new(host, "access_mac", json_string(mac));
	/* The region calls the agent at manager_uri (Cloudpods: the host service's URL), not
	 * libvirt's URI: that one goes to sys_info. */
	json_object_set_new(host, "manager_uri",
			    json_sprintf("%s://%s:%d",
					 isempty(cfg->tls_cert_file) ? "http" : "https", ip,
					 cfg->port));
	json_object_set_new(host, "host_type", json_string("kvm"));
	json_t *sys = json_object_get(hostinfo, "sys_info");
	json_t *s = json_is_object(sys) ? json_deep_copy(sys) : json_object();
	const char *luri = json_string_value(json_object_get(hostinfo, "manager_uri"));
	if (s && luri)
		json_object_set_new(s, "libvirt_uri", json_string(luri));
	if (s && json_is_boolean(json_object_get(hostinfo, "kvm")))
		json_object_set(s, "kvm", json_object_get(hostinfo, "kvm"));
	json_object_set_new(host, "sys_info", s ? s : json_object());
	if (!isempty(cfg->zone))
		json_object_set_new(host, "zone", json_string(cfg->zone));
	json_t *body = json_pack("{s:O}", "host", host);
	if (!body)
		return -ENOMEM;
	*ret = body;
	return 0;
}

/* ---- worker jobs (agent pool) ---- */

static bool nic_is_virtual(const char *name)
{
	static const char *const prefixes[] = {"tap", "vnet", "veth", "macvtap", "tun"};
	for (size_t i = 0; i < ELEMENTSOF(prefixes); i++)
		if (strneq(name, prefixes[i], strlen(prefixes[i])))
			return true;
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "/sys/class/net/%s/tun_flags", name);
	return access(p, F_OK) == 0;
}

static json_t *collect_nics(void)
{
	json_t *nics = json_array();
	struct ifaddrs *ifa = NULL;
	(void)getifaddrs(&ifa);
	DIR *d = opendir("/sys/class/net");
	struct dirent *de;
	while (d && nics && (de = readdir(d))) {
		if (de->d_name[0] == '.' || nic_is_virtual(de->d_name))
			continue;
		char p[PATH_MAX];
		_cleanup_free_ char *type = NULL, *mac = NULL;
		snprintf(p, sizeof(p), "/sys/class/net/%s/type", de->d_name);
		/* ARPHRD_ETHER only: loopback (772) and tunnels have no MAC to report. */
		if (read_file(p, 64, &type, NULL) < 0 || strtol(type, NULL, 10) != 1)
			continue;
		snprintf(p, sizeof(p), "/sys/class/net/%s/address", de->d_name);
		if (read_file(p, 64, &mac, NULL) < 0)
			continue;
		mac[strcspn(mac, "\n")] = 0;
		if (strlen(mac) != 17 || streq(mac, "00:00:00:00:00:00"))
			continue;
		json_t *nic = json_pack("{s:s,s:s}", "mac", mac, "ifname", de->d_name);
		for (struct ifaddrs *i = ifa; nic && i; i = i->ifa_next) {
			if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET ||
			    !streq(i->ifa_name, de->d_name))
				continue;
			char ip[INET_ADDRSTRLEN];
			if (inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, ip,
				      sizeof(ip))) {
				json_object_set_new(nic, "ip", json_string(ip));
				break;
			}
		}
		if (nic)
			json_array_append_new(nics, nic);
	}
	if (d)
		closedir(d);
	if (ifa)
		freeifaddrs(ifa);
	return nics;
}

static void collect_work(void *userdata)
{
	struct report_job *j = userdata;
	struct agent *a = j->a;
	virConnectPtr conn = virt_conn_ref(a->virt);
	json_t *host = NULL;
	j->r = hostinfo_collect(&a->cfg, "/", conn, &host);
	if (conn)
		virConnectClose(conn);
	if (j->r >= 0)
		j->result = json_pack("{s:o,s:o}", "host", host, "nics", collect_nics());
}

static json_int_t meminfo_kb(const char *text, const char *key)
{
	const char *p = strstr(text, key);
	if (!p)
		return -1;
	p += strlen(key);
	char *end;
	long long v = strtoll(p, &end, 10);
	return end == p || v < 0 ? -1 : (json_int_t)v;
}

static void stats_work(void *userdata)
{
	struct report_job *j = userdata;
	struct agent *a = j->a;
	json_t *host = json_object();
	_cleanup_free_ char *mem = NULL, *stat = NULL;
	if (read_file("/proc/meminfo", 65536, &mem, NULL) >= 0) {
		json_int_t total = meminfo_kb(mem, "MemTotal:"),
			   avail = meminfo_kb(mem, "MemAvailable:");
		if (total >= 0 && avail >= 0 && avail <= total)
			json_object_set_new(host, "memory_used_mb",
					    json_integer((total - avail) / 1024));
	}
	if (read_file("/proc/stat", 65536, &stat, NULL) >= 0 && strneq(stat, "cpu ", 4)) {
		unsigned long long v[8] = {0};
		if (sscanf(stat + 4, "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
			   &v[3], &v[4], &v[5], &v[6], &v[7]) >= 4) {
			uint64_t total = 0, idle = v[3] + v[4];
			for (size_t i = 0; i < 8; i++)
				total += v[i];
			uint64_t dt = total - j->cpu_total, di = idle - j->cpu_idle;
			if (total > j->cpu_total && di <= dt)
				json_object_set_new(
				    host, "cpu_usage_percent",
				    json_real(100.0 * (double)(dt - di) / (double)dt));
			j->cpu_total = total;
			j->cpu_idle = idle;
		}
	}
	/* Cloudpods storage_stats: per local storage its capacity and use, in MiB. */
	json_t *storages = json_array();
	STRV_FOREACH (root, a->cfg.local_image_path) {
		struct statvfs sv;
		if (statvfs(*root, &sv) < 0)
			continue;
		json_int_t total = (json_int_t)(sv.f_blocks * sv.f_frsize / (1024 * 1024));
		json_int_t free_mb = (json_int_t)(sv.f_bavail * sv.f_frsize / (1024 * 1024));
		json_array_append_new(storages, json_pack("{s:s,s:I,s:I,s:I}", "mount_point", *root,
							  "capacity_mb", total, "used_mb",
							  total - free_mb, "free_mb", free_mb));
	}
	json_object_set_new(host, "storage_stats", storages);
	json_object_set_new(host, "with_data", json_true());
	j->result = json_pack("{s:o}", "host", host);
	j->r = j->result ? 0 : -ENOMEM;
}

/* ---- HTTP ---- */

static int submit(struct report *rp, const char *method, const char *path, json_t *body,
		  long timeout_ms, region_http_done_fn done, struct region_http **ret)
{
	const char *token = region_token(rp->a->region);
	const char *base = region_compute_url(rp->a->region);
	if (!token || !base)
		return -ENOTCONN;
	_cleanup_free_ char *url = NULL, *hdr = NULL, *data = NULL;
	if (body && !(data = json_dumps(body, JSON_COMPACT)))
		return -ENOMEM;
	if (asprintf_safe(&url, "%s%s", base, path) < 0 ||
	    asprintf_safe(&hdr, "X-Auth-Token: %s", token) < 0)
		return -ENOMEM;
	char *headers[] = {hdr, NULL};
	int k = region_http_submit(rp->a->region, method, url, headers, data, timeout_ms, done, rp,
				   ret);
	explicit_bzero(hdr, strlen(hdr));
	return k;
}

/* 0 for a 2xx answer; otherwise a negative errno (the HTTP status in *ret_status). */
static int answer(struct report *rp, int err, const struct http_response *resp, long *ret_status)
{
	*ret_status = resp ? resp->status : 0;
	if (err < 0)
		return err;
	if (resp->status >= 200 && resp->status < 300)
		return 0;
	if (resp->status == 401)
		region_token_invalid(rp->a->region);
	return resp->status == 404 ? -ENOENT : -EIO;
}

static json_t *answer_json(const struct http_response *resp)
{
	json_error_t jerr;
	return resp && resp->body ? json_loadb(resp->body, resp->body_len, 0, &jerr) : NULL;
}

/* ---- registration ---- */

static void reg_next(struct report *rp);
static void outbox_kick(struct report *rp);
static int ping_schedule(struct report *rp, uint64_t after);

static int on_reg_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct report *rp = userdata;
	rp->step = REG_IDLE;
	reg_next(rp);
	return 0;
}

static void reg_failed(struct report *rp, int err, const char *fmt, ...) _printf_(3, 4);
static void reg_failed(struct report *rp, int err, const char *fmt, ...)
{
	char what[384];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	rp->reg_failures++;
	rp->step = REG_IDLE;
	uint64_t d = backoff(rp->reg_failures, BACKOFF_MAX_USEC);
	if (err)
		set_error(rp, "%s: %s", what, strerror(abs(err)));
	else
		set_error(rp, "%s", what);
	log_warning("Region registration failed (%s), retrying in %llus", rp->last_error,
		    (unsigned long long)(d / USEC_PER_SEC));
	int k = arm(rp, &rp->reg_timer, d, on_reg_timer);
	if (k < 0)
		log_error_errno(k, "Failed to schedule region registration: %m");
}

static int save_host_id(struct report *rp, const char *id)
{
	if (streq_ptr(rp->host_id, id))
		return 0;
	char *c = strdup(id);
	if (!c)
		return -ENOMEM;
	free(rp->host_id);
	rp->host_id = c;
	_cleanup_free_ char *line = strjoin(id, "\n");
	if (!line)
		return -ENOMEM;
	return write_file_atomic(rp->id_path, line, strlen(line), 0600);
}

static void on_reg_done(int err, const struct http_response *resp, void *userdata)
{
	struct report *rp = userdata;
	rp->reg_http = NULL;
	long status;
	int k = answer(rp, err, resp, &status);
	json_auto_t *j = answer_json(resp);
	const char *id = NULL;
	switch (rp->step) {
	case REG_UPDATE:
		if (k == -ENOENT) {
			log_kv(LOG_WARNING,
			       "Region has no host record for the saved id, looking up", "host_id",
			       rp->host_id, NULL);
			free(rp->host_id);
			rp->host_id = NULL;
			rp->step = REG_LOOKUP;
			return reg_next(rp);
		}
		if (k < 0)
			return reg_failed(rp, err < 0 ? err : 0, "PUT /hosts/%s: HTTP %ld",
					  rp->host_id, status);
		rp->step = REG_NETIF;
		rp->nic_index = 0;
		return reg_next(rp);
	case REG_LOOKUP: {
		if (k < 0)
			return reg_failed(rp, err < 0 ? err : 0, "GET /hosts: HTTP %ld", status);
		json_t *hosts = json_object_get(j, "hosts");
		if (!json_is_array(hosts))
			return reg_failed(rp, 0, "GET /hosts: reply without a hosts list");
		if (json_array_size(hosts) == 0) {
			rp->step = REG_CREATE;
			return reg_next(rp);
		}
		id = json_string_value(json_object_get(json_array_get(hosts, 0), "id"));
		if (!outbox_sid_valid(id))
			return reg_failed(rp, 0, "GET /hosts: host record without a usable id");
		k = save_host_id(rp, id);
		if (k < 0)
			return reg_failed(rp, k, "cannot save the host id");
		rp->step = REG_UPDATE;
		return reg_next(rp);
	}
	case REG_CREATE:
		if (k < 0)
			return reg_failed(rp, err < 0 ? err : 0, "POST host: HTTP %ld", status);
		id = json_string_value(json_object_get(json_object_get(j, "host"), "id"));
		if (!outbox_sid_valid(id))
			return reg_failed(rp, 0, "POST host: reply without a usable host id");
		k = save_host_id(rp, id);
		if (k < 0)
			return reg_failed(rp, k, "cannot save the host id");
		log_kv(LOG_INFO, "Host record created in the region", "host_id", id, NULL);
		rp->step = REG_NETIF;
		rp->nic_index = 0;
		return reg_next(rp);
	case REG_NETIF:
		/* A NIC the region already knows answers 4xx: that is fine. */
		if (err < 0 || status >= 500 || status == 401)
			return reg_failed(rp, err < 0 ? err : 0, "add-netif: HTTP %ld", status);
		if (k < 0)
			log_kv(LOG_DEBUG, "Region refused add-netif", "ifname",
			       json_string_value(json_object_get(
				   json_array_get(rp->nics, rp->nic_index), "ifname")),
			       NULL);
		rp->nic_index++;
		return reg_next(rp);
	case REG_ONLINE:
		if (k < 0)
			return reg_failed(rp, err < 0 ? err : 0, "POST /hosts/%s/online: HTTP %ld",
					  rp->host_id, status);
		rp->registered = true;
		rp->reg_failures = 0;
		rp->step = REG_IDLE;
		free(rp->last_error);
		rp->last_error = NULL;
		log_kv(LOG_INFO, "Registered to the region", "host_id", rp->host_id, NULL);
		k = ping_schedule(rp, 0);
		if (k < 0)
			log_error_errno(k, "Failed to schedule the region heartbeat: %m");
		return outbox_kick(rp);
	default:
		return;
	}
}

static void on_collect_done(void *userdata)
{
	struct report_job *j = userdata;
	struct report *rp = j->rp;
	if (rp) {
		rp->collect_job = NULL;
		if (j->r < 0 || !j->result)
			reg_failed(rp, j->r < 0 ? j->r : -ECANCELED,
				   "cannot read host information");
		else {
			json_t *body = NULL;
			int k = report_host_body(json_object_get(j->result, "host"), &rp->a->cfg,
						 &body);
			if (k < 0)
				reg_failed(rp, 0, "host information without access_ip/access_mac");
			else {
				json_decref(rp->host_body);
				rp->host_body = body;
				json_decref(rp->nics);
				rp->nics = json_incref(json_object_get(j->result, "nics"));
				rp->step = rp->host_id ? REG_UPDATE : REG_LOOKUP;
				reg_next(rp);
			}
		}
	}
	json_decref(j->result);
	free(j);
}

static void reg_next(struct report *rp)
{
	if (rp->stopping || rp->reg_http || rp->collect_job)
		return;
	if (rp->step == REG_IDLE) {
		if (!region_token(rp->a->region) || !region_compute_url(rp->a->region)) {
			if (!rp->last_error)
				set_error(rp, "waiting for the keystone session");
			int k = arm(rp, &rp->reg_timer, SESSION_POLL_USEC, on_reg_timer);
			if (k < 0)
				log_error_errno(k, "Failed to schedule region registration: %m");
			return;
		}
		rp->step = REG_COLLECT;
		struct report_job *j = calloc(1, sizeof(*j));
		if (!j)
			return reg_failed(rp, -ENOMEM, "cannot read host information");
		j->rp = rp;
		j->a = rp->a;
		int k = tasks_submit(rp->a->tasks, "host-info", collect_work, on_collect_done, j);
		if (k < 0) {
			free(j);
			return reg_failed(rp, k, "cannot read host information");
		}
		rp->collect_job = j;
		return;
	}
	_cleanup_free_ char *path = NULL;
	json_auto_t *body = NULL;
	const char *method = "POST";
	json_t *host = json_object_get(rp->host_body, "host");
	const char *mac = json_string_value(json_object_get(host, "access_mac"));
	int k = -ENOMEM;
	switch (rp->step) {
	case REG_UPDATE:
		method = "PUT";
		body = json_incref(rp->host_body);
		k = asprintf_safe(&path, "/hosts/%s", rp->host_id);
		break;
	case REG_LOOKUP:
		method = "GET";
		k = asprintf_safe(&path, "/hosts?any_mac=%s", mac);
		break;
	case REG_CREATE:
		body = json_incref(rp->host_body);
		if (isempty(rp->a->cfg.zone))
			k = asprintf_safe(&path, "/hosts");
		else if (!outbox_sid_valid(rp->a->cfg.zone))
			return reg_failed(rp, 0, "zone '%s' cannot be used in a URL",
					  rp->a->cfg.zone);
		else
			k = asprintf_safe(&path, "/zones/%s/hosts", rp->a->cfg.zone);
		break;
	case REG_NETIF:
		if (rp->nic_index >= json_array_size(rp->nics)) {
			rp->step = REG_ONLINE;
			return reg_next(rp);
		}
		body = json_pack("{s:O}", "host", json_array_get(rp->nics, rp->nic_index));
		k = asprintf_safe(&path, "/hosts/%s/add-netif", rp->host_id);
		break;
	case REG_ONLINE:
		body = json_pack("{s:{}}", "host");
		k = asprintf_safe(&path, "/hosts/%s/online", rp->host_id);
		break;
	default:
		return;
	}
	if (k >= 0)
		k = submit(rp, method, path, body, REQUEST_TIMEOUT_MS, on_reg_done, &rp->reg_http);
	if (k < 0)
		reg_failed(rp, k, "%s %s", method, strempty(path));
}

/* ---- heartbeat ---- */

static int on_ping_timer(sd_event_source *s, uint64_t usec, void *userdata);

static int ping_schedule(struct report *rp, uint64_t after)
{
	return arm(rp, &rp->ping_timer, after, on_ping_timer);
}

static uint64_t ping_interval(struct report *rp)
{
	uint64_t base = (uint64_t)MAX(rp->a->cfg.ping_region_interval, 1) * USEC_PER_SEC;
	uint32_t x = 0;
	if (getrandom(&x, sizeof(x), GRND_NONBLOCK) != sizeof(x))
		x = (uint32_t)time(NULL);
	/* +-10% so that many hosts restarted together do not ping in lockstep. */
	uint64_t span = base / 5;
	return base - base / 10 + (span ? (uint64_t)x % span : 0);
}

static void ping_failed(struct report *rp, int err, long status)
{
	metrics_counter_add(rp->a->metrics, PING_FAILURES_METRIC,
			    "Heartbeats to the region that failed", NULL, 1);
	if (err < 0)
		log_warning_errno(err, "Region heartbeat failed, retrying in 20s: %m");
	else
		log_warning("Region heartbeat failed with HTTP %ld, retrying in 20s", status);
	int k = ping_schedule(rp, PING_RETRY_USEC);
	if (k < 0)
		log_error_errno(k, "Failed to schedule the region heartbeat: %m");
}

static void on_ping_done(int err, const struct http_response *resp, void *userdata)
{
	struct report *rp = userdata;
	rp->ping_http = NULL;
	long status;
	int k = answer(rp, err, resp, &status);
	if (k == -ENOENT) {
		/* The host record is gone (deleted in the region): register again. */
		log_warning("Region does not know host %s any more, registering again",
			    rp->host_id);
		metrics_counter_add(rp->a->metrics, PING_FAILURES_METRIC,
				    "Heartbeats to the region that failed", NULL, 1);
		rp->registered = false;
		free(rp->host_id);
		rp->host_id = NULL;
		set_error(rp, "host record deleted in the region");
		rp->step = REG_IDLE;
		return reg_next(rp);
	}
	if (k < 0)
		return ping_failed(rp, err, status);
	log_debug("Region heartbeat delivered");
	k = ping_schedule(rp, ping_interval(rp));
	if (k < 0)
		log_error_errno(k, "Failed to schedule the region heartbeat: %m");
}

static void on_stats_done(void *userdata)
{
	struct report_job *j = userdata;
	struct report *rp = j->rp;
	if (rp) {
		rp->stats_job = NULL;
		rp->cpu_total = j->cpu_total;
		rp->cpu_idle = j->cpu_idle;
		json_auto_t *body =
		    j->result ? json_incref(j->result) : json_pack("{s:{}}", "host");
		_cleanup_free_ char *path = NULL;
		int k = asprintf_safe(&path, "/hosts/%s/ping", rp->host_id);
		if (k >= 0 && body)
			k = submit(rp, "POST", path, body, REQUEST_TIMEOUT_MS, on_ping_done,
				   &rp->ping_http);
		if (k < 0)
			ping_failed(rp, k, 0);
	}
	json_decref(j->result);
	free(j);
}

static int on_ping_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct report *rp = userdata;
	if (rp->stopping || !rp->registered || rp->ping_http || rp->stats_job)
		return 0;
	struct report_job *j = calloc(1, sizeof(*j));
	if (!j) {
		ping_failed(rp, -ENOMEM, 0);
		return 0;
	}
	*j = (struct report_job){.rp = rp,
				 .a = rp->a,
				 .stats = true,
				 .cpu_total = rp->cpu_total,
				 .cpu_idle = rp->cpu_idle};
	int k = tasks_submit(rp->a->tasks, "host-stats", stats_work, on_stats_done, j);
	if (k < 0) {
		free(j);
		ping_failed(rp, k, 0);
		return 0;
	}
	rp->stats_job = j;
	return 0;
}

/* ---- guest status outbox ---- */

static int on_outbox_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct report *rp = userdata;
	rp->outbox_waiting = false;
	outbox_kick(rp);
	return 0;
}

static void outbox_gauge(struct report *rp)
{
	metrics_gauge_set(rp->a->metrics, OUTBOX_METRIC,
			  "Guest status changes not yet accepted by the region", NULL,
			  (double)outbox_size(rp->outbox));
	/* The writer thread counts its failures; they reach the metric on the next change. */
	unsigned long f = outbox_write_failures(rp->outbox);
	metrics_counter_add(rp->a->metrics, OUTBOX_WRITE_FAILURES_METRIC,
			    "Outbox files that could not be written or removed (the status is "
			    "still delivered, but would not survive a restart)",
			    NULL, (double)(f - rp->outbox_write_failures));
	rp->outbox_write_failures = f;
}

static void outbox_retry(struct report *rp)
{
	rp->outbox_failures++;
	rp->outbox_waiting = true;
	int k = arm(rp, &rp->outbox_timer, backoff(rp->outbox_failures, OUTBOX_BACKOFF_MAX),
		    on_outbox_timer);
	if (k < 0)
		log_error_errno(k, "Failed to schedule guest status delivery: %m");
}

static void on_outbox_done(int err, const struct http_response *resp, void *userdata)
{
	struct report *rp = userdata;
	rp->outbox_http = NULL;
	_cleanup_free_ char *sid = TAKE_PTR(rp->outbox_sid);
	long status;
	int k = answer(rp, err, resp, &status);
	bool retry = err < 0 || status >= 500 || status == 401 || status == 408 || status == 429;
	if (k < 0 && retry) {
		if (err < 0)
			log_warning_errno(err, "Guest status for %s not delivered, kept: %m", sid);
		else
			log_warning("Guest status for %s not delivered (HTTP %ld), kept", sid,
				    status);
		return outbox_retry(rp);
	}
	if (k < 0)
		log_kv(LOG_WARNING, "Region refused a guest status, dropped", "sid", sid, "status",
		       status == 404 ? "404 (unknown server)" : "4xx", NULL);
	else
		log_kv(LOG_DEBUG, "Guest status delivered", "sid", sid, NULL);
	rp->outbox_failures = 0;
	k = outbox_ack(rp->outbox, sid, rp->outbox_seq);
	if (k < 0)
		log_error_errno(k, "Failed to remove the outbox entry of %s: %m", sid);
	outbox_gauge(rp);
	outbox_kick(rp);
}

static void outbox_kick(struct report *rp)
{
	if (!rp->enabled || rp->stopping || !rp->registered || rp->outbox_http ||
	    rp->outbox_waiting)
		return;
	const struct outbox_entry *e = outbox_next(rp->outbox, NULL);
	if (!e)
		return;
	json_auto_t *body = outbox_entry_body(e);
	_cleanup_free_ char *path = NULL;
	char *sid = strdup(e->sid);
	int k = body && sid ? asprintf_safe(&path, "/servers/%s/status", e->sid) : -ENOMEM;
	if (k >= 0)
		k = submit(rp, "POST", path, body, REQUEST_TIMEOUT_MS, on_outbox_done,
			   &rp->outbox_http);
	if (k < 0) {
		free(sid);
		log_warning_errno(k, "Guest status delivery not started: %m");
		return outbox_retry(rp);
	}
	rp->outbox_sid = sid;
	rp->outbox_seq = e->seq;
}

static void on_guest_state(const char *sid, const char *status, void *ud)
{
	struct report *rp = ud;
	if (!rp->enabled || !outbox_sid_valid(sid))
		return;
	if (!status) {
		/* Deleted: a status still waiting would describe a server this host no longer
		 * has. The region learns of the delete from the task callback. */
		if (outbox_drop(rp->outbox, sid) > 0)
			log_kv(LOG_INFO, "Pending guest status dropped, the guest was deleted",
			       "sid", sid, NULL);
		/* A delivery of its status still queued in the region client is not sent. */
		if (rp->outbox_http && streq_ptr(rp->outbox_sid, sid)) {
			region_http_cancel(rp->outbox_http);
			rp->outbox_http = NULL;
			free(rp->outbox_sid);
			rp->outbox_sid = NULL;
		}
		outbox_gauge(rp);
		return outbox_kick(rp);
	}
	int k = outbox_put(rp->outbox, sid, status, report_power_state(status));
	if (k < 0) {
		log_error_errno(k, "Failed to record the status of guest %s for the region: %m",
				sid);
		return;
	}
	outbox_gauge(rp);
	outbox_kick(rp);
}

/* ---- host sync, stop, readiness ---- */

static void on_sync_done(int err, const struct http_response *resp, void *userdata)
{
	struct report *rp = userdata;
	rp->sync_http = NULL;
	long status;
	int k = answer(rp, err, resp, &status);
	if (k < 0)
		log_warning("Host information not re-reported to the region (%s)",
			    err < 0 ? strerror(-err) : "region refused it");
	else
		log_info("Host information re-reported to the region");
}

void report_host_info(struct report *rp, json_t *hostinfo)
{
	if (!rp || !rp->enabled || rp->stopping)
		return;
	json_t *body = NULL;
	int k = report_host_body(hostinfo, &rp->a->cfg, &body);
	if (k < 0)
		return;
	json_decref(rp->host_body);
	rp->host_body = body;
	if (!rp->registered || rp->sync_http)
		return;
	_cleanup_free_ char *path = NULL;
	k = asprintf_safe(&path, "/hosts/%s", rp->host_id);
	if (k >= 0)
		k = submit(rp, "PUT", path, body, REQUEST_TIMEOUT_MS, on_sync_done, &rp->sync_http);
	if (k < 0)
		log_warning_errno(k, "Host information not re-reported to the region: %m");
}

static void on_offline_done(int err, const struct http_response *resp, void *userdata)
{
	struct report *rp = userdata;
	rp->offline_http = NULL;
	long status;
	int k = answer(rp, err, resp, &status);
	if (k < 0 && err < 0)
		log_warning_errno(err, "Region not told that the host goes offline: %m");
	else if (k < 0)
		log_warning("Region refused offline (HTTP %ld)", status);
	else
		log_kv(LOG_INFO, "Host marked offline in the region", "host_id", rp->host_id, NULL);
}

void report_stop(struct report *rp)
{
	if (!rp || !rp->enabled || rp->stopping)
		return;
	rp->stopping = true;
	(void)sd_event_source_set_enabled(rp->reg_timer, SD_EVENT_OFF);
	(void)sd_event_source_set_enabled(rp->ping_timer, SD_EVENT_OFF);
	(void)sd_event_source_set_enabled(rp->outbox_timer, SD_EVENT_OFF);
	/* Undelivered statuses stay on disk for the next start. */
	region_http_cancel(rp->outbox_http);
	rp->outbox_http = NULL;
	if (!rp->registered)
		return;
	long timeout = OFFLINE_TIMEOUT_MS;
	if (rp->a->cfg.shutdown_timeout > 0)
		timeout = MIN(timeout, (long)rp->a->cfg.shutdown_timeout * 1000);
	_cleanup_free_ char *path = NULL;
	json_auto_t *body = json_pack("{s:{}}", "host");
	int k = asprintf_safe(&path, "/hosts/%s/offline", rp->host_id);
	if (k >= 0 && body)
		k = submit(rp, "POST", path, body, timeout, on_offline_done, &rp->offline_http);
	if (k < 0)
		log_warning_errno(k, "Region not told that the host goes offline: %m");
}

bool report_busy(struct report *rp)
{
	return rp && rp->offline_http;
}

void report_reasons(struct report *rp, json_t *reasons)
{
	if (!rp || !rp->enabled || rp->registered)
		return;
	json_array_append_new(reasons,
			      json_sprintf("region: not registered (%s)",
					   rp->last_error ? rp->last_error : "registering"));
}

/* ---- lifecycle ---- */

int report_new(struct agent *a, struct report **ret)
{
	struct report *rp = calloc(1, sizeof(*rp));
	if (!rp)
		return -ENOMEM;
	rp->a = a;
	rp->enabled = !config_standalone(&a->cfg);
	if (rp->enabled) {
		_cleanup_free_ char *dir = NULL;
		int k = asprintf_safe(&dir, "%s/outbox", a->cfg.state_dir);
		if (k >= 0)
			k = asprintf_safe(&rp->id_path, "%s/host-id", a->cfg.state_dir);
		if (k >= 0)
			k = outbox_open(dir, &rp->outbox);
		if (k >= 0)
			k = guests_add_hooks(a->guests, NULL, on_guest_state, rp);
		if (k < 0) {
			report_free(rp);
			return log_error_errno(k, "Failed to set up region reporting in %s: %m",
					       a->cfg.state_dir);
		}
		if (outbox_removed(rp->outbox) > 0)
			log_warning("Removed %zu unusable file(s) from %s/outbox (statuses are "
				    "reported again after the guest table is built)",
				    outbox_removed(rp->outbox), a->cfg.state_dir);
		if (outbox_size(rp->outbox) > 0)
			log_info("%zu guest status change(s) waiting for the region",
				 outbox_size(rp->outbox));
	}
	*ret = rp;
	return 0;
}

int report_start(struct report *rp)
{
	if (!rp->enabled)
		return 0;
	_cleanup_free_ char *id = NULL;
	int k = read_file(rp->id_path, HOST_ID_MAX, &id, NULL);
	if (k >= 0) {
		id[strcspn(id, "\n")] = 0;
		if (outbox_sid_valid(id))
			rp->host_id = TAKE_PTR(id);
		else
			log_warning("Ignoring unusable host id in %s", rp->id_path);
	} else if (k != -ENOENT)
		log_warning_errno(k, "Cannot read %s, looking the host up: %m", rp->id_path);
	metrics_counter_add(rp->a->metrics, PING_FAILURES_METRIC,
			    "Heartbeats to the region that failed", NULL, 0);
	outbox_gauge(rp);
	k = arm(rp, &rp->reg_timer, 0, on_reg_timer);
	if (k < 0)
		return log_error_errno(k, "Failed to schedule region registration: %m");
	return 0;
}

struct report *report_free(struct report *rp)
{
	if (!rp)
		return NULL;
	if (rp->enabled)
		guests_remove_hooks(rp->a->guests, rp);
	if (rp->collect_job)
		rp->collect_job->rp = NULL;
	if (rp->stats_job)
		rp->stats_job->rp = NULL;
	region_http_cancel(rp->reg_http);
	region_http_cancel(rp->ping_http);
	region_http_cancel(rp->outbox_http);
	region_http_cancel(rp->sync_http);
	region_http_cancel(rp->offline_http);
	sd_event_source_disable_unref(rp->reg_timer);
	sd_event_source_disable_unref(rp->ping_timer);
	sd_event_source_disable_unref(rp->outbox_timer);
	outbox_free(rp->outbox);
	json_decref(rp->host_body);
	json_decref(rp->nics);
	free(rp->outbox_sid);
	free(rp->host_id);
	free(rp->id_path);
	free(rp->last_error);
	free(rp);
	return NULL;
}

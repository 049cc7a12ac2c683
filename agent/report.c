#include <ctype.h>
#include <stdio.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "agent/guests.h"
#include "agent/hostinfo.h"
#include "agent/modules.h"
#include "agent/hostnet.h"
#include "agent/metrics.h"
#include "agent/outbox.h"
#include "agent/region.h"
#include "agent/readiness.h"
#include "agent/report.h"
#include "agent/storage.h"
#include "agent/tasks.h"
#include "agent/virt.h"
#include "common/event-util.h"
#include "common/fs.h"
#include "common/http-client.h"
#include "common/log.h"
#include "common/macros.h"
#include "common/path.h"

#define REQUEST_TIMEOUT_MS	     15000
#define OFFLINE_TIMEOUT_MS	     10000
#define BACKOFF_MIN_USEC	     (1 * USEC_PER_SEC)
#define BACKOFF_MAX_USEC	     (60 * USEC_PER_SEC)
#define OUTBOX_BACKOFF_MAX	     (30 * USEC_PER_SEC)
#define SESSION_POLL_USEC	     (1 * USEC_PER_SEC)
#define PING_RETRY_USEC		     (20 * USEC_PER_SEC)
#define HOST_ID_MAX		     256
#define IDS_MAX			     (256 * 1024)
#define PING_FAILURES_METRIC	     "hostagent_region_ping_failures_total"
#define OUTBOX_METRIC		     "hostagent_region_outbox_pending"
#define OUTBOX_WRITE_FAILURES_METRIC "hostagent_region_outbox_write_failures_total"

/* Registration as the region expects it (CONTRACT.md 1.1): the wire of each network, the host
 * record, one netif per network, per storage its cache, the storage and the host link, then
 * online (the link must exist before online or the storage stays offline). */
enum reg_step {
	REG_IDLE,
	REG_COLLECT,
	REG_NETWORK,	    /* GET /networks?ip= (network idx) */
	REG_WIRE,	    /* GET /wires/<id> */
	REG_UPDATE,	    /* PUT /hosts/<id> */
	REG_LOOKUP,	    /* GET /hosts?any_mac= */
	REG_CREATE,	    /* POST /zones/<zone>/hosts */
	REG_NETIF,	    /* POST /hosts/<id>/add-netif (network idx) */
	REG_CACHE_FIND,	    /* GET /storagecaches?external_id=&path= (storage idx) */
	REG_CACHE_CREATE,   /* POST /storagecaches */
	REG_STORAGE_FIND,   /* GET /storages/<id or name> */
	REG_STORAGE_CREATE, /* POST /storages */
	REG_STORAGE_UPDATE, /* PUT /storages/<id> */
	REG_LINK_FIND,	    /* GET /hosts/<id>/storages/<storage id> */
	REG_LINK,	    /* POST /hosts/<id>/storages/<storage id> */
	REG_ONLINE,
};

/* A job on the agent's worker pool; rp is cleared when the reporter goes first. */
struct report_job {
	struct report *rp; /* loop thread only */
	/* For the worker: the agent's immutable configuration and libvirt connection, which
	 * outlive the reporter. */
	const struct config *cfg;
	struct virt *virt;
	bool stats;
	char **storage_ids;	/* stats: region id per local_image_path root ("" when none) */
	struct host_info *info; /* collect: the host facts */
	json_t *result;		/* stats: the ping body */
	int r;
	struct host_cpu_sample cpu; /* stats: previous sample in, current out */
};

struct report {
	struct report_deps d; /* the agent's subsystems, which outlive the reporter */
	bool enabled;
	bool stopping;
	struct outbox *outbox;
	char *id_path;
	char *ids_path; /* state_dir/region-ids.json: storage, storagecache and wire ids */
	char *host_id;
	bool registered;
	char *last_error;

	enum reg_step step;
	struct host_info *host_info; /* with the access address; its storages per root */
	size_t idx;		     /* network or storage of the current step */
	bool storage_by_name;	     /* the saved storage id was unknown: look up by name */
	unsigned reg_failures;
	sd_event_source *reg_timer;
	struct region_http *reg_http;
	struct host_sync *syncs; /* POST /hosts/<id>/sync jobs on the pool */
	struct report_job *collect_job;
	struct region_http *sync_http;

	sd_event_source *ping_timer;
	struct region_http *ping_http;
	struct report_job *stats_job;
	struct host_cpu_sample cpu;

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
	return backoff_usec(failures, BACKOFF_MIN_USEC, max);
}

static int arm(struct report *rp, sd_event_source **s, uint64_t after, sd_event_time_handler_t fn)
{
	return event_reset_time_relative(rp->d.event, s, after, USEC_PER_SEC / 10, fn, rp);
}

static void set_error(struct report *rp, const char *fmt, ...) _printf_(2, 3);
static void set_error(struct report *rp, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	free(rp->last_error);
	rp->last_error = vstrprintf(fmt, ap);
	va_end(ap);
}

/* ---- pure helpers ---- */

const char *report_power_state(const char *status)
{
	if (streq_ptr(status, "running") || streq_ptr(status, "suspend") ||
	    streq_ptr(status, "stopping"))
		return "on";
	return "off";
}

int report_host_body(const struct host_info *hi, const struct config *cfg, bool create,
		     json_t **ret)
{
	const char *ip = hi->access_ip, *mac = hi->access_mac;
	if (isempty(ip) || isempty(mac))
		return -ENODATA;
	json_auto_t *host = json_object(), *sys = json_object();
	if (!host || !sys)
		return -ENOMEM;
	bool ok = true;
	if (hi->cpu_desc)
		ok = ok && json_object_set_new(host, "cpu_desc", json_string(hi->cpu_desc)) == 0;
	ok = ok && json_object_set_new(host, "version", json_string(PACKAGE_VERSION)) == 0;
	if (hi->cpu_architecture)
		ok = ok && json_object_set_new(host, "cpu_architecture",
					       json_string(hi->cpu_architecture)) == 0;
	/* Unknown numbers the region requires are 0; the optional ones are left out. */
	const struct {
		const char *key;
		int64_t v;
		bool optional;
	} ints[] = {
	    {"cpu_count", hi->cpu_count},
	    {"cpu_mhz", MAX(hi->cpu_mhz, 0)},
	    {"mem_size", MAX(hi->mem_size_mb, 0)},
	    {"storage_size", hi->storage_size_mb},
	    {"kvm_cap_max_vcpu", hi->kvm_cap_max_vcpu, true},
	    {"page_size_kb", hi->page_size_kb, true},
	};
	for (size_t i = 0; i < ELEMENTSOF(ints); i++)
		if (!ints[i].optional || ints[i].v > 0)
			ok = ok && json_object_set_new(host, ints[i].key,
						       json_integer((json_int_t)ints[i].v)) == 0;
	/* Create only: the region names the host from generate_name (unique) and an admin's
	 * later rename or reserved memory survive re-registration. */
	if (create && hi->name)
		ok = ok && json_object_set_new(host, "generate_name", json_string(hi->name)) == 0;
	if (create && hi->mem_reserved_mb >= 0)
		ok = ok && json_object_set_new(host, "mem_reserved",
					       json_integer((json_int_t)hi->mem_reserved_mb)) == 0;
	ok = ok && json_object_set_new(host, "node_count",
				       json_integer(hi->node_count > 0 ? hi->node_count : 1)) == 0;
	ok = ok && json_object_set_new(host, "access_ip", json_string(ip)) == 0 &&
	     json_object_set_new(host, "access_mac", json_string(mac)) == 0;
	/* The region calls the agent at manager_uri (Cloudpods: the host service's URL), not
	 * libvirt's URI: that one goes to sys_info. */
	ok = ok && json_object_set_new(host, "manager_uri",
				       json_sprintf("%s://%s:%d",
						    isempty(cfg->tls_cert_file) ? "http" : "https",
						    ip, cfg->port)) == 0;
	/* The region's KVM host driver and the scheduler know "hypervisor", not "kvm". */
	ok = ok && json_object_set_new(host, "host_type", json_string("hypervisor")) == 0;
	const struct {
		const char *key, *v;
	} strs[] = {
	    {"kernel", hi->sys.kernel},
	    {"arch", hi->sys.arch},
	    {"virt_type", hi->sys.virt_type},
	    {"libvirt_version", hi->sys.libvirt_version},
	    {"qemu_version", hi->sys.qemu_version},
	    {"os", hi->sys.os},
	    {"libvirt_uri", hi->libvirt_uri},
	};
	for (size_t i = 0; i < ELEMENTSOF(strs); i++)
		if (strs[i].v)
			ok = ok &&
			     json_object_set_new(sys, strs[i].key, json_string(strs[i].v)) == 0;
	ok = ok && json_object_set_new(sys, "kvm", json_boolean(hi->kvm)) == 0;
	ok = ok && json_object_set(host, "sys_info", sys) == 0;
	json_t *body = ok ? json_pack("{s:O}", "host", host) : NULL;
	if (!body)
		return -ENOMEM;
	*ret = body;
	return 0;
}

int report_netif_body(const struct hostnet *hn, bool access, json_t **ret)
{
	if (!hn || isempty(hn->mac) || isempty(hn->ip) || isempty(hn->wire))
		return -ENODATA;
	/* require_designated_ip: the real region keeps ip_addr only if a network with a gateway
	 * on the wire holds it in its range; otherwise it silently gives the NIC (and, for the
	 * admin NIC, the host's access_ip) another address. With the flag it refuses (400
	 * "Cannot allocate IP ..., not reachable") and the agent says so. */
	json_t *b = json_pack("{s:{s:s,s:i,s:s,s:s,s:s,s:b,s:s,s:b,s:b}}", "host", "mac", hn->mac,
			      "vlan_id", 1, "wire", hn->wire, "bridge", hn->bridge, "interface",
			      hn->ifname, "link_up", hn->link_up, "ip_addr", hn->ip, "reserve",
			      true, "require_designated_ip", true);
	if (!b)
		return -ENOMEM;
	if (access)
		json_object_set_new(json_object_get(b, "host"), "nic_type", json_string("admin"));
	*ret = b;
	return 0;
}

int report_storage_body(const struct storage *st, const struct host_storage *facts,
			const char *zone, bool create, json_t **ret)
{
	if (!st || isempty(st->cache_id) || !facts || !facts->known)
		return -ENODATA;
	json_t *b = json_pack("{s:{s:I,s:I,s:s,s:s,s:s}}", "storage", "capacity",
			      (json_int_t)facts->capacity_mb, "actual_capacity_used",
			      (json_int_t)facts->used_mb, "storage_type", "local", "medium_type",
			      host_storage_medium(facts), "storagecache_id", st->cache_id);
	if (!b)
		return -ENOMEM;
	json_t *in = json_object_get(b, "storage");
	if (create) {
		json_object_set_new(in, "name", json_string(st->name));
		if (!isempty(zone))
			json_object_set_new(in, "zone", json_string(zone));
	}
	*ret = b;
	return 0;
}

int report_ping_body(const struct host_stats *stats, json_t *storages, json_t **ret)
{
	json_t *host = json_object();
	if (!host)
		return -ENOMEM;
	if (stats->memory_used_mb >= 0)
		json_object_set_new(host, "memory_used_mb",
				    json_integer((json_int_t)stats->memory_used_mb));
	if (stats->cpu_usage_percent >= 0)
		json_object_set_new(host, "cpu_usage_percent", json_real(stats->cpu_usage_percent));
	json_object_set_new(host, "storage_stats",
			    json_is_array(storages) ? json_incref(storages) : json_array());
	/* The region sets qga_status of every guest not listed to unknown; the caller fills in
	 * the guests whose agent answers (guests_qga_running()). */
	json_object_set_new(host, "qga_running_guests", json_array());
	json_object_set_new(host, "with_data", json_true());
	json_t *b = json_pack("{s:o}", "host", host);
	if (!b)
		return -ENOMEM;
	*ret = b;
	return 0;
}

/* ---- worker jobs (agent pool) ---- */

static void collect_work(void *userdata)
{
	struct report_job *j = userdata;
	struct virt_node_facts nf;
	bool have = virt_node_facts(j->virt, &nf) >= 0;
	j->r = hostinfo_collect(j->cfg, "/", have ? &nf : NULL, &j->info);
}

static void stats_work(void *userdata)
{
	struct report_job *j = userdata;
	struct host_stats st;
	hostinfo_stats("/", &j->cpu, &st);
	/* SHostPingInput storage_stats: per registered storage its capacity and use, in MiB. */
	json_auto_t *storages = json_array();
	size_t i = 0;
	STRV_FOREACH (root, j->cfg->local_image_path) {
		const char *id = j->storage_ids ? j->storage_ids[i++] : NULL;
		struct host_storage f;
		if (isempty(id) || hostinfo_storage(*root, &f) < 0)
			continue;
		json_array_append_new(storages,
				      json_pack("{s:s,s:I,s:I}", "storage_id", id, "capacity_mb",
						(json_int_t)f.capacity_mb,
						"actual_capacity_used_mb", (json_int_t)f.used_mb));
	}
	j->r = report_ping_body(&st, storages, &j->result);
}

/* ---- HTTP ---- */

static int submit(struct report *rp, const char *method, const char *path, json_t *body,
		  long timeout_ms, region_http_done_fn done, struct region_http **ret)
{
	const char *token = region_token(rp->d.region);
	const char *base = region_compute_url(rp->d.region);
	if (!token || !base)
		return -ENOTCONN;
	_cleanup_free_ char *url = NULL, *hdr = NULL, *data = NULL;
	if (body && !(data = json_dumps(body, JSON_COMPACT)))
		return -ENOMEM;
	if (asprintf_safe(&url, "%s%s", base, path) < 0 ||
	    asprintf_safe(&hdr, "X-Auth-Token: %s", token) < 0)
		return -ENOMEM;
	char *headers[] = {hdr, NULL};
	int k =
	    region_http_submit(rp->d.region, method, url, headers, data, timeout_ms, done, rp, ret);
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
	/* The real region answers 403 (not 401) for a bad or expired token. */
	if (resp->status == 401 || resp->status == 403)
		region_token_invalid(rp->d.region);
	return resp->status == 404 ? -ENOENT : -EIO;
}

/* The region's error details ("details" top level or under "error"), for messages. */
static const char *answer_details(json_t *j)
{
	json_t *e = json_object_get(j, "error");
	const char *d = json_string_value(json_object_get(json_is_object(e) ? e : j, "details"));
	return d ? d : "";
}

/* Percent-encodes a query value. */
static char *url_escape(const char *s)
{
	size_t n = strlen(s);
	char *out = malloc(3 * n + 1), *o = out;
	if (!out)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (isalnum(*p) || strchr("-_.~", *p))
			*o++ = (char)*p;
		else
			o += sprintf(o, "%%%02X", *p);
	}
	*o = 0;
	return out;
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
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *what = vstrprintf(fmt, ap);
	va_end(ap);
	rp->reg_failures++;
	rp->step = REG_IDLE;
	uint64_t d = backoff(rp->reg_failures, BACKOFF_MAX_USEC);
	if (err)
		set_error(rp, "%s: %s", strempty(what), strerror(abs(err)));
	else
		set_error(rp, "%s", strempty(what));
	log_warning("Region registration failed (%s), retrying in %llus", strempty(rp->last_error),
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

/* state_dir/region-ids.json: {"host_id", "storages": [{root, id, cache_id}], "wires":
 * [{bridge, wire_id, wire}]}, so that a restart uses the region's ids before (and without)
 * registering again. */
static int save_ids(struct report *rp)
{
	const struct report_deps *a = &rp->d;
	json_auto_t *st = json_array(), *w = json_array();
	for (size_t i = 0; i < storages_count(a->storages); i++) {
		const struct storage *s = storages_get(a->storages, i);
		json_array_append_new(st, json_pack("{s:s,s:s?,s:s?}", "root", s->root, "id", s->id,
						    "cache_id", s->cache_id));
	}
	for (size_t i = 0; i < hostnets_count(a->hostnets); i++) {
		const struct hostnet *hn = hostnets_get(a->hostnets, i);
		json_array_append_new(w, json_pack("{s:s,s:s?,s:s?}", "bridge", hn->bridge,
						   "wire_id", hn->wire_id, "wire", hn->wire));
	}
	json_auto_t *j =
	    json_pack("{s:s?,s:O,s:O}", "host_id", rp->host_id, "storages", st, "wires", w);
	_cleanup_free_ char *text = j ? json_dumps(j, JSON_INDENT(1)) : NULL;
	if (!text)
		return -ENOMEM;
	return write_file_atomic(rp->ids_path, text, strlen(text), 0600);
}

static void load_ids(struct report *rp)
{
	const struct report_deps *a = &rp->d;
	_cleanup_free_ char *text = NULL;
	int k = read_file(rp->ids_path, IDS_MAX, &text, NULL);
	if (k == -ENOENT)
		return;
	json_error_t jerr;
	json_auto_t *j = k >= 0 ? json_loads(text, 0, &jerr) : NULL;
	if (!json_is_object(j)) {
		log_warning("Ignoring unusable %s (ids are looked up in the region again)",
			    rp->ids_path);
		return;
	}
	size_t n;
	json_t *e;
	json_array_foreach (json_object_get(j, "storages"), n, e) {
		const char *root = json_string_value(json_object_get(e, "root"));
		const char *id = json_string_value(json_object_get(e, "id"));
		const char *cid = json_string_value(json_object_get(e, "cache_id"));
		for (size_t i = 0; root && i < storages_count(a->storages); i++)
			if (streq(storages_get(a->storages, i)->root, root))
				(void)storages_set_ids(
				    a->storages, i, id_is_valid(id, REGION_ID_MAX) ? id : NULL,
				    id_is_valid(cid, REGION_ID_MAX) ? cid : NULL);
	}
	json_array_foreach (json_object_get(j, "wires"), n, e) {
		const char *br = json_string_value(json_object_get(e, "bridge"));
		const char *id = json_string_value(json_object_get(e, "wire_id"));
		const char *w = json_string_value(json_object_get(e, "wire"));
		for (size_t i = 0; br && id && w && i < hostnets_count(a->hostnets); i++)
			if (streq(hostnets_get(a->hostnets, i)->bridge, br) &&
			    id_is_valid(id, REGION_ID_MAX))
				(void)hostnets_set_wire(a->hostnets, i, id, w);
	}
}

static void ids_changed(struct report *rp)
{
	int k = save_ids(rp);
	if (k < 0)
		log_warning_errno(k,
				  "Cannot save the region ids in %s (looked up again at the "
				  "next start): %m",
				  rp->ids_path);
}

/* Moves to the first step of the next phase. */
static void reg_goto(struct report *rp, enum reg_step step)
{
	const struct report_deps *a = &rp->d;
	rp->idx = 0;
	rp->storage_by_name = false;
	if (step == REG_NETWORK && hostnets_count(a->hostnets) == 0)
		step = REG_UPDATE;
	if (step == REG_UPDATE && !rp->host_id)
		step = REG_LOOKUP;
	if (step == REG_NETIF && hostnets_count(a->hostnets) == 0)
		step = REG_CACHE_FIND;
	if (step == REG_CACHE_FIND && storages_count(a->storages) == 0)
		step = REG_ONLINE;
	rp->step = step;
}

static void reg_next_storage(struct report *rp)
{
	size_t i = rp->idx + 1;
	if (i >= storages_count(rp->d.storages))
		return reg_goto(rp, REG_ONLINE);
	rp->idx = i;
	rp->storage_by_name = false;
	rp->step = REG_CACHE_FIND;
}

static void on_reg_done(int err, const struct http_response *resp, void *userdata)
{
	struct report *rp = userdata;
	const struct report_deps *a = &rp->d;
	rp->reg_http = NULL;
	long status;
	int k = answer(rp, err, resp, &status);
	json_auto_t *j = answer_json(resp);
	const char *id = NULL;
	const char *det = answer_details(j);
	struct hostnet *hn = hostnets_get(a->hostnets, rp->idx);
	const struct storage *st = storages_get(a->storages, rp->idx);
#define FAIL(what, ...)                                                                            \
	reg_failed(rp, err < 0 ? err : 0, what ": HTTP %ld%s%s%s", __VA_ARGS__, status,            \
		   *det ? " (" : "", det, *det ? ")" : "")
	switch (rp->step) {
	case REG_NETWORK: {
		if (k < 0)
			return FAIL("GET /networks?ip=%s", hn->ip);
		json_t *nets = json_object_get(j, "networks");
		if (!json_is_array(nets))
			return reg_failed(rp, 0, "GET /networks: reply without a networks list");
		if (json_array_size(nets) == 0)
			return reg_failed(rp, 0,
					  "no network of the region contains %s (networks entry "
					  "%s/%s): create it in the region",
					  hn->ip, hn->ifname, hn->bridge);
		id = json_string_value(json_object_get(json_array_get(nets, 0), "wire_id"));
		if (!id_is_valid(id, REGION_ID_MAX))
			return reg_failed(rp, 0, "network of %s without a usable wire_id", hn->ip);
		if (!streq_ptr(hn->wire_id, id) &&
		    hostnets_set_wire(a->hostnets, rp->idx, id, NULL) < 0)
			return reg_failed(rp, -ENOMEM, "wire of %s", hn->ip);
		rp->step = REG_WIRE;
		return reg_next(rp);
	}
	case REG_WIRE: {
		if (k < 0)
			return FAIL("GET /wires/%s", hn->wire_id);
		const char *name =
		    json_string_value(json_object_get(json_object_get(j, "wire"), "name"));
		if (isempty(name))
			return reg_failed(rp, 0, "GET /wires/%s: reply without a wire name",
					  hn->wire_id);
		if (!streq_ptr(hn->wire, name)) {
			_cleanup_free_ char *wid = strdup(hn->wire_id);
			if (!wid || hostnets_set_wire(a->hostnets, rp->idx, wid, name) < 0)
				return reg_failed(rp, -ENOMEM, "wire of %s", hn->ip);
			ids_changed(rp);
		}
		if (rp->idx + 1 < hostnets_count(a->hostnets)) {
			rp->idx++;
			rp->step = REG_NETWORK;
		} else
			reg_goto(rp, REG_UPDATE);
		return reg_next(rp);
	}
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
			return FAIL("PUT /hosts/%s", rp->host_id);
		reg_goto(rp, REG_NETIF);
		return reg_next(rp);
	case REG_LOOKUP: {
		if (k < 0)
			return FAIL("GET /hosts%s", "");
		json_t *hosts = json_object_get(j, "hosts");
		if (!json_is_array(hosts))
			return reg_failed(rp, 0, "GET /hosts: reply without a hosts list");
		if (json_array_size(hosts) == 0) {
			rp->step = REG_CREATE;
			return reg_next(rp);
		}
		id = json_string_value(json_object_get(json_array_get(hosts, 0), "id"));
		if (!id_is_valid(id, REGION_ID_MAX))
			return reg_failed(rp, 0, "GET /hosts: host record without a usable id");
		k = save_host_id(rp, id);
		if (k < 0)
			return reg_failed(rp, k, "cannot save the host id");
		rp->step = REG_UPDATE;
		return reg_next(rp);
	}
	case REG_CREATE:
		if (k < 0)
			return FAIL("POST host%s", "");
		id = json_string_value(json_object_get(json_object_get(j, "host"), "id"));
		if (!id_is_valid(id, REGION_ID_MAX))
			return reg_failed(rp, 0, "POST host: reply without a usable host id");
		k = save_host_id(rp, id);
		if (k < 0)
			return reg_failed(rp, k, "cannot save the host id");
		ids_changed(rp);
		log_kv(LOG_INFO, "Host record created in the region", "host_id", id, NULL);
		reg_goto(rp, REG_NETIF);
		return reg_next(rp);
	case REG_NETIF:
		if (k < 0)
			return FAIL("add-netif %s (bridge %s)", hn->ip, hn->bridge);
		if (rp->idx + 1 < hostnets_count(a->hostnets))
			rp->idx++;
		else
			reg_goto(rp, REG_CACHE_FIND);
		return reg_next(rp);
	case REG_CACHE_FIND:
	case REG_CACHE_CREATE: {
		if (k < 0)
			return FAIL("storagecache of %s", st->cache_dir);
		if (rp->step == REG_CACHE_FIND) {
			json_t *l = json_object_get(j, "storagecaches");
			if (!json_is_array(l))
				return reg_failed(rp, 0,
						  "GET /storagecaches: reply without a list");
			if (json_array_size(l) == 0) {
				rp->step = REG_CACHE_CREATE;
				return reg_next(rp);
			}
			id = json_string_value(json_object_get(json_array_get(l, 0), "id"));
		} else
			id = json_string_value(
			    json_object_get(json_object_get(j, "storagecache"), "id"));
		if (!id_is_valid(id, REGION_ID_MAX))
			return reg_failed(rp, 0, "storagecache of %s without a usable id",
					  st->cache_dir);
		if (!streq_ptr(st->cache_id, id)) {
			if (storages_set_ids(a->storages, rp->idx, NULL, id) < 0)
				return reg_failed(rp, -ENOMEM, "storagecache id");
			ids_changed(rp);
		}
		rp->step = REG_STORAGE_FIND;
		return reg_next(rp);
	}
	case REG_STORAGE_FIND:
		if (k == -ENOENT && st->id && !rp->storage_by_name) {
			rp->storage_by_name = true;
			return reg_next(rp);
		}
		if (k == -ENOENT) {
			rp->step = REG_STORAGE_CREATE;
			return reg_next(rp);
		}
		__attribute__((fallthrough));
	case REG_STORAGE_CREATE:
		if (k < 0)
			return FAIL("storage %s (%s)", st->name, st->root);
		id = json_string_value(json_object_get(json_object_get(j, "storage"), "id"));
		if (!id_is_valid(id, REGION_ID_MAX))
			return reg_failed(rp, 0, "storage %s without a usable id", st->name);
		if (!streq_ptr(st->id, id)) {
			if (storages_set_ids(a->storages, rp->idx, id, NULL) < 0)
				return reg_failed(rp, -ENOMEM, "storage id");
			ids_changed(rp);
		}
		rp->step = rp->step == REG_STORAGE_FIND ? REG_STORAGE_UPDATE : REG_LINK_FIND;
		return reg_next(rp);
	case REG_STORAGE_UPDATE:
		if (k < 0)
			return FAIL("PUT /storages/%s", st->id);
		rp->step = REG_LINK_FIND;
		return reg_next(rp);
	case REG_LINK_FIND:
		if (k == -ENOENT) {
			rp->step = REG_LINK;
			return reg_next(rp);
		}
		if (k < 0)
			return FAIL("GET /hosts/%s/storages/%s", rp->host_id, st->id);
		reg_next_storage(rp);
		return reg_next(rp);
	case REG_LINK:
		if (k < 0)
			return FAIL("POST /hosts/%s/storages/%s", rp->host_id, st->id);
		reg_next_storage(rp);
		return reg_next(rp);
	case REG_ONLINE:
		if (k < 0)
			return FAIL("POST /hosts/%s/online", rp->host_id);
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
#undef FAIL
}

static void on_collect_done(void *userdata)
{
	struct report_job *j = userdata;
	struct report *rp = j->rp;
	if (rp) {
		rp->collect_job = NULL;
		json_t *probe = NULL;
		int k = j->r < 0 ? j->r : !j->info ? -ECANCELED : 0;
		if (k >= 0)
			k = hostinfo_set_access(rp->d.hostnets, j->info);
		if (k < 0)
			reg_failed(rp, k, "cannot read host information");
		else if (report_host_body(j->info, rp->d.cfg, true, &probe) < 0)
			reg_failed(rp, 0, "no access address for the region");
		else {
			json_decref(probe);
			host_info_free(rp->host_info);
			rp->host_info = TAKE_PTR(j->info);
			reg_goto(rp, REG_NETWORK);
			reg_next(rp);
		}
	}
	host_info_free(j->info);
	free(j);
}

static void reg_next(struct report *rp)
{
	const struct report_deps *a = &rp->d;
	if (rp->stopping || rp->reg_http || rp->collect_job)
		return;
	if (rp->step == REG_IDLE) {
		if (!region_token(a->region) || !region_compute_url(a->region)) {
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
		j->cfg = a->cfg;
		j->virt = a->virt;
		int k = tasks_submit(a->tasks, TASKS_INTERNAL_KEY("host-info"), collect_work,
				     on_collect_done, j);
		if (k < 0) {
			free(j);
			return reg_failed(rp, k, "cannot read host information");
		}
		rp->collect_job = j;
		return;
	}
	_cleanup_free_ char *path = NULL, *esc = NULL, *name = NULL;
	json_auto_t *body = NULL;
	const char *method = "POST";
	const char *mac = hostnets_access_mac(a->hostnets);
	const struct hostnet *hn = hostnets_get(a->hostnets, rp->idx);
	const struct storage *st = storages_get(a->storages, rp->idx);
	const struct host_storage *facts = rp->host_info && rp->idx < rp->host_info->n_storages
					       ? &rp->host_info->storages[rp->idx]
					       : NULL;
	int k = -ENOMEM;
	switch (rp->step) {
	case REG_NETWORK:
		method = "GET";
		k = asprintf_safe(&path, "/networks?ip=%s&is_classic=true&scope=system", hn->ip);
		break;
	case REG_WIRE:
		method = "GET";
		k = asprintf_safe(&path, "/wires/%s", hn->wire_id);
		break;
	case REG_UPDATE:
		method = "PUT";
		k = report_host_body(rp->host_info, a->cfg, false, &body);
		if (k >= 0)
			k = asprintf_safe(&path, "/hosts/%s", rp->host_id);
		break;
	case REG_LOOKUP:
		method = "GET";
		esc = url_escape(strempty(mac));
		if (esc)
			k = asprintf_safe(
			    &path, "/hosts?provider=OneCloud&details=true&scope=system&any_mac=%s",
			    esc);
		break;
	case REG_CREATE:
		k = report_host_body(rp->host_info, a->cfg, true, &body);
		if (k < 0)
			break;
		if (isempty(a->cfg->zone))
			k = asprintf_safe(&path, "/hosts");
		else if (!id_is_valid(a->cfg->zone, REGION_ID_MAX))
			return reg_failed(rp, 0, "zone '%s' cannot be used in a URL", a->cfg->zone);
		else
			k = asprintf_safe(&path, "/zones/%s/hosts", a->cfg->zone);
		break;
	case REG_NETIF:
		k = report_netif_body(hn, rp->idx == 0, &body);
		if (k >= 0)
			k = asprintf_safe(&path, "/hosts/%s/add-netif", rp->host_id);
		break;
	case REG_CACHE_FIND:
		method = "GET";
		esc = url_escape(st->cache_dir);
		if (esc)
			k = asprintf_safe(&path, "/storagecaches?external_id=%s&path=%s",
					  rp->host_id, esc);
		break;
	case REG_CACHE_CREATE:
		/* Names are unique in the region and a cache outlives its host record (a host
		 * deleted and registered again gets a new id, so the lookup by external_id finds
		 * nothing): the creation time makes the name new, as the Go agent's
		 * "local-<host>-<time>" does. */
		k = asprintf_safe(&name, "local-%s-%lld", st->name, (long long)time(NULL));
		body = k >= 0 ? json_pack("{s:{s:s,s:s,s:s}}", "storagecache", "name", name, "path",
					  st->cache_dir, "external_id", rp->host_id)
			      : NULL;
		k = body ? asprintf_safe(&path, "/storagecaches") : -ENOMEM;
		break;
	case REG_STORAGE_FIND:
		method = "GET";
		k = asprintf_safe(&path, "/storages/%s",
				  st->id && !rp->storage_by_name ? st->id : st->name);
		break;
	case REG_STORAGE_CREATE:
	case REG_STORAGE_UPDATE:
		if (!facts || !facts->known)
			return reg_failed(rp, 0, "cannot read the capacity of %s", st->root);
		k = report_storage_body(st, facts, a->cfg->zone, rp->step == REG_STORAGE_CREATE,
					&body);
		if (k >= 0 && rp->step == REG_STORAGE_CREATE)
			k = asprintf_safe(&path, "/storages");
		else if (k >= 0) {
			method = "PUT";
			k = asprintf_safe(&path, "/storages/%s", st->id);
		}
		break;
	case REG_LINK_FIND:
		method = "GET";
		k = asprintf_safe(&path, "/hosts/%s/storages/%s", rp->host_id, st->id);
		break;
	case REG_LINK:
		body = json_pack("{s:{s:s,s:b}}", "hoststorage", "mount_point", st->root,
				 "is_root_partition",
				 facts && facts->known && facts->is_root_partition);
		k = body ? asprintf_safe(&path, "/hosts/%s/storages/%s", rp->host_id, st->id)
			 : -ENOMEM;
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
	uint64_t base = (uint64_t)MAX(rp->d.cfg->ping_region_interval, 1) * USEC_PER_SEC;
	uint32_t x = 0;
	if (getrandom(&x, sizeof(x), GRND_NONBLOCK) != sizeof(x))
		x = (uint32_t)time(NULL);
	/* +-10% so that many hosts restarted together do not ping in lockstep. */
	uint64_t span = base / 5;
	return base - base / 10 + (span ? (uint64_t)x % span : 0);
}

static void ping_failed(struct report *rp, int err, long status)
{
	metrics_counter_add(rp->d.metrics, PING_FAILURES_METRIC,
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
		metrics_counter_add(rp->d.metrics, PING_FAILURES_METRIC,
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
		rp->cpu = j->cpu;
		json_auto_t *body =
		    j->result ? json_incref(j->result) : json_pack("{s:{}}", "host");
		/* From the guest agents' table on the loop: no probe waits for the heartbeat. */
		json_t *running = guests_qga_running(rp->d.guests);
		if (running && json_object_set_new(json_object_get(body, "host"),
						   "qga_running_guests", running) < 0)
			log_oom();
		_cleanup_free_ char *path = NULL;
		int k = asprintf_safe(&path, "/hosts/%s/ping", rp->host_id);
		if (k >= 0 && body)
			k = submit(rp, "POST", path, body, REQUEST_TIMEOUT_MS, on_ping_done,
				   &rp->ping_http);
		if (k < 0)
			ping_failed(rp, k, 0);
	}
	strv_free(j->storage_ids);
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
	*j = (struct report_job){
	    .rp = rp, .cfg = rp->d.cfg, .virt = rp->d.virt, .stats = true, .cpu = rp->cpu};
	/* The worker reads the configuration only; the ids are the loop thread's. */
	size_t n = storages_count(rp->d.storages);
	j->storage_ids = calloc(n + 1, sizeof(char *));
	for (size_t i = 0; j->storage_ids && i < n; i++)
		if (!(j->storage_ids[i] = strdup(strempty(storages_get(rp->d.storages, i)->id)))) {
			strv_free(j->storage_ids);
			j->storage_ids = NULL;
		}
	int k = tasks_submit(rp->d.tasks, TASKS_INTERNAL_KEY("host-stats"), stats_work,
			     on_stats_done, j);
	if (k < 0) {
		strv_free(j->storage_ids);
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
	metrics_gauge_set(rp->d.metrics, OUTBOX_METRIC,
			  "Guest status changes not yet accepted by the region", NULL,
			  (double)outbox_size(rp->outbox));
	/* The writer thread counts its failures; they reach the metric on the next change. */
	unsigned long f = outbox_write_failures(rp->outbox);
	metrics_counter_add(rp->d.metrics, OUTBOX_WRITE_FAILURES_METRIC,
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
	/* 403 too: the real region's answer to an expired token (renewed by answer()). */
	bool retry = err < 0 || status >= 500 || status == 401 || status == 403 || status == 408 ||
		     status == 429;
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
	json_auto_t *body = report_status_body(e, rp->host_id);
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

json_t *report_status_body(const struct outbox_entry *e, const char *host_id)
{
	const char *reason;
	const char *status = guest_status_cloudpods(e->status, &reason);
	json_t *body =
	    json_pack("{s:{s:s,s:s}}", "server", "status", status, "power_states", e->power_states);
	json_t *server = json_object_get(body, "server");
	if (server && host_id)
		json_object_set_new(server, "host_id", json_string(host_id));
	if (server && reason)
		json_object_set_new(server, "reason", json_string(reason));
	return body;
}

static void on_guest_state(const char *sid, const char *status, void *ud)
{
	struct report *rp = ud;
	if (!rp->enabled || !id_is_valid(sid, REGION_ID_MAX))
		return;
	/* A guest shutting down is still running for the region (it has no transitional state
	 * for it), and while a create runs the region hears the outcome from the task only, as
	 * from the real agent, which reports nothing during a deploy. */
	if (status && (streq(status, "stopping") || guests_creating(rp->d.guests, sid)))
		return;
	/* A domain defined by someone else is no server of the region (it would answer 404, or
	 * worse, learn of a guest it never placed here). */
	if (status && !guests_managed(rp->d.guests, sid))
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

void report_host_info(struct report *rp, struct host_info *hostinfo)
{
	_cleanup_(host_info_freep) struct host_info *hi = hostinfo;
	if (!rp || !rp->enabled || rp->stopping)
		return;
	json_auto_t *body = NULL;
	int k = report_host_body(hi, rp->d.cfg, false, &body);
	if (k < 0)
		return;
	host_info_free(rp->host_info);
	rp->host_info = TAKE_PTR(hi);
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
	if (rp->d.cfg->shutdown_timeout > 0)
		timeout = MIN(timeout, (long)rp->d.cfg->shutdown_timeout * 1000);
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

const char *report_host_id(struct report *rp)
{
	return rp && rp->enabled ? rp->host_id : NULL;
}

/* Readiness: a region is configured and the host is not registered. */
static void reasons(void *userdata, json_t *out)
{
	struct report *rp = userdata;
	json_t *reasons = out;
	if (!rp->enabled || rp->registered)
		return;
	json_array_append_new(reasons,
			      json_sprintf("region: not registered (%s)",
					   rp->last_error ? rp->last_error : "registering"));
}

/* ---- lifecycle ---- */

int report_new(const struct report_deps *deps, struct report **ret)
{
	struct report *rp = calloc(1, sizeof(*rp));
	if (!rp)
		return -ENOMEM;
	rp->d = *deps;
	const struct report_deps *a = &rp->d;
	rp->enabled = !config_standalone(a->cfg);
	if (rp->enabled) {
		_cleanup_free_ char *dir = NULL;
		int k = asprintf_safe(&dir, "%s/outbox", a->cfg->state_dir);
		if (k >= 0)
			k = asprintf_safe(&rp->id_path, "%s/host-id", a->cfg->state_dir);
		if (k >= 0)
			k = asprintf_safe(&rp->ids_path, "%s/region-ids.json", a->cfg->state_dir);
		if (k >= 0)
			k = outbox_open(dir, &rp->outbox);
		if (k >= 0)
			k = readiness_add(a->readiness, reasons, rp);
		if (k >= 0)
			k = guests_add_hooks(a->guests, NULL, on_guest_state, rp);
		if (k < 0) {
			report_free(rp);
			return log_error_errno(k, "Failed to set up region reporting in %s: %m",
					       a->cfg->state_dir);
		}
		if (outbox_removed(rp->outbox) > 0)
			log_warning("Removed %zu unusable file(s) from %s/outbox (statuses are "
				    "reported again after the guest table is built)",
				    outbox_removed(rp->outbox), a->cfg->state_dir);
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
		if (id_is_valid(id, REGION_ID_MAX))
			rp->host_id = TAKE_PTR(id);
		else
			log_warning("Ignoring unusable host id in %s", rp->id_path);
	} else if (k != -ENOENT)
		log_warning_errno(k, "Cannot read %s, looking the host up: %m", rp->id_path);
	load_ids(rp);
	metrics_counter_add(rp->d.metrics, PING_FAILURES_METRIC,
			    "Heartbeats to the region that failed", NULL, 0);
	outbox_gauge(rp);
	k = arm(rp, &rp->reg_timer, 0, on_reg_timer);
	if (k < 0)
		return log_error_errno(k, "Failed to schedule region registration: %m");
	return 0;
}

/* ---- POST /hosts/<id>/sync ---- */

struct host_sync {
	struct host_sync *next;
	struct report *rp; /* loop thread; NULL once the reporter is gone */
	const struct config *cfg;
	struct virt *virt;
	struct agent_modules *modules;
	const struct hostnets *hostnets;
	op_done_fn cb;
	void *userdata;
	struct host_info *info;
	json_t *host;
	int r;
};

static void sync_work(void *userdata)
{
	struct host_sync *s = userdata;
	struct virt_node_facts nf;
	bool have = virt_node_facts(s->virt, &nf) >= 0;
	s->r = hostinfo_collect(s->cfg, "/", have ? &nf : NULL, &s->info);
}

static void sync_done(void *userdata)
{
	struct host_sync *s = userdata;
	if (s->rp)
		for (struct host_sync **p = &s->rp->syncs; *p; p = &(*p)->next)
			if (*p == s) {
				*p = s->next;
				break;
			}
	struct op_reply reply = {0};
	if (s->r < 0 || !s->info || hostinfo_set_access(s->hostnets, s->info) < 0 ||
	    !(s->host = host_info_to_json(s->info)))
		(void)op_reply_fail(&reply, s->r == -ENOMEM ? -ENOMEM : -EIO,
				    "cannot read host information: %s",
				    strerror(s->r < 0 ? -s->r : EIO));
	else {
		if (s->modules) {
			json_t *m = agent_modules_json(s->modules);
			json_object_set(s->host, "kernel_modules", json_object_get(m, "modules"));
			json_decref(m);
		}
		op_reply_ok(&reply, json_pack("{s:O}", "host", s->host));
		report_host_info(s->rp, TAKE_PTR(s->info));
		log_info("Host information re-read");
	}
	s->cb(&reply, s->userdata);
	op_reply_clear(&reply);
	json_decref(s->host);
	host_info_free(s->info);
	free(s);
}

int report_host_sync(struct report *rp, op_done_fn cb, void *userdata)
{
	struct host_sync *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	*s = (struct host_sync){.rp = rp,
				.cfg = rp->d.cfg,
				.virt = rp->d.virt,
				.modules = rp->d.modules,
				.hostnets = rp->d.hostnets,
				.cb = cb,
				.userdata = userdata,
				.r = -ECANCELED};
	int r = tasks_submit(rp->d.tasks, TASKS_INTERNAL_KEY("host-info"), sync_work, sync_done, s);
	if (r < 0) {
		s->r = r;
		s->rp = NULL;
		sync_done(s);
		return 0;
	}
	s->next = rp->syncs;
	rp->syncs = s;
	return 0;
}

struct report *report_free(struct report *rp)
{
	if (!rp)
		return NULL;
	for (struct host_sync *s = rp->syncs; s; s = s->next)
		s->rp = NULL;
	readiness_remove(rp->d.readiness, rp);
	if (rp->enabled)
		guests_remove_hooks(rp->d.guests, rp);
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
	host_info_free(rp->host_info);
	free(rp->outbox_sid);
	free(rp->host_id);
	free(rp->id_path);
	free(rp->ids_path);
	free(rp->last_error);
	free(rp);
	return NULL;
}

/* Guest operations. Each operation runs on the worker pool, keyed by the guest id so that
 * operations on one guest never interleave; the result comes back to the loop thread, which
 * owns the guest table. Nothing here invents state: status answers come from libvirt. */
#include <dirent.h>
#include <pthread.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <time.h>

#include "agent/agent.h"
#include "agent/console.h"
#include "agent/desc.h"
#include "agent/disks.h"
#include "agent/domxml.h"
#include "agent/guests.h"
#include "agent/hostnet.h"
#include "agent/monitor.h"
#include "agent/metrics.h"
#include "agent/modules.h"
#include "agent/placer.h"
#include "agent/report.h"
#include "agent/serverpush.h"
#include "agent/ops.h"
#include "agent/tasks.h"
#include "agent/virt.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/path.h"

#define DESC_MAX (4 * 1024 * 1024)

struct guest {
	char *sid;
	char *name;   /* human name from the descriptor, or NULL */
	char *status; /* last known status (events, rebuilds) */
	bool managed; /* has a readable workspace */
};

struct guests {
	struct agent *a;
	unsigned long gen;    /* bumped on every change from an operation or event (loop thread) */
	pthread_mutex_t lock; /* the table is written on the loop; metrics read it elsewhere */
	struct guest *list;
	size_t n;
	bool connected;
	struct guest_hook hooks[GUESTS_MAX_HOOKS];
	size_t n_hooks;
	char **creating; /* sids with a create queued or running, once per create */
};

DEFINE_TRIVIAL_CLEANUP_FUNC(virConnectPtr, virConnectClose)
DEFINE_TRIVIAL_CLEANUP_FUNC(virDomainPtr, virDomainFree)

static const char *const op_names[_GUEST_OP_MAX] = {
    [GUEST_OP_CREATE] = "create", [GUEST_OP_START] = "start",	  [GUEST_OP_STOP] = "stop",
    [GUEST_OP_REBOOT] = "reboot", [GUEST_OP_SUSPEND] = "suspend", [GUEST_OP_RESUME] = "resume",
    [GUEST_OP_SYNC] = "sync",	  [GUEST_OP_STATUS] = "status",	  [GUEST_OP_MONITOR] = "monitor",
    [GUEST_OP_DELETE] = "delete", [GUEST_OP_CONSOLE] = "console",
};

const char *guest_op_to_string(enum guest_op op)
{
	return op < _GUEST_OP_MAX ? op_names[op] : "?";
}

/* ---- guest table (loop thread) ---- */

static struct guest *guest_find(struct guests *g, const char *sid)
{
	for (size_t i = 0; i < g->n; i++)
		if (streq(g->list[i].sid, sid))
			return &g->list[i];
	return NULL;
}

static void guest_clear(struct guest *x)
{
	free(x->sid);
	free(x->name);
	free(x->status);
}

static void table_clear(struct guests *g)
{
	for (size_t i = 0; i < g->n; i++)
		guest_clear(&g->list[i]);
	free(g->list);
	g->list = NULL;
	g->n = 0;
}

static void guest_set_locked(struct guests *g, const char *sid, const char *name,
			     const char *status, int managed, bool *ret_changed)
{
	struct guest *x = guest_find(g, sid);
	if (!x) {
		struct guest *l = realloc(g->list, sizeof(*l) * (g->n + 1));
		if (!l)
			return;
		g->list = l;
		x = &l[g->n++];
		*x = (struct guest){.sid = strdup(sid)};
	}
	if (name) {
		free(x->name);
		x->name = strdup(name);
	}
	if (status && !streq_ptr(x->status, status)) {
		free(x->status);
		x->status = strdup(status);
		*ret_changed = true;
	}
	if (managed >= 0)
		x->managed = managed;
}

static bool hooks_want_running(struct guests *g)
{
	for (size_t i = 0; i < g->n_hooks; i++)
		if (g->hooks[i].on_running)
			return true;
	return false;
}

static void hooks_running(struct guests *g, const char *sid, int qemu_pid)
{
	for (size_t i = 0; i < g->n_hooks; i++)
		if (g->hooks[i].on_running)
			g->hooks[i].on_running(sid, qemu_pid, g->hooks[i].ud);
}

static void guest_set(struct guests *g, const char *sid, const char *name, const char *status,
		      int managed)
{
	bool changed = false;
	pthread_mutex_lock(&g->lock);
	guest_set_locked(g, sid, name, status, managed, &changed);
	pthread_mutex_unlock(&g->lock);
	for (size_t i = 0; changed && i < g->n_hooks; i++)
		if (g->hooks[i].on_state)
			g->hooks[i].on_state(sid, status, g->hooks[i].ud);
}

/* sid left the table: the state hooks get status NULL. */
static void hooks_gone(struct guests *g, const char *sid)
{
	for (size_t i = 0; i < g->n_hooks; i++)
		if (g->hooks[i].on_state)
			g->hooks[i].on_state(sid, NULL, g->hooks[i].ud);
}

static void guest_remove(struct guests *g, const char *sid)
{
	pthread_mutex_lock(&g->lock);
	struct guest *x = guest_find(g, sid);
	bool found = x;
	if (x) {
		guest_clear(x);
		size_t i = (size_t)(x - g->list);
		memmove(&g->list[i], &g->list[i + 1], sizeof(*x) * (g->n - i - 1));
		g->n--;
	}
	pthread_mutex_unlock(&g->lock);
	if (found)
		hooks_gone(g, sid);
}

/* ---- libvirt helpers (worker threads) ---- */

static const char *state_to_status(int state, const char **ret_power)
{
	const char *power = "off", *status = "unknown";
	switch (state) {
	case VIR_DOMAIN_RUNNING:
	case VIR_DOMAIN_BLOCKED:
		status = "running";
		power = "on";
		break;
	case VIR_DOMAIN_PAUSED:
	case VIR_DOMAIN_PMSUSPENDED:
		status = "suspend";
		power = "on";
		break;
	case VIR_DOMAIN_SHUTDOWN:
		status = "stopping";
		power = "on";
		break;
	case VIR_DOMAIN_SHUTOFF:
		status = "ready";
		break;
	case VIR_DOMAIN_CRASHED:
		status = "crashed";
		break;
	default:
		break;
	}
	if (ret_power)
		*ret_power = power;
	return status;
}

static bool vir_not_found(void)
{
	virErrorPtr e = virGetLastError();
	return e && e->code == VIR_ERR_NO_DOMAIN;
}

static const char *vir_msg(void)
{
	const char *m = virGetLastErrorMessage();
	return m ? m : "unknown libvirt error";
}

/* The QEMU pid of a running domain, from libvirt's pid file; negative errno otherwise. */
static int guests_qemu_pid(const char *sid)
{
	_cleanup_free_ char *p = strjoin("/run/libvirt/qemu/", sid, ".pid"), *txt = NULL;
	if (!p)
		return -ENOMEM;
	int r = read_file(p, 64, &txt, NULL);
	if (r < 0)
		return r;
	char *end;
	long pid = strtol(txt, &end, 10);
	if (pid <= 0 || (*end && *end != '\n'))
		return -EINVAL;
	return (int)pid;
}

static int domain_vnc_port(virDomainPtr dom)
{
	_cleanup_free_ char *xml = virDomainGetXMLDesc(dom, 0);
	if (!xml)
		return -1;
	xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL, XML_PARSE_NONET);
	if (!doc)
		return -1;
	int port = -1;
	xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
	if (ctx) {
		xmlXPathObjectPtr o = xmlXPathEvalExpression(
		    (const xmlChar *)"string(/domain/devices/graphics[@type='vnc']/@port)", ctx);
		if (o && o->type == XPATH_STRING && o->stringval && *o->stringval)
			port = atoi((const char *)o->stringval) > 0
				   ? atoi((const char *)o->stringval)
				   : -1;
		xmlXPathFreeObject(o);
		xmlXPathFreeContext(ctx);
	}
	xmlFreeDoc(doc);
	return port;
}

/* Block jobs (stream, mirror, commit) running on the disks of an active domain. */
static int domain_block_jobs(virDomainPtr dom)
{
	if (virDomainIsActive(dom) != 1)
		return 0;
	_cleanup_free_ char *xml = virDomainGetXMLDesc(dom, 0);
	if (!xml)
		return 0;
	xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL, XML_PARSE_NONET);
	if (!doc)
		return 0;
	int n = 0;
	xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
	xmlXPathObjectPtr o =
	    ctx ? xmlXPathEvalExpression((const xmlChar *)"/domain/devices/disk/target/@dev", ctx)
		: NULL;
	for (int i = 0; o && o->nodesetval && i < o->nodesetval->nodeNr; i++) {
		xmlChar *dev = xmlNodeGetContent(o->nodesetval->nodeTab[i]);
		virDomainBlockJobInfo info;
		if (dev && virDomainGetBlockJobInfo(dom, (const char *)dev, &info, 0) == 1)
			n++;
		xmlFree(dev);
	}
	xmlXPathFreeObject(o);
	xmlXPathFreeContext(ctx);
	xmlFreeDoc(doc);
	return n;
}

const char *guest_status_cloudpods(const char *status, const char **ret_reason)
{
	const char *reason = NULL, *out = "unknown";
	if (streq_ptr(status, "running") || streq_ptr(status, "ready") ||
	    streq_ptr(status, "suspend"))
		out = status;
	else if (streq_ptr(status, "stopping"))
		out = "running"; /* QEMU still runs until the guest has shut down */
	else if (streq_ptr(status, "crashed")) {
		out = "ready";
		reason = "crashed";
	}
	if (ret_reason)
		*ret_reason = reason;
	return out;
}

/* ---- operations ---- */

struct op_ctx {
	struct agent *a;
	enum guest_op op;
	char *sid;
	json_t *args;
	op_done_fn cb;
	void *userdata;
	struct op_reply reply;
	/* results for the table update on the loop thread */
	char *new_status;
	char *name;
	bool removed, created;
	bool marked_creating; /* counted in guests->creating */
	/* a QEMU was started: its version ("x.y.z") and VNC port go to the region's metadata */
	char *qemu_version;
	int vnc_port;
	char *vnc_password; /* the console password (agent/console.h), when the guest has one */
};

static void reply_set(struct op_ctx *c, int code, json_t *body)
{
	json_decref(c->reply.body);
	c->reply.code = code;
	c->reply.body = body;
}

static void reply_error(struct op_ctx *c, int code, const char *cls, const char *fmt, ...)
    _printf_(4, 5);
static void reply_error(struct op_ctx *c, int code, const char *cls, const char *fmt, ...)
{
	char details[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(details, sizeof(details), fmt, ap);
	va_end(ap);
	reply_set(c, code, op_error_body(code, cls, "%s", details));
}

static void reply_ok(struct op_ctx *c, json_t *body)
{
	reply_set(c, 200, body ? body : json_pack("{s:s}", "result", "ok"));
}

static char *workspace_dir(const struct config *cfg, const char *sid)
{
	return strjoin(cfg->servers_path, "/", sid);
}

static char *workspace_desc(const struct config *cfg, const char *sid)
{
	return strjoin(cfg->servers_path, "/", sid, "/desc");
}

/* Loads and parses the stored descriptor; -ENOENT when there is no workspace. */
static int load_desc(const struct config *cfg, const char *sid, json_t **ret_json,
		     struct guest_desc **ret_desc, char **ret_error)
{
	_cleanup_free_ char *p = workspace_desc(cfg, sid), *txt = NULL;
	if (!p)
		return -ENOMEM;
	int r = read_file(p, DESC_MAX, &txt, NULL);
	if (r < 0)
		return r;
	json_error_t jerr;
	_cleanup_(json_decrefp) json_t *j = json_loads(txt, 0, &jerr);
	if (!j)
		return -EBADMSG;
	_cleanup_guest_desc_ struct guest_desc *d = NULL;
	r = guest_desc_parse(j, cfg->local_image_path, &d, ret_error);
	if (r < 0)
		return r;
	if (ret_desc)
		*ret_desc = TAKE_PTR(d);
	if (ret_json)
		*ret_json = TAKE_PTR(j);
	return 0;
}

/* Consoles listen on vnc_listen, by default on the node's access address (set once at startup,
 * before any operation runs, so workers may read it), never on every address (H1). */
static void domxml_options(const struct agent *a, struct domxml_opts *o)
{
	/* Probed once: without sfq every guest with a NIC limit (the real region gives each NIC
	 * its wire's bandwidth by default) would fail to start. */
	static int sfq = -1;
	if (sfq < 0) {
		sfq = domxml_sfq_available();
		if (!sfq)
			log_warning("Guest NIC bandwidth limits are not applied: the kernel has no "
				    "sfq qdisc (sch_sfq), which libvirt needs to shape them");
	}
	const struct config *cfg = &a->cfg;
	const char *listen = cfg->vnc_listen;
	if (isempty(listen))
		listen = hostnets_access_ip(a->hostnets);
	*o = (struct domxml_opts){
	    .kvm = domxml_virt_is_kvm(cfg->virt_type),
	    .vnc_listen = isempty(listen) ? "127.0.0.1" : listen,
	    .no_bandwidth = !sfq,
	};
	const char *code, *vars;
	if (domxml_find_ovmf(&code, &vars) >= 0) {
		o->ovmf_code = code;
		o->ovmf_vars = vars;
	}
}

static int render_domain(const struct agent *a, const char *sid, const struct guest_desc *d,
			 const char *console_password, char **ret_xml, char **ret_error)
{
	struct domxml_opts o;
	domxml_options(a, &o);
	o.console_password = console_password;
	_cleanup_free_ char *err = NULL;
	int r = domxml_render(d, sid, &o, ret_xml, &err);
	if (r < 0 && ret_error)
		*ret_error = err ? TAKE_PTR(err) : strdup(strerror(-r));
	return r;
}

static int define_domain(virConnectPtr conn, const char *xml, char **ret_error)
{
	virDomainPtr dom = virDomainDefineXML(conn, xml);
	if (!dom) {
		if (ret_error)
			*ret_error = strdup(vir_msg());
		return -EIO;
	}
	virDomainFree(dom);
	return 0;
}

/* The guest other than sid whose stored descriptor uses path: as a disk (as_disk), or as a
 * backing image or cdrom (!as_disk); NULL when none. Base images and ISOs are shared; another
 * guest's disk is that guest's data and never backs or is attached to a second guest, and a
 * path another guest reads (a cdrom that does not exist yet, say) never becomes a disk. */
static char *path_user(const struct config *cfg, const char *sid, const char *path, bool as_disk)
{
	DIR *dir = opendir(cfg->servers_path);
	struct dirent *de;
	char *user = NULL;
	while (dir && !user && (de = readdir(dir))) {
		if (!id_is_valid(de->d_name, 64) || streq(de->d_name, sid))
			continue;
		_cleanup_guest_desc_ struct guest_desc *d = NULL;
		if (load_desc(cfg, de->d_name, NULL, &d, NULL) < 0)
			continue;
		bool hit = false;
		for (size_t i = 0; i < d->n_disks; i++)
			hit = hit || (as_disk ? streq(d->disks[i].path, path)
					      : streq_ptr(d->disks[i].image_path, path));
		for (size_t i = 0; !as_disk && i < d->n_cdroms; i++)
			hit = hit || streq_ptr(d->cdroms[i].path, path);
		if (hit)
			user = strdup(de->d_name);
	}
	if (dir)
		closedir(dir);
	return user;
}

/* True when the disk's path is <root>/<disk_id> of one of the disk roots. */
static bool disk_at_own_path(const struct config *cfg, const struct guest_disk *k)
{
	STRV_FOREACH (root, cfg->local_image_path) {
		size_t l = strlen(*root);
		if (strneq(k->path, *root, l) && k->path[l] == '/' &&
		    streq(k->path + l + 1, k->disk_id))
			return true;
	}
	return false;
}

/* Refuses (400) an image_path or cdrom that is another guest's disk, and a disk that another
 * guest uses as a backing image or cdrom. */
static bool check_shared_paths(struct op_ctx *c, const struct guest_desc *d)
{
	const struct config *cfg = &c->a->cfg;
	for (size_t i = 0; i < d->n_disks + d->n_cdroms; i++) {
		bool disk = i < d->n_disks;
		size_t k = disk ? i : i - d->n_disks;
		const char *p = disk ? d->disks[k].image_path : d->cdroms[k].path;
		_cleanup_free_ char *owner = p ? path_user(cfg, c->sid, p, true) : NULL;
		if (owner) {
			reply_error(c, 400, NULL, "%s[%zu].%s: %s is a disk of guest %s",
				    disk ? "disks" : "cdroms", k, disk ? "image_path" : "path", p,
				    owner);
			return false;
		}
		_cleanup_free_ char *reader =
		    disk ? path_user(cfg, c->sid, d->disks[k].path, false) : NULL;
		if (reader) {
			reply_error(c, 400, NULL,
				    "disks[%zu].path: %s is a backing image or cdrom of guest %s",
				    k, d->disks[k].path, reader);
			return false;
		}
	}
	return true;
}

/* M4: a domain the agent did not define is left alone, whatever the caller asks. */
static bool refuse_foreign(struct op_ctx *c, virDomainPtr dom)
{
	if (!dom || virt_domain_is_ours(dom))
		return false;
	reply_error(c, 409, "ConflictError",
		    "domain %s was not defined by hostagent (no hostagent metadata): it is not "
		    "managed here and is left alone",
		    c->sid);
	return true;
}

static void op_create(struct op_ctx *c, virConnectPtr conn, bool is_sync)
{
	const struct config *cfg = &c->a->cfg;
	json_t *dj = json_object_get(c->args, "desc");
	if (!json_is_object(dj)) {
		reply_error(c, 400, NULL, "desc: missing or not an object");
		return;
	}
	_cleanup_free_ char *err = NULL, *text = NULL;
	_cleanup_guest_desc_ struct guest_desc *d = NULL;
	int r = guest_desc_parse(dj, cfg->local_image_path, &d, &err);
	if (r < 0) {
		reply_error(c, 400, NULL, "%s", err ? err : strerror(-r));
		return;
	}
	c->name = strdup(d->name);
	_cleanup_(virDomainFreep) virDomainPtr dom = virDomainLookupByName(conn, c->sid);
	_cleanup_(json_decrefp) json_t *old_json = NULL;
	_cleanup_guest_desc_ struct guest_desc *old = NULL;
	int have_ws = load_desc(cfg, c->sid, &old_json, &old, NULL);

	if (refuse_foreign(c, dom))
		return;
	if (!is_sync && dom) {
		if (have_ws >= 0 && json_equal(old_json, dj)) {
			reply_ok(
			    c, json_pack("{s:s,s:s}", "result", "ok", "details", "already exists"));
			return;
		}
		reply_error(c, 409, "ConflictError",
			    "guest %s already exists with a different descriptor; use sync",
			    c->sid);
		return;
	}
	if (is_sync && !dom) {
		reply_error(c, 404, "NotFoundError", "guest %s not found", c->sid);
		return;
	}
	if (is_sync && old && !streq(old->uuid, d->uuid)) {
		reply_error(c, 400, NULL, "uuid: cannot change from %s to %s", old->uuid, d->uuid);
		return;
	}

	/* Everything is validated before the host is touched. */
	if (!check_shared_paths(c, d))
		return;
	_cleanup_free_ char *xml = NULL;
	r = render_domain(c->a, c->sid, d, NULL, &xml, &err);
	if (r < 0) {
		reply_error(c, r == -ENOMEM ? 500 : 400, NULL, "%s", strempty(err));
		return;
	}
	_cleanup_free_ char *ws = workspace_dir(cfg, c->sid), *descp = workspace_desc(cfg, c->sid);
	bool made_ws = false;
	struct stat st;
	if (stat(ws, &st) < 0) {
		r = mkdir_p(ws, 0700);
		if (r < 0) {
			reply_error(c, 500, NULL, "cannot create workspace %s: %s", ws,
				    strerror(-r));
			return;
		}
		made_ws = true;
	}
	/* The console password lives in the workspace (0600) and goes into the domain (H1). */
	char *console_pw = NULL;
	r = console_password_ensure(ws, &console_pw);
	if (r >= 0) {
		free(xml);
		xml = NULL;
		r = render_domain(c->a, c->sid, d, console_pw, &xml, &err);
	}
	console_pw = erase_and_free(console_pw);
	if (r < 0) {
		reply_error(c, 500, NULL, "cannot set the console password of %s: %s", c->sid,
			    err ? err : strerror(-r));
		/* Not goto rollback: that label is in the scope of cleanup variables declared
		 * below, which a jump from here would skip. */
		if (made_ws)
			rm_rf(ws);
		return;
	}
	/* Disks: only the ones that do not exist yet are created, and only those are removed
	 * again when a later step fails. */
	_cleanup_free_ struct guest_disk *fresh = calloc(d->n_disks + 1, sizeof(*fresh));
	if (!fresh) {
		reply_error(c, 500, NULL, "out of memory");
		goto rollback;
	}
	struct guest_desc fresh_desc = *d;
	fresh_desc.n_disks = 0;
	fresh_desc.disks = fresh;
	for (size_t i = 0; i < d->n_disks; i++) {
		if (access(d->disks[i].path, F_OK) < 0) {
			fresh[fresh_desc.n_disks++] = d->disks[i];
			continue;
		}
		/* An existing file is only ever this guest's own disk from its stored descriptor:
		 * never another guest's disk or a base image, which a later delete would remove. */
		bool own = false;
		for (size_t k = 0; old && k < old->n_disks; k++)
			if (streq(old->disks[k].path, d->disks[i].path))
				own = true;
		/* The disk routes (agent/diskops.h) create a disk at <root>/<disk_id> before the
		 * guest that uses it: that file is this disk when no other guest claims it. */
		_cleanup_free_ char *claimed = NULL;
		if (!own && disk_at_own_path(cfg, &d->disks[i]) &&
		    !(claimed = path_user(cfg, c->sid, d->disks[i].path, true)))
			own = true;
		if (!own) {
			reply_error(
			    c, 409, "ConflictError",
			    "disks[%zu].path: %s already exists and is not a disk of guest %s", i,
			    d->disks[i].path, c->sid);
			goto rollback;
		}
	}
	r = disks_prepare(d, cfg->local_image_path, &err);
	if (r < 0) {
		reply_error(c, r == -EEXIST ? 409 : 500, NULL, "%s", err ? err : strerror(-r));
		goto rollback;
	}
	/* The descriptor goes first: a crash between the two steps leaves a workspace the next
	 * start lists as "workspace without a libvirt domain" (and a retried create completes),
	 * never a domain nobody manages. */
	text = json_dumps(dj, JSON_SORT_KEYS | JSON_COMPACT);
	r = text ? write_file_atomic(descp, text, strlen(text), 0600) : -ENOMEM;
	if (r < 0) {
		reply_error(c, 500, NULL, "cannot write %s: %s", descp, strerror(-r));
		goto rollback_disks;
	}
	r = define_domain(conn, xml, &err);
	if (r < 0) {
		reply_error(c, 500, NULL, "cannot define domain %s: %s", c->sid, strempty(err));
		/* Put the previous descriptor back (sync), or take the new one away (create). */
		_cleanup_free_ char *old_text =
		    old_json ? json_dumps(old_json, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
		if (old_text)
			write_file_atomic(descp, old_text, strlen(old_text), 0600);
		else
			unlink(descp);
		goto rollback_disks;
	}
	c->created = true;
	if (is_sync) {
		int state = 0;
		if (dom && virDomainGetState(dom, &state, NULL, 0) == 0 &&
		    state != VIR_DOMAIN_SHUTOFF) {
			reply_ok(c, json_pack("{s:s,s:b}", "result", "ok", "restart_required", 1));
			return;
		}
	}
	c->new_status = strdup("ready");
	reply_ok(c, NULL);
	return;

rollback_disks:
	disks_remove(&fresh_desc, cfg->local_image_path);
rollback:
	if (made_ws)
		rm_rf(ws);
}

/* Starts dom. A VNC autoport can be lost between libvirt's check and QEMU's bind (another
 * process on the node network, or a second libvirtd, took it): libvirt then releases the port
 * and a second attempt gets the next free one. Other failures are not retried. */
static int start_domain(virDomainPtr dom, const char *sid)
{
	for (int attempt = 1;; attempt++) {
		if (virDomainCreate(dom) == 0)
			return 0;
		const char *msg = vir_msg();
		if (attempt >= 3 || !strstr(msg, "Failed to find an available port"))
			return -EIO;
		log_kv(LOG_WARNING, "VNC port taken while QEMU started, starting again", "sid", sid,
		       NULL);
	}
}

/* libvirt's hypervisor version (QEMU's for the qemu driver) as "x.y.z"; NULL when unknown. */
static char *hypervisor_version(virDomainPtr dom)
{
	unsigned long v = 0;
	char *s = NULL;
	if (virConnectGetVersion(virDomainGetConnect(dom), &v) < 0 || v == 0)
		return NULL;
	if (asprintf_safe(&s, "%lu.%lu.%lu", v / 1000000, v / 1000 % 1000, v % 1000) < 0)
		return NULL;
	return s;
}

/* What the region learns of a new QEMU (serverpush_started()): version and console password;
 * the VNC port is read by the caller. */
static void started_metadata(struct op_ctx *c, virDomainPtr dom)
{
	c->qemu_version = hypervisor_version(dom);
	_cleanup_free_ char *ws = workspace_dir(&c->a->cfg, c->sid);
	if (ws && console_password_read(ws, &c->vnc_password) < 0)
		c->vnc_password = NULL;
}

static void op_start(struct op_ctx *c, virDomainPtr dom)
{
	int state = 0;
	if (virDomainGetState(dom, &state, NULL, 0) < 0) {
		reply_error(c, 500, NULL, "%s", vir_msg());
		return;
	}
	const char *details = "started";
	if (state == VIR_DOMAIN_PAUSED) {
		if (virDomainResume(dom) < 0) {
			reply_error(c, 500, NULL, "cannot resume %s: %s", c->sid, vir_msg());
			return;
		}
		details = "resumed";
	} else if (state == VIR_DOMAIN_RUNNING || state == VIR_DOMAIN_BLOCKED) {
		details = "already running";
	} else if (start_domain(dom, c->sid) < 0) {
		reply_error(c, 500, NULL, "cannot start %s: %s", c->sid, vir_msg());
		return;
	}
	c->new_status = strdup("running");
	c->vnc_port = domain_vnc_port(dom);
	if (!streq(details, "already running"))
		started_metadata(c, dom);
	reply_ok(c, json_pack("{s:i,s:b,s:s}", "vnc_port", c->vnc_port, "is_running", 1, "details",
			      details));
}

static bool wait_state(virDomainPtr dom, int want, int timeout_ms)
{
	for (int waited = 0;; waited += 100) {
		int state = 0;
		if (virDomainGetState(dom, &state, NULL, 0) == 0 && state == want)
			return true;
		if (waited >= timeout_ms)
			return false;
		struct timespec ts = {0, 100 * 1000000L};
		nanosleep(&ts, NULL);
	}
}

static void op_stop(struct op_ctx *c, virDomainPtr dom)
{
	json_t *t = json_object_get(c->args, "timeout"), *f = json_object_get(c->args, "is_force");
	if ((t && !json_is_integer(t)) || (f && !json_is_boolean(f))) {
		reply_error(c, 400, NULL,
			    t && !json_is_integer(t) ? "timeout: expected integer"
						     : "is_force: expected boolean");
		return;
	}
	json_int_t timeout = t ? json_integer_value(t) : 30;
	if (timeout < 0 || timeout > 3600) {
		reply_error(c, 400, NULL, "timeout: out of range 0..3600");
		return;
	}
	int state = 0;
	if (virDomainGetState(dom, &state, NULL, 0) < 0) {
		reply_error(c, 500, NULL, "%s", vir_msg());
		return;
	}
	c->new_status = strdup("ready");
	if (state == VIR_DOMAIN_SHUTOFF || state == VIR_DOMAIN_CRASHED) {
		reply_ok(c, json_pack("{s:s,s:s}", "result", "ok", "details", "already stopped"));
		return;
	}
	const char *how = "forced";
	if (!json_is_true(f) && timeout > 0 &&
	    virDomainShutdownFlags(dom, VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN) == 0 &&
	    wait_state(dom, VIR_DOMAIN_SHUTOFF, (int)timeout * 1000))
		how = "graceful";
	else if (virDomainDestroy(dom) < 0) {
		/* Keep libvirt's message before the state query below replaces it. */
		_cleanup_free_ char *msg = strdup(vir_msg());
		if (!wait_state(dom, VIR_DOMAIN_SHUTOFF, 0)) {
			reply_error(c, 500, NULL, "cannot stop %s: %s", c->sid, strempty(msg));
			free(c->new_status);
			c->new_status = NULL;
			return;
		}
	}
	reply_ok(c, json_pack("{s:s,s:s}", "result", "ok", "details", how));
}

static void op_simple(struct op_ctx *c, virDomainPtr dom)
{
	int state = 0, r = 0;
	if (virDomainGetState(dom, &state, NULL, 0) < 0) {
		reply_error(c, 500, NULL, "%s", vir_msg());
		return;
	}
	bool running = state == VIR_DOMAIN_RUNNING || state == VIR_DOMAIN_BLOCKED;
	const char *details = "done";
	switch (c->op) {
	case GUEST_OP_SUSPEND:
		if (state == VIR_DOMAIN_PAUSED)
			details = "already suspended";
		else if (!running) {
			reply_error(c, 409, "InvalidStatusError", "guest %s is not running",
				    c->sid);
			return;
		} else
			r = virDomainSuspend(dom);
		c->new_status = strdup("suspend");
		break;
	case GUEST_OP_RESUME:
		if (running)
			details = "already running";
		else if (state != VIR_DOMAIN_PAUSED) {
			reply_error(c, 409, "InvalidStatusError", "guest %s is not suspended",
				    c->sid);
			return;
		} else
			r = virDomainResume(dom);
		c->new_status = strdup("running");
		break;
	case GUEST_OP_REBOOT: {
		/* is_force: a hardware reset (same QEMU). Otherwise a cold reboot that works
		 * whatever runs inside: ACPI shutdown with a timeout, then a fresh start. */
		json_t *f = json_object_get(c->args, "is_force");
		if (!running && state != VIR_DOMAIN_PAUSED) {
			reply_error(c, 409, "InvalidStatusError", "guest %s is not running",
				    c->sid);
			return;
		}
		if (json_is_true(f))
			r = virDomainReset(dom, 0);
		else {
			json_t *t = json_object_get(c->args, "timeout");
			int timeout = json_is_integer(t) ? (int)json_integer_value(t) : 10;
			if (timeout < 0 || timeout > 3600)
				timeout = 10;
			if (!(virDomainShutdownFlags(dom, VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN) ==
				  0 &&
			      wait_state(dom, VIR_DOMAIN_SHUTOFF, timeout * 1000)))
				r = virDomainDestroy(dom);
			if (r == 0)
				r = start_domain(dom, c->sid);
			if (r == 0) {
				c->vnc_port = domain_vnc_port(dom);
				started_metadata(c, dom);
			}
		}
		c->new_status = strdup("running");
		details = "rebooted";
		break;
	}
	default:
		break;
	}
	if (r < 0) {
		reply_error(c, 500, NULL, "cannot %s %s: %s", guest_op_to_string(c->op), c->sid,
			    vir_msg());
		free(c->new_status);
		c->new_status = NULL;
		return;
	}
	reply_ok(c, json_pack("{s:s,s:s}", "result", "ok", "details", details));
}

static void op_status(struct op_ctx *c, virDomainPtr dom)
{
	int state = 0;
	if (virDomainGetState(dom, &state, NULL, 0) < 0) {
		reply_error(c, 500, NULL, "%s", vir_msg());
		return;
	}
	const char *power, *reason;
	const char *status = state_to_status(state, &power);
	c->new_status = strdup(status);
	/* The region maps anything but its own states to unknown (SetStatusFromHost). */
	json_t *body = json_pack("{s:s,s:s,s:i}", "status", guest_status_cloudpods(status, &reason),
				 "power_states", power, "block_jobs_count", domain_block_jobs(dom));
	if (body && reason)
		json_object_set_new(body, "reason", json_string(reason));
	int pid = streq(power, "on") ? guests_qemu_pid(c->sid) : -1;
	if (pid > 0)
		json_object_set_new(body, "qemu_pid", json_integer(pid));
	reply_ok(c, body);
}

/* The monitor reaches QEMU, which runs as root on the host: commands that write files
 * (screendump, dump-guest-memory), open host paths (drive_add, blockdev-add) or run programs
 * (migrate exec:) must not pass. Read-only queries and run control do. */
static void op_monitor(struct op_ctx *c, virDomainPtr dom)
{
	json_t *cmd = json_object_get(c->args, "cmd"), *qmp = json_object_get(c->args, "qmp");
	if (!json_is_string(cmd) || json_string_length(cmd) == 0 ||
	    json_string_length(cmd) > 64 * 1024) {
		reply_error(c, 400, NULL, "cmd: missing or not a string");
		return;
	}
	if (qmp && !json_is_boolean(qmp)) {
		reply_error(c, 400, NULL, "qmp: expected boolean");
		return;
	}
	_cleanup_free_ char *fwd = NULL;
	int r = monitor_filter(json_string_value(cmd), json_is_true(qmp), &fwd);
	if (r == -EPERM) {
		reply_error(c, 403, "ForbiddenError",
			    "cmd: only read-only queries (HMP info ..., QMP query-*) and power/run "
			    "control (system_powerdown, system_reset, stop, cont) are allowed; QMP "
			    "takes only execute, arguments and id");
		return;
	}
	if (r < 0) {
		reply_error(c, 400, NULL, "cmd: %s",
			    r == -EINVAL ? "malformed (QMP: one JSON object without duplicate "
					   "keys; HMP: one line)"
					 : strerror(-r));
		return;
	}
	char *out = NULL;
	unsigned flags = json_is_true(qmp) ? 0 : VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP;
	if (virDomainQemuMonitorCommand(dom, fwd, &out, flags) < 0) {
		reply_error(c, 409, NULL, "%s", vir_msg());
		return;
	}
	reply_ok(c, json_pack("{s:s}", "results", out ? out : ""));
	free(out);
}

/* The console of a guest as an operator connects to it: port, address, password (H1). */
static void op_console(struct op_ctx *c, virDomainPtr dom)
{
	_cleanup_free_ char *ws = workspace_dir(&c->a->cfg, c->sid);
	char *pw = NULL;
	int r = console_password_read(ws, &pw);
	if (r < 0 && r != -ENOENT) {
		reply_error(c, 500, NULL, "cannot read the console password of %s: %s", c->sid,
			    strerror(-r));
		return;
	}
	struct domxml_opts o;
	domxml_options(c->a, &o);
	json_t *b =
	    json_pack("{s:i,s:s}", "vnc_port", domain_vnc_port(dom), "listen", o.vnc_listen);
	if (b && pw)
		json_object_set_new(b, "password", json_string(pw));
	else if (b)
		json_object_set_new(b, "password", json_null());
	pw = erase_and_free(pw);
	reply_ok(c, b);
}

static void op_delete(struct op_ctx *c, virConnectPtr conn)
{
	const struct config *cfg = &c->a->cfg;
	_cleanup_(virDomainFreep) virDomainPtr dom = virDomainLookupByName(conn, c->sid);
	if (!dom && !vir_not_found()) {
		reply_error(c, 500, NULL, "%s", vir_msg());
		return;
	}
	if (refuse_foreign(c, dom))
		return;
	_cleanup_free_ char *ws = workspace_dir(cfg, c->sid);
	struct stat st;
	if (!dom && stat(ws, &st) < 0) {
		c->removed = true;
		reply_ok(c, json_pack("{s:s,s:s}", "result", "ok", "details", "already deleted"));
		return;
	}
	if (dom) {
		if (virDomainIsActive(dom) == 1 && virDomainDestroy(dom) < 0) {
			reply_error(c, 500, NULL, "cannot destroy %s: %s", c->sid, vir_msg());
			return;
		}
		unsigned flags = VIR_DOMAIN_UNDEFINE_NVRAM | VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
				 VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
				 VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA;
		if (virDomainUndefineFlags(dom, flags) < 0 && virDomainUndefine(dom) < 0) {
			reply_error(c, 500, NULL, "cannot undefine %s: %s", c->sid, vir_msg());
			return;
		}
	}
	/* The disk files stay: they are the region's, which deletes them through the disk
	 * routes (and keeps the ones that outlive the guest). */
	int r = rm_rf(ws);
	if (r < 0) {
		reply_error(c, 500, NULL, "cannot remove workspace %s: %s", ws, strerror(-r));
		return;
	}
	c->removed = true;
	reply_ok(c, NULL);
}

static void op_work(void *userdata)
{
	struct op_ctx *c = userdata;
	_cleanup_(virConnectClosep) virConnectPtr conn = virt_conn_ref(c->a->virt);
	if (!conn) {
		reply_error(c, 503, NULL, "libvirt is not connected");
		return;
	}
	switch (c->op) {
	case GUEST_OP_CREATE:
		op_create(c, conn, false);
		return;
	case GUEST_OP_SYNC:
		op_create(c, conn, true);
		return;
	case GUEST_OP_DELETE:
		op_delete(c, conn);
		return;
	default:
		break;
	}
	_cleanup_(virDomainFreep) virDomainPtr dom = virDomainLookupByName(conn, c->sid);
	if (!dom) {
		if (vir_not_found())
			reply_error(c, 404, "NotFoundError", "guest %s not found", c->sid);
		else {
			reply_error(c, 503, NULL, "%s", vir_msg());
			if (virConnectIsAlive(conn) != 1)
				virt_connection_lost(c->a->virt);
		}
		return;
	}
	if (c->op != GUEST_OP_STATUS && refuse_foreign(c, dom))
		return;
	switch (c->op) {
	case GUEST_OP_START:
		op_start(c, dom);
		break;
	case GUEST_OP_STOP:
		op_stop(c, dom);
		break;
	case GUEST_OP_STATUS:
		op_status(c, dom);
		break;
	case GUEST_OP_MONITOR:
		op_monitor(c, dom);
		break;
	case GUEST_OP_CONSOLE:
		op_console(c, dom);
		break;
	default:
		op_simple(c, dom);
		break;
	}
	if (c->reply.code >= 500 && virConnectIsAlive(conn) != 1)
		virt_connection_lost(c->a->virt);
}

static void creating_remove(struct guests *g, const char *sid)
{
	size_t n = strv_length(g->creating);
	for (size_t i = 0; i < n; i++)
		if (streq(g->creating[i], sid)) {
			free(g->creating[i]);
			memmove(&g->creating[i], &g->creating[i + 1], sizeof(char *) * (n - i));
			return;
		}
}

bool guests_creating(struct guests *g, const char *sid)
{
	return g && strv_contains(g->creating, sid);
}

static void op_done(void *userdata)
{
	struct op_ctx *c = userdata;
	struct guests *g = c->a->guests;
	if (!c->reply.body)
		reply_error(c, 503, NULL, "the agent is shutting down");
	if (g && c->reply.code < 300) {
		g->gen++;
		if (c->removed)
			guest_remove(g, c->sid);
		else if (c->new_status || c->created)
			guest_set(g, c->sid, c->name, c->new_status, c->created ? 1 : -1);
	}
	if (g && c->marked_creating)
		creating_remove(g, c->sid);
	if (c->op == GUEST_OP_STATUS && c->reply.code == 200 && json_is_object(c->reply.body)) {
		const char *hid = report_host_id(c->a->report);
		if (hid)
			json_object_set_new(c->reply.body, "host_id", json_string(hid));
	}
	if (c->qemu_version && c->reply.code < 300)
		serverpush_started(config_standalone(&c->a->cfg) ? NULL : c->a->region, c->sid,
				   c->qemu_version, c->vnc_port, c->vnc_password);
	log_kv(c->reply.code < 300 ? LOG_INFO : LOG_WARNING, "Guest operation finished", "op",
	       guest_op_to_string(c->op), "sid", c->sid, "code",
	       c->reply.code >= 500   ? "5xx"
	       : c->reply.code >= 400 ? "4xx"
				      : "2xx",
	       NULL);
	c->cb(&c->reply, c->userdata);
	json_decref(c->reply.body);
	json_decref(c->args);
	free(c->new_status);
	free(c->name);
	free(c->qemu_version);
	erase_and_free(c->vnc_password);
	free(c->sid);
	free(c);
}

/* NICs without a bridge get the one of the host network on their wire (loop thread: the
 * host network table is the loop's). */
static void fill_bridges(struct op_ctx *c)
{
	json_t *desc = json_object_get(c->args, "desc");
	_cleanup_free_ char *err = NULL;
	json_t *filled = NULL;
	if (!json_is_object(desc))
		return; /* op_create refuses it */
	int r = guest_desc_fill_bridges(desc, c->a->hostnets, &filled, &err);
	if (r < 0) {
		reply_error(c, r == -ENOMEM ? 500 : 400, NULL, "%s", err ? err : strerror(-r));
		return;
	}
	if (!filled)
		return;
	json_t *args = json_copy(c->args);
	if (!args || json_object_set_new(args, "desc", filled) < 0) {
		json_decref(args);
		reply_error(c, 500, NULL, "out of memory");
		return;
	}
	json_decref(c->args);
	c->args = args;
}

int agent_guest_op(struct agent *a, enum guest_op op, const char *sid, json_t *args, op_done_fn cb,
		   void *userdata)
{
	struct op_ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->a = a;
	c->op = op;
	c->cb = cb;
	c->userdata = userdata;
	c->args = args ? json_incref(args) : json_object();
	c->sid = strdup(strempty(sid));
	if (!c->sid || !c->args) {
		json_decref(c->args);
		free(c->sid);
		free(c);
		return -ENOMEM;
	}
	if (op >= _GUEST_OP_MAX)
		reply_error(c, 400, NULL, "unknown operation");
	else if (!id_is_valid(sid, 64))
		reply_error(c, 400, NULL, "sid: invalid guest id");
	else if (args && !json_is_object(args))
		reply_error(c, 400, NULL, "body: expected a JSON object");
	else if (a->stopping)
		reply_error(c, 503, NULL, "the agent is shutting down");
	if (!c->reply.body && (op == GUEST_OP_CREATE || op == GUEST_OP_SYNC))
		fill_bridges(c);
	if (!c->reply.body) {
		int r = tasks_submit(a->tasks, sid, op_work, op_done, c);
		if (r == 0) {
			if (op == GUEST_OP_CREATE && a->guests &&
			    strv_extend(&a->guests->creating, sid) >= 0)
				c->marked_creating = true;
			return 0;
		}
		reply_error(c, 503, NULL,
			    r == -EBUSY ? "too many queued operations, retry later"
					: "the agent is shutting down");
	}
	op_done(c);
	return 0;
}

/* ---- statuses of listed guests (POST /servers/upload-status) ---- */

struct statuses {
	struct agent *a;
	json_t *ids;
	op_done_fn cb;
	void *userdata;
	struct op_reply reply;
};

static void statuses_work(void *userdata)
{
	struct statuses *s = userdata;
	_cleanup_(virConnectClosep) virConnectPtr conn = virt_conn_ref(s->a->virt);
	if (!conn) {
		s->reply =
		    (struct op_reply){503, op_error_body(503, NULL, "libvirt is not connected")};
		return;
	}
	json_t *guests = json_object(), *missing = json_array();
	size_t i;
	json_t *v;
	json_array_foreach (s->ids, i, v) {
		const char *sid = json_string_value(v);
		_cleanup_(virDomainFreep) virDomainPtr dom = virDomainLookupByName(conn, sid);
		int state = 0;
		if (!dom || virDomainGetState(dom, &state, NULL, 0) < 0) {
			json_array_append_new(missing, json_string(sid));
			continue;
		}
		const char *power, *reason;
		const char *status =
		    guest_status_cloudpods(state_to_status(state, &power), &reason);
		json_t *e = json_pack("{s:s,s:s}", "status", status, "power_states", power);
		if (e && reason)
			json_object_set_new(e, "reason", json_string(reason));
		json_object_set_new(guests, sid, e);
	}
	s->reply =
	    (struct op_reply){200, json_pack("{s:o,s:o}", "guests", guests, "notfound", missing)};
}

static void statuses_done(void *userdata)
{
	struct statuses *s = userdata;
	if (!s->reply.body)
		s->reply =
		    (struct op_reply){503, op_error_body(503, NULL, "the agent is shutting down")};
	s->cb(&s->reply, s->userdata);
	json_decref(s->reply.body);
	json_decref(s->ids);
	free(s);
}

int agent_guest_statuses(struct agent *a, json_t *ids, op_done_fn cb, void *userdata)
{
	struct statuses *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	*s = (struct statuses){.a = a, .ids = json_incref(ids), .cb = cb, .userdata = userdata};
	int r = a->stopping ? -ESHUTDOWN
			    : tasks_submit(a->tasks, NULL, statuses_work, statuses_done, s);
	if (r < 0) {
		s->reply = (struct op_reply){
		    503, op_error_body(503, NULL, "%s",
				       r == -EBUSY ? "too many queued operations, retry later"
						   : "the agent is shutting down")};
		statuses_done(s);
	}
	return 0;
}

/* ---- listing and rebuilding (worker thread, then loop) ---- */

struct scan {
	struct agent *a;
	op_done_fn cb;
	void *userdata;
	json_t *servers; /* array of {id, name, status, power_states, managed, qemu_pid} */
	bool ok;
	char *error;
	bool rebuild;
	unsigned long gen; /* g->gen when the scan was submitted */
	unsigned retries;
};

static void scan_work(void *userdata)
{
	struct scan *s = userdata;
	const struct config *cfg = &s->a->cfg;
	_cleanup_(virConnectClosep) virConnectPtr conn = virt_conn_ref(s->a->virt);
	if (!conn) {
		s->error = strdup("libvirt is not connected");
		return;
	}
	virDomainPtr *doms = NULL;
	int n = virConnectListAllDomains(conn, &doms, 0);
	if (n < 0) {
		s->error = strdup(vir_msg());
		if (virConnectIsAlive(conn) != 1)
			virt_connection_lost(s->a->virt);
		return;
	}
	s->servers = json_array();
	for (int i = 0; i < n; i++) {
		const char *name = virDomainGetName(doms[i]);
		int state = 0;
		virDomainGetState(doms[i], &state, NULL, 0);
		const char *power, *status = state_to_status(state, &power);
		_cleanup_(json_decrefp) json_t *dj = NULL;
		_cleanup_guest_desc_ struct guest_desc *d = NULL;
		bool managed = id_is_valid(name, 64) && load_desc(cfg, name, &dj, &d, NULL) >= 0;
		json_t *e = json_pack("{s:s,s:s,s:s,s:b}", "id", name, "status", status,
				      "power_states", power, "managed", managed);
		if (d) {
			json_object_set_new(e, "name", json_string(d->name));
			json_object_set_new(e, "uuid", json_string(d->uuid));
		} else
			json_object_set_new(e, "workspace", json_string("missing or unreadable"));
		int pid = streq(power, "on") ? guests_qemu_pid(name) : -1;
		if (pid > 0)
			json_object_set_new(e, "qemu_pid", json_integer(pid));
		json_array_append_new(s->servers, e);
		virDomainFree(doms[i]);
	}
	free(doms);
	/* Workspaces without a domain: a half-created or externally undefined guest. */
	DIR *dir = opendir(cfg->servers_path);
	struct dirent *de;
	while (dir && (de = readdir(dir))) {
		if (!id_is_valid(de->d_name, 64))
			continue;
		bool seen = false;
		size_t i;
		json_t *e;
		json_array_foreach (s->servers, i, e)
			if (streq(json_string_value(json_object_get(e, "id")), de->d_name))
				seen = true;
		if (seen)
			continue;
		json_array_append_new(s->servers,
				      json_pack("{s:s,s:s,s:s,s:b,s:s}", "id", de->d_name, "status",
						"unknown", "power_states", "off", "managed", 1,
						"details", "workspace without a libvirt domain"));
	}
	if (dir)
		closedir(dir);
	s->ok = true;
}

static void scan_done(void *userdata)
{
	struct scan *s = userdata;
	struct guests *g = s->a->guests;
	if (s->ok && s->rebuild && g && g->gen != s->gen && s->retries < 10) {
		/* An operation or event changed a guest while libvirt was being listed: the list
		 * may be older than the table, so list again rather than install it. */
		struct scan *again = calloc(1, sizeof(*again));
		if (again) {
			*again = (struct scan){
			    .a = s->a, .rebuild = true, .gen = g->gen, .retries = s->retries + 1};
			if (tasks_submit(s->a->tasks, NULL, scan_work, scan_done, again) >= 0)
				s->rebuild = false;
			else
				free(again);
		}
	}
	if (s->ok && s->rebuild && g) {
		/* Replace the table with what libvirt and the workspaces say now. A guest that is
		 * no longer there (undefined while the connection was down) leaves through the
		 * hooks like a deleted one. */
		pthread_mutex_lock(&g->lock);
		_cleanup_strv_free_ char **before = calloc(g->n + 1, sizeof(char *));
		for (size_t k = 0; before && k < g->n; k++)
			before[k] = strdup(g->list[k].sid);
		table_clear(g);
		pthread_mutex_unlock(&g->lock);
		size_t i;
		json_t *e;
		json_array_foreach (s->servers, i, e) {
			const char *sid = json_string_value(json_object_get(e, "id"));
			const char *status = json_string_value(json_object_get(e, "status"));
			bool managed = json_is_true(json_object_get(e, "managed"));
			guest_set(g, sid, json_string_value(json_object_get(e, "name")), status,
				  managed);
			json_t *pid = json_object_get(e, "qemu_pid");
			if (streq(status, "running") || streq(status, "suspend")) {
				log_kv(LOG_INFO,
				       managed ? "Adopted running guest"
					       : "Running domain has no readable workspace; left "
						 "running as unknown",
				       "sid", sid, "status", status, NULL);
				if (json_is_integer(pid))
					hooks_running(g, sid, (int)json_integer_value(pid));
			}
		}
		for (size_t k = 0; before && before[k]; k++)
			if (!guest_find(g, before[k]))
				hooks_gone(g, before[k]);
	}
	if (s->cb) {
		struct op_reply reply;
		if (s->ok)
			reply = (struct op_reply){200, json_pack("{s:O}", "servers", s->servers)};
		else
			reply = (struct op_reply){
			    503,
			    op_error_body(503, NULL, "%s", s->error ? s->error : "shutting down")};
		s->cb(&reply, s->userdata);
		json_decref(reply.body);
	}
	json_decref(s->servers);
	free(s->error);
	free(s);
}

static int scan_submit(struct agent *a, bool rebuild, op_done_fn cb, void *userdata)
{
	struct scan *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	*s = (struct scan){.a = a, .cb = cb, .userdata = userdata, .rebuild = rebuild};
	if (a->guests)
		s->gen = a->guests->gen;
	int r = tasks_submit(a->tasks, NULL, scan_work, scan_done, s);
	if (r < 0) {
		s->error = strdup(r == -EBUSY ? "too many queued operations" : "shutting down");
		scan_done(s);
	}
	return 0;
}

int agent_guest_list(struct agent *a, op_done_fn cb, void *userdata)
{
	return scan_submit(a, false, cb, userdata);
}

/* ---- events ---- */

static const char *event_status(int event, int detail)
{
	switch (event) {
	case VIR_DOMAIN_EVENT_STARTED:
	case VIR_DOMAIN_EVENT_RESUMED:
		return "running";
	case VIR_DOMAIN_EVENT_SUSPENDED:
	case VIR_DOMAIN_EVENT_PMSUSPENDED:
		return "suspend";
	case VIR_DOMAIN_EVENT_SHUTDOWN:
		return "stopping";
	case VIR_DOMAIN_EVENT_STOPPED:
		return detail == VIR_DOMAIN_EVENT_STOPPED_CRASHED ? "crashed" : "ready";
	case VIR_DOMAIN_EVENT_CRASHED:
		return "crashed";
	case VIR_DOMAIN_EVENT_DEFINED:
		return NULL;
	default:
		return NULL;
	}
}

static void on_virt_event(const char *name, int event, int detail, void *userdata)
{
	struct guests *g = userdata;
	char ev[16], det[16];
	snprintf(ev, sizeof(ev), "%d", event);
	snprintf(det, sizeof(det), "%d", detail);
	log_kv(LOG_DEBUG, "libvirt lifecycle event", "domain", name, "event", ev, "detail", det,
	       NULL);
	g->gen++;
	if (event == VIR_DOMAIN_EVENT_UNDEFINED) {
		struct guest *x = guest_find(g, name);
		if (x && !x->managed)
			guest_remove(g, name);
		return;
	}
	const char *status = event_status(event, detail);
	if (!status)
		return;
	struct guest *x = guest_find(g, name);
	if (!x && !id_is_valid(name, 64))
		return;
	const char *old = x ? x->status : "none";
	if (!x || !streq_ptr(x->status, status))
		log_kv(LOG_INFO, "Guest state changed", "sid", name, "from", strempty(old), "to",
		       status, NULL);
	guest_set(g, name, NULL, status, x ? -1 : 0);
	/* Every new QEMU (an agent start, a cold reboot, or anyone else's start) raises STARTED:
	 * with adoption, the only place the running hooks (placement) fire. */
	if (event == VIR_DOMAIN_EVENT_STARTED && hooks_want_running(g)) {
		int pid = guests_qemu_pid(name);
		if (pid > 0)
			hooks_running(g, name, pid);
	}
}

static void on_virt_conn(bool connected, void *userdata)
{
	struct guests *g = userdata;
	g->connected = connected;
	if (connected)
		scan_submit(g->a, true, NULL, NULL);
}

/* ---- lifecycle ---- */

static void collect(FILE *f, void *userdata);
static void guests_count_states(struct guests *g,
				void (*fn)(const char *state, unsigned n, void *ud), void *ud);
static unsigned guests_unknown_locked(struct guests *g);

int guests_new(struct agent *a, struct guests **ret)
{
	struct guests *g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->a = a;
	pthread_mutex_init(&g->lock, NULL);
	*ret = g;
	return 0;
}

struct guests *guests_free(struct guests *g)
{
	if (!g)
		return NULL;
	table_clear(g);
	strv_free(g->creating);
	pthread_mutex_destroy(&g->lock);
	free(g);
	return NULL;
}

int guests_start(struct guests *g)
{
	const struct config *cfg = &g->a->cfg;
	int r = mkdir_p(cfg->servers_path, 0755);
	if (r < 0)
		return log_error_errno(r, "Cannot create servers_path %s: %m", cfg->servers_path);
	STRV_FOREACH (root, cfg->local_image_path) {
		r = mkdir_p(*root, 0755);
		if (r < 0)
			return log_error_errno(r, "Cannot create disk root %s: %m", *root);
	}
	if (g->a->metrics) {
		r = metrics_add_collector(g->a->metrics, collect, g);
		if (r < 0)
			return r;
	}
	return virt_start(g->a->virt, on_virt_event, on_virt_conn, g);
}

static bool guests_libvirt_connected(struct guests *g)
{
	return g && g->connected;
}

static unsigned guests_unknown_locked(struct guests *g)
{
	unsigned n = 0;
	for (size_t i = 0; i < g->n; i++)
		if (!g->list[i].managed && streq_ptr(g->list[i].status, "running"))
			n++;
	return n;
}

static void collect_state(const char *state, unsigned n, void *ud)
{
	char labels[64];
	snprintf(labels, sizeof(labels), "state=\"%s\"", state);
	metrics_write_sample(ud, "hostagent_guests", labels, n);
}

static void collect(FILE *f, void *userdata)
{
	struct guests *g = userdata;
	metrics_write_family(f, "hostagent_guests", "gauge", "Guests on this host by state.");
	guests_count_states(g, collect_state, f);
	metrics_write_family(f, "hostagent_guests_unknown", "gauge",
			     "Running domains without a readable workspace (left running).");
	pthread_mutex_lock(&g->lock);
	unsigned unknown = guests_unknown_locked(g);
	pthread_mutex_unlock(&g->lock);
	metrics_write_sample(f, "hostagent_guests_unknown", NULL, unknown);
	metrics_write_family(f, "hostagent_libvirt_connected", "gauge",
			     "1 while the libvirt connection is up.");
	metrics_write_sample(f, "hostagent_libvirt_connected", NULL, g->connected ? 1 : 0);
	metrics_write_family(f, "hostagent_libvirt_reconnects_total", "counter",
			     "Times the libvirt connection was re-established.");
	metrics_write_sample(f, "hostagent_libvirt_reconnects_total", NULL,
			     virt_reconnects(g->a->virt));
}

/* Number of guests per state: calls fn(state, count). */
static void guests_count_states(struct guests *g,
				void (*fn)(const char *state, unsigned n, void *ud), void *ud)
{
	static const char *const states[] = {"running",	 "ready",   "suspend",
					     "stopping", "crashed", "unknown"};
	unsigned counts[ELEMENTSOF(states)] = {0};
	pthread_mutex_lock(&g->lock);
	for (size_t s = 0; s < ELEMENTSOF(states); s++)
		for (size_t i = 0; i < g->n; i++)
			if (streq_ptr(g->list[i].status, states[s]))
				counts[s]++;
	pthread_mutex_unlock(&g->lock);
	for (size_t s = 0; s < ELEMENTSOF(states); s++)
		fn(states[s], counts[s], ud);
}

int guests_add_hooks(struct guests *g, guest_running_fn on_running, guest_state_fn on_state,
		     void *ud)
{
	if (g->n_hooks >= GUESTS_MAX_HOOKS)
		return -ENOSPC;
	g->hooks[g->n_hooks++] = (struct guest_hook){on_running, on_state, ud};
	return 0;
}

void guests_remove_hooks(struct guests *g, void *ud)
{
	if (!g)
		return;
	size_t k = 0;
	for (size_t i = 0; i < g->n_hooks; i++)
		if (g->hooks[i].ud != ud)
			g->hooks[k++] = g->hooks[i];
	g->n_hooks = k;
}

json_t *agent_not_ready_reasons(struct agent *a)
{
	json_t *reasons = json_array();
	if (!guests_libvirt_connected(a->guests))
		json_array_append_new(
		    reasons, json_sprintf("libvirt: not connected to %s", a->cfg.libvirt_uri));
	if (domxml_virt_is_kvm(a->cfg.virt_type) && access("/dev/kvm", R_OK | W_OK) < 0)
		json_array_append_new(reasons, json_string("kvm: /dev/kvm is not usable"));
	if (a->modules)
		agent_modules_reasons(a->modules, reasons);
	if (a->placer)
		placer_reasons(a->placer, reasons);
	if (a->report)
		report_reasons(a->report, reasons);
	/* NOT-READY-REASONS: other subsystems append their reasons here. */
	if (json_array_size(reasons) == 0) {
		json_decref(reasons);
		return NULL;
	}
	return reasons;
}

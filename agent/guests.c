/* The guest table (struct guests, agent/guests-internal.h: its hooks, creates in flight,
 * graceful stops waiting for power-off, lifecycle and metrics) and the guest operations. Each
 * operation runs on the worker pool, keyed by the guest id so that operations on one guest never
 * interleave, and calls libvirt through agent/virt.c only; the result comes back to the loop
 * thread, which owns the table. Nothing here invents state: status answers come from libvirt.
 * The listing and events are in agent/guests-list.c, the guest agent in agent/guests-qga.c, the
 * stored descriptors in agent/workspace.c. */
#include <pthread.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <time.h>

#include "agent/claims.h"
#include "agent/configdrive.h"
#include "agent/console.h"
#include "agent/deploy.h"
#include "agent/desc.h"
#include "agent/dhcp.h"
#include "agent/disks.h"
#include "agent/domxml.h"
#include "agent/guests.h"
#include "agent/readiness.h"
#include "agent/guests-internal.h"
#include "agent/hostnet.h"
#include "agent/monitor.h"
#include "agent/guestview.h"
#include "agent/metrics.h"
#include "agent/qga.h"
#include "agent/serverpush.h"
#include "agent/ops.h"
#include "agent/tasks.h"
#include "agent/workspace.h"
#include "agent/virt.h"
#include "common/event-util.h"
#include "common/config.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/path.h"

static const char *const op_names[_GUEST_OP_MAX] = {
    [GUEST_OP_CREATE] = "create", [GUEST_OP_START] = "start",	  [GUEST_OP_STOP] = "stop",
    [GUEST_OP_REBOOT] = "reboot", [GUEST_OP_SUSPEND] = "suspend", [GUEST_OP_RESUME] = "resume",
    [GUEST_OP_SYNC] = "sync",	  [GUEST_OP_STATUS] = "status",	  [GUEST_OP_MONITOR] = "monitor",
    [GUEST_OP_DELETE] = "delete", [GUEST_OP_CONSOLE] = "console", [GUEST_OP_DEPLOY] = "deploy",
};

DEFINE_STRING_TABLE_TO(guest_op, enum guest_op, op_names, "?")

/* ---- the view and the hooks (loop thread) ---- */

bool guests_hooks_want_running(struct guests *g)
{
	for (size_t i = 0; i < g->n_hooks; i++)
		if (g->hooks[i].on_running)
			return true;
	return false;
}

void guests_hooks_running(struct guests *g, const char *sid, int qemu_pid)
{
	for (size_t i = 0; i < g->n_hooks; i++)
		if (g->hooks[i].on_running)
			g->hooks[i].on_running(sid, qemu_pid, g->hooks[i].ud);
}

static void stop_waits_poke(struct guests *g, const char *sid);

void guests_hooks_state(struct guests *g, const char *sid, const char *status)
{
	stop_waits_poke(g, sid);
	guests_qga_on_state(g, sid, status);
	for (size_t i = 0; i < g->n_hooks; i++)
		if (g->hooks[i].on_state)
			g->hooks[i].on_state(sid, status, g->hooks[i].ud);
}

/* sid left the table: the state hooks get status NULL. */
void guests_hooks_gone(struct guests *g, const char *sid)
{
	dhcp_guest_remove(g->dhcp, sid);
	guests_hooks_state(g, sid, NULL);
}

/* Updates the view first, then tells the hooks when the status changed. */
void guests_view_state(struct guests *g, const char *sid, int state, int reason, int qemu_pid)
{
	bool changed = false;
	if (guestview_set_state(g->view, sid, state, reason, qemu_pid, &changed) < 0) {
		log_oom();
		return;
	}
	if (changed)
		guests_hooks_state(g, sid, guest_state_status(state, NULL));
}

void guests_view_remove(struct guests *g, const char *sid)
{
	if (guestview_remove(g->view, sid))
		guests_hooks_gone(g, sid);
}

/* ---- operations ---- */

struct op_ctx {
	struct guests *g;
	enum guest_op op;
	char *sid;
	json_t *args;
	op_done_fn cb;
	void *userdata;
	struct op_reply reply;
	/* results for the view on the loop thread: libvirt's state after the operation */
	bool have_state;
	int new_state, new_reason, new_pid;
	uint64_t seq; /* the view's seq when the operation was queued */
	char *name, *uuid;
	bool removed, created;
	bool marked_creating; /* counted in guests->creating */
	/* a QEMU was started: its version ("x.y.z") and VNC port go to the region's metadata */
	char *qemu_version;
	int vnc_port;
	char *vnc_password; /* the console password (agent/console.h), when the guest has one */
	/* create/sync: the NICs of the accepted descriptor that get a DHCP lease */
	struct dhcp_host *dhcp_hosts;
	size_t n_dhcp_hosts;
	bool dhcp_known; /* dhcp_hosts is the guest's whole set (none when NULL) */
	/* A graceful stop: the worker pressed the power button and left the reply empty; the loop
	 * then waits for the view to show the guest off (lifecycle events), or for the deadline,
	 * when a worker forces it. No thread sleeps meanwhile. */
	enum { STOP_NONE, STOP_AWAIT, STOP_WAITING, STOP_FORCE } stop;
	uint64_t stop_deadline; /* CLOCK_MONOTONIC usec */
	sd_event_source *stop_timer;
	struct op_ctx *stop_next;
};

#define reply_fail(c, error, ...) ((void)op_reply_fail(&(c)->reply, (error), __VA_ARGS__))

static void reply_ok(struct op_ctx *c, json_t *body)
{
	op_reply_ok(&c->reply, body ? body : json_pack("{s:s}", "result", "ok"));
}

/* The operation has its outcome (a graceful stop's worker leaves it to the loop). */
static bool replied(const struct op_ctx *c)
{
	return c->reply.error < 0 || c->reply.body;
}

/* Consoles listen on vnc_listen, by default on the node's access address (set once at startup,
 * before any operation runs, so workers may read it), never on every address (H1). */
static void domxml_options(const struct guests *g, struct domxml_opts *o)
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
	const struct config *cfg = g->cfg;
	const char *listen = cfg->vnc_listen;
	if (isempty(listen))
		listen = hostnets_access_ip(g->hostnets);
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

/* config_drive: attach <workspace>/config-drive.iso (agent/deploy.h). */
static int render_domain(const struct guests *g, const char *sid, const struct guest_desc *d,
			 const char *console_password, bool config_drive, char **ret_xml,
			 char **ret_error)
{
	struct domxml_opts o;
	domxml_options(g, &o);
	o.console_password = console_password;
	_cleanup_free_ char *ws = config_drive ? workspace_dir(g->cfg, sid) : NULL;
	_cleanup_free_ char *iso = ws ? deploy_iso_path(ws) : NULL;
	if (config_drive && !iso)
		return -ENOMEM;
	o.config_drive = iso;
	_cleanup_free_ char *err = NULL;
	int r = domxml_render(d, sid, &o, ret_xml, &err);
	if (r < 0 && ret_error)
		*ret_error = err ? TAKE_PTR(err) : strdup(strerror(-r));
	return r;
}

/* The guest other than sid whose stored descriptor uses path: as a disk (as_disk), or as a
 * backing image or cdrom (!as_disk); NULL when none. Base images and ISOs are shared; another
 * guest's disk is that guest's data and never backs or is attached to a second guest, and a
 * path another guest reads (a cdrom that does not exist yet, say) never becomes a disk. */
static char *path_user(const struct config *cfg, const char *sid, const char *path, bool as_disk)
{
	_cleanup_strv_free_ char **sids = NULL;
	char *user = NULL;
	int lr = workspace_list(cfg, &sids);
	if (lr < 0)
		log_error("Cannot list the workspaces in %s (%s): %s", cfg->servers_path,
			  "disks shared with other guests are not found", strerror(-lr));
	STRV_FOREACH (w, sids) {
		if (user)
			break;
		if (streq(*w, sid))
			continue;
		_cleanup_guest_desc_ struct guest_desc *d = NULL;
		if (workspace_load_desc(cfg, *w, NULL, &d, NULL) < 0)
			continue;
		bool hit = false;
		for (size_t i = 0; i < d->n_disks; i++)
			hit = hit || (as_disk ? streq(d->disks[i].path, path)
					      : streq_ptr(d->disks[i].image_path, path));
		for (size_t i = 0; !as_disk && i < d->n_cdroms; i++)
			hit = hit || streq_ptr(d->cdroms[i].path, path);
		if (hit)
			user = strdup(*w);
	}
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
	const struct config *cfg = c->g->cfg;
	for (size_t i = 0; i < d->n_disks + d->n_cdroms; i++) {
		bool disk = i < d->n_disks;
		size_t k = disk ? i : i - d->n_disks;
		const char *p = disk ? d->disks[k].image_path : d->cdroms[k].path;
		_cleanup_free_ char *owner = p ? path_user(cfg, c->sid, p, true) : NULL;
		if (owner) {
			reply_fail(c, -EINVAL, "%s[%zu].%s: %s is a disk of guest %s",
				   disk ? "disks" : "cdroms", k, disk ? "image_path" : "path", p,
				   owner);
			return false;
		}
		_cleanup_free_ char *reader =
		    disk ? path_user(cfg, c->sid, d->disks[k].path, false) : NULL;
		if (reader) {
			reply_fail(c, -EINVAL,
				   "disks[%zu].path: %s is a backing image or cdrom of guest %s", k,
				   d->disks[k].path, reader);
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
	reply_fail(c, -EEXIST,
		   "domain %s was not defined by hostagent (no hostagent metadata): it is not "
		   "managed here and is left alone",
		   c->sid);
	return true;
}

static void op_create(struct op_ctx *c, virConnectPtr conn, bool is_sync)
{
	const struct config *cfg = c->g->cfg;
	json_t *dj = json_object_get(c->args, "desc");
	if (!json_is_object(dj)) {
		reply_fail(c, -EINVAL, "desc: missing or not an object");
		return;
	}
	_cleanup_free_ char *err = NULL, *text = NULL;
	_cleanup_guest_desc_ struct guest_desc *d = NULL;
	int r = guest_desc_parse(dj, cfg->local_image_path, &d, &err);
	if (r < 0) {
		reply_fail(c, -EINVAL, "%s", err ? err : strerror(-r));
		return;
	}
	c->name = strdup(d->name);
	c->uuid = strdup(d->uuid);
	/* First-boot configuration: checked here, built into the config drive once the disks are
	 * ready. Its secrets stay out of the stored descriptor, which is built from "desc" only. */
	_cleanup_configdrive_ struct configdrive *cd = NULL;
	_cleanup_(json_decrefp) json_t *info = NULL;
	if (!is_sync && configdrive_requested(c->args)) {
		r = configdrive_parse(c->args, dj, &cd, &err);
		if (r < 0) {
			reply_fail(c, r == -ENOMEM ? -ENOMEM : -EINVAL, "%s",
				   err ? err : strerror(-r));
			return;
		}
	}
	_cleanup_free_ char *ws0 = workspace_dir(cfg, c->sid);
	_cleanup_free_ char *iso = ws0 ? deploy_iso_path(ws0) : NULL;
	if (!iso) {
		reply_fail(c, -ENOMEM, "out of memory");
		return;
	}
	/* A sync keeps the drive a create or deploy made. */
	bool drive = cd || access(iso, F_OK) == 0;
	/* What the workspace keeps: the request with its paths resolved (L7). */
	_cleanup_(json_decrefp) json_t *resolved = guest_desc_resolved_json(dj, d);
	if (!resolved) {
		reply_fail(c, -ENOMEM, "out of memory");
		return;
	}
	_cleanup_(virDomainFreep) virDomainPtr dom = virt_domain_lookup(conn, c->sid);
	_cleanup_(json_decrefp) json_t *old_json = NULL;
	_cleanup_guest_desc_ struct guest_desc *old = NULL;
	int have_ws = workspace_load_desc(cfg, c->sid, &old_json, &old, NULL);

	if (refuse_foreign(c, dom))
		return;
	if (!is_sync && dom) {
		if (have_ws >= 0 && (json_equal(old_json, resolved) || json_equal(old_json, dj))) {
			reply_ok(
			    c, json_pack("{s:s,s:s}", "result", "ok", "details", "already exists"));
			return;
		}
		reply_fail(c, -EEXIST,
			   "guest %s already exists with a different descriptor; use sync", c->sid);
		return;
	}
	if (is_sync && !dom) {
		reply_fail(c, -ENOENT, "guest %s not found", c->sid);
		return;
	}
	if (is_sync && old && !streq(old->uuid, d->uuid)) {
		reply_fail(c, -EINVAL, "uuid: cannot change from %s to %s", old->uuid, d->uuid);
		return;
	}

	/* Everything is validated before the host is touched. */
	if (!check_shared_paths(c, d))
		return;
	_cleanup_free_ char *xml = NULL;
	r = render_domain(c->g, c->sid, d, NULL, drive, &xml, &err);
	if (r < 0) {
		reply_fail(c, r == -ENOMEM ? -ENOMEM : -EINVAL, "%s", strempty(err));
		return;
	}
	_cleanup_free_ char *ws = workspace_dir(cfg, c->sid), *descp = workspace_desc(cfg, c->sid);
	bool made_ws = false;
	struct stat st;
	if (stat(ws, &st) < 0) {
		r = mkdir_p(ws, 0700);
		if (r < 0) {
			reply_fail(c, -EIO, "cannot create workspace %s: %s", ws, strerror(-r));
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
		r = render_domain(c->g, c->sid, d, console_pw, drive, &xml, &err);
	}
	console_pw = erase_and_free(console_pw);
	if (r < 0) {
		reply_fail(c, -EIO, "cannot set the console password of %s: %s", c->sid,
			   err ? err : strerror(-r));
		/* Not goto rollback: that label is in the scope of cleanup variables declared
		 * below, which a jump from here would skip. */
		if (made_ws)
			rm_rf(ws);
		return;
	}
	/* M1: the disk paths become this guest's before any file is looked at, so two creates
	 * naming one new file cannot both go on. */
	_cleanup_free_ const char **paths = calloc(d->n_disks + 1, sizeof(char *));
	_cleanup_free_ const char **old_paths =
	    calloc((old ? old->n_disks : 0) + 1, sizeof(char *));
	_cleanup_free_ char *holder = NULL;
	size_t bad = 0;
	for (size_t i = 0; paths && i < d->n_disks; i++)
		paths[i] = d->disks[i].path;
	for (size_t i = 0; old_paths && old && i < old->n_disks; i++)
		old_paths[i] = old->disks[i].path;
	r = paths && old_paths ? claims_take(c->g->claims, c->sid, paths, d->n_disks, &bad, &holder)
			       : -ENOMEM;
	if (r < 0) {
		if (r == -EBUSY)
			reply_fail(c, -EEXIST, "disks[%zu].path: %s is a disk of guest %s", bad,
				   d->disks[bad].path, strempty(holder));
		else
			reply_fail(c, -ENOMEM, "out of memory");
		if (made_ws)
			rm_rf(ws);
		return;
	}
	/* Disks: only the ones that do not exist yet are created, and only those are removed
	 * again when a later step fails. */
	_cleanup_free_ struct guest_disk *fresh = calloc(d->n_disks + 1, sizeof(*fresh));
	_cleanup_free_ bool *existing = calloc(d->n_disks + 1, sizeof(bool));
	if (!fresh || !existing) {
		reply_fail(c, -ENOMEM, "out of memory");
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
		existing[i] = true;
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
			reply_fail(
			    c, -EEXIST,
			    "disks[%zu].path: %s already exists and is not a disk of guest %s", i,
			    d->disks[i].path, c->sid);
			goto rollback;
		}
	}
	r = disks_prepare(d, cfg->local_image_path, existing, &err);
	if (r < 0) {
		reply_fail(c,
			   r == -EEXIST	 ? r
			   : r == -EPERM ? -EINVAL
					 : -EIO,
			   "%s", err ? err : strerror(-r));
		goto rollback;
	}
	if (cd) {
		r = deploy_build(ws, c->sid, cd, false, &info, &err);
		if (r < 0) {
			reply_fail(c, -EIO, "cannot build the config drive of %s: %s", c->sid,
				   err ? err : strerror(-r));
			goto rollback_disks;
		}
	}
	/* The descriptor goes first: a crash between the two steps leaves a workspace the next
	 * start lists as "workspace without a libvirt domain" (and a retried create completes),
	 * never a domain nobody manages. */
	text = json_dumps(resolved, JSON_SORT_KEYS | JSON_COMPACT);
	r = text ? workspace_store_desc(cfg, c->sid, text) : -ENOMEM;
	if (r < 0) {
		reply_fail(c, -EIO, "cannot write %s: %s", descp, strerror(-r));
		goto rollback_disks;
	}
	r = virt_define_domain(conn, xml, &err);
	if (r < 0) {
		reply_fail(c, -EIO, "cannot define domain %s: %s", c->sid, strempty(err));
		/* Put the previous descriptor back (sync), or take the new one away (create). */
		_cleanup_free_ char *old_text =
		    old_json ? json_dumps(old_json, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
		if (old_text)
			workspace_store_desc(cfg, c->sid, old_text);
		else
			unlink(descp);
		goto rollback_disks;
	}
	c->created = true;
	if (dhcp_hosts_from_desc(c->sid, d, &c->dhcp_hosts, &c->n_dhcp_hosts) >= 0)
		c->dhcp_known = true;
	else
		log_oom(); /* the DHCP keeps the guest's previous entries */
	if (is_sync)	   /* paths the guest no longer names are free again */
		claims_release(c->g->claims, c->sid, paths, d->n_disks);
	if (is_sync) {
		int state = 0;
		if (dom && virt_domain_get_state(dom, &state, NULL) == 0 &&
		    state != GUEST_STATE_SHUTOFF) {
			reply_ok(c, json_pack("{s:s,s:b}", "result", "ok", "restart_required", 1));
			return;
		}
	}
	json_t *body = json_pack("{s:s}", "result", "ok");
	if (body && info)
		json_object_update(body, info);
	reply_ok(c, body);
	return;

rollback_disks:
	if (cd)
		(void)unlink(iso);
	disks_remove(&fresh_desc, cfg->local_image_path);
rollback:
	/* Back to the paths of the stored descriptor (none for a new guest). */
	claims_release(c->g->claims, c->sid, old_paths, old ? old->n_disks : 0);
	if (made_ws)
		rm_rf(ws);
}

/* POST /servers/<sid>/deploy: the config drive built again from the deploy fields and the
 * request's desc (else the stored one; the stored descriptor is not changed), attached when the
 * domain did not have one. A new instance-id makes cloud-init apply it at the next boot; a
 * running QEMU keeps the drive it opened until then. */
static void op_deploy(struct op_ctx *c, virDomainPtr dom)
{
	const struct config *cfg = c->g->cfg;
	_cleanup_(json_decrefp) json_t *stored = NULL, *info = NULL;
	_cleanup_guest_desc_ struct guest_desc *d = NULL;
	_cleanup_configdrive_ struct configdrive *cd = NULL;
	_cleanup_free_ char *err = NULL, *xml = NULL;
	int r = workspace_load_desc(cfg, c->sid, &stored, &d, &err);
	if (r < 0) {
		reply_fail(c, r == -ENOENT ? -ENOENT : -EIO, "cannot load the descriptor of %s: %s",
			   c->sid, err ? err : strerror(-r));
		return;
	}
	json_t *dj = json_object_get(c->args, "desc");
	r = configdrive_parse(c->args, dj ? dj : stored, &cd, &err);
	if (r < 0) {
		reply_fail(c, r == -ENOMEM ? -ENOMEM : -EINVAL, "%s", err ? err : strerror(-r));
		return;
	}
	_cleanup_free_ char *ws = workspace_dir(cfg, c->sid);
	_cleanup_free_ char *iso = ws ? deploy_iso_path(ws) : NULL;
	if (!iso) {
		reply_fail(c, -ENOMEM, "out of memory");
		return;
	}
	bool attached = access(iso, F_OK) == 0;
	r = deploy_build(ws, c->sid, cd, true, &info, &err);
	if (r < 0) {
		reply_fail(c, -EIO, "cannot build the config drive of %s: %s", c->sid,
			   err ? err : strerror(-r));
		return;
	}
	if (!attached) {
		char *pw = NULL;
		r = console_password_ensure(ws, &pw);
		if (r >= 0)
			r = render_domain(c->g, c->sid, d, pw, true, &xml, &err);
		pw = erase_and_free(pw);
		if (r >= 0)
			r = virt_domain_redefine(dom, xml, &err);
		if (r < 0) {
			(void)unlink(iso);
			reply_fail(c, r == -EOPNOTSUPP ? -EOPNOTSUPP : -EIO,
				   "cannot attach the config drive to %s: %s", c->sid,
				   err ? err : strerror(-r));
			return;
		}
	}
	int state = 0;
	bool off = virt_domain_get_state(dom, &state, NULL) == 0 &&
		   (state == GUEST_STATE_SHUTOFF || state == GUEST_STATE_CRASHED);
	json_t *body = json_pack("{s:s,s:s,s:b}", "result", "ok", "details",
				 "the guest applies it at its next boot", "restart_required", !off);
	if (body && info)
		json_object_update(body, info);
	reply_ok(c, body);
}

/* What the region learns of a new QEMU (serverpush_started()): version and console password;
 * the VNC port is read by the caller. */
static void started_metadata(struct op_ctx *c, virDomainPtr dom)
{
	c->qemu_version = virt_hypervisor_version(dom);
	_cleanup_free_ char *ws = workspace_dir(c->g->cfg, c->sid);
	if (ws && console_password_read(ws, &c->vnc_password) < 0)
		c->vnc_password = NULL;
}

static void op_start(struct op_ctx *c, virDomainPtr dom)
{
	int state = 0;
	if (virt_domain_get_state(dom, &state, NULL) < 0) {
		reply_fail(c, -EIO, "%s", virt_last_error_message());
		return;
	}
	const char *details = "started";
	if (state == GUEST_STATE_PAUSED) {
		if (virt_domain_resume(dom) < 0) {
			reply_fail(c, -EIO, "cannot resume %s: %s", c->sid,
				   virt_last_error_message());
			return;
		}
		details = "resumed";
	} else if (state == GUEST_STATE_RUNNING || state == GUEST_STATE_BLOCKED) {
		details = "already running";
	} else if (virt_domain_start(dom, c->sid) < 0) {
		reply_fail(c, -EIO, "cannot start %s: %s", c->sid, virt_last_error_message());
		return;
	}
	c->vnc_port = virt_domain_vnc_port(dom);
	if (c->vnc_port < 0)
		c->vnc_port = -1;
	if (!streq(details, "already running"))
		started_metadata(c, dom);
	reply_ok(c, json_pack("{s:i,s:b,s:s}", "vnc_port", c->vnc_port, "is_running", 1, "details",
			      details));
}

/* True when dom is in state want now (a failed destroy of a guest that went off meanwhile). */
static bool in_state(virDomainPtr dom, int want)
{
	int state = 0;
	return virt_domain_get_state(dom, &state, NULL) == 0 && state == want;
}

static void stop_force(struct op_ctx *c, virDomainPtr dom);

static void op_stop(struct op_ctx *c, virDomainPtr dom)
{
	json_t *t = json_object_get(c->args, "timeout"), *f = json_object_get(c->args, "is_force");
	if ((t && !json_is_integer(t)) || (f && !json_is_boolean(f))) {
		reply_fail(c, -EINVAL,
			   t && !json_is_integer(t) ? "timeout: expected integer"
						    : "is_force: expected boolean");
		return;
	}
	json_int_t timeout = t ? json_integer_value(t) : 30;
	if (timeout < 0 || timeout > 3600) {
		reply_fail(c, -EINVAL, "timeout: out of range 0..3600");
		return;
	}
	int state = 0;
	if (virt_domain_get_state(dom, &state, NULL) < 0) {
		reply_fail(c, -EIO, "%s", virt_last_error_message());
		return;
	}
	if (state == GUEST_STATE_SHUTOFF || state == GUEST_STATE_CRASHED) {
		reply_ok(c, json_pack("{s:s,s:s}", "result", "ok", "details", "already stopped"));
		return;
	}
	if (!json_is_true(f) && timeout > 0 && virt_domain_power_button(dom) == 0) {
		/* The loop waits for the guest to power off (stop_wait_begin). */
		c->stop = STOP_AWAIT;
		c->stop_deadline = now_usec(CLOCK_MONOTONIC) + (uint64_t)timeout * USEC_PER_SEC;
		return;
	}
	stop_force(c, dom);
}

/* Forces dom off (a stop without a graceful part, or its deadline): "graceful" when it powered
 * off by itself in the meantime. */
static void stop_force(struct op_ctx *c, virDomainPtr dom)
{
	int state = 0, reason = 0;
	if (c->stop == STOP_FORCE && virt_domain_get_state(dom, &state, &reason) == 0 &&
	    (state == GUEST_STATE_SHUTOFF || state == GUEST_STATE_CRASHED)) {
		reply_ok(c, json_pack("{s:s,s:s}", "result", "ok", "details",
				      reason == VIRT_SHUTOFF_DESTROYED ? "forced" : "graceful"));
		return;
	}
	const char *how = "forced";
	if (virt_domain_destroy(dom) < 0) {
		/* Keep libvirt's message before the state query below replaces it. */
		_cleanup_free_ char *msg = strdup(virt_last_error_message());
		if (!in_state(dom, GUEST_STATE_SHUTOFF)) {
			reply_fail(c, -EIO, "cannot stop %s: %s", c->sid, strempty(msg));
			return;
		}
	}
	reply_ok(c, json_pack("{s:s,s:s}", "result", "ok", "details", how));
}

/* The second half of a cold reboot, on a worker: forced off if it is still up, started again. */
static void reboot_finish(struct op_ctx *c, virDomainPtr dom)
{
	int state = 0, r = 0;
	if (virt_domain_get_state(dom, &state, NULL) == 0 && state != GUEST_STATE_SHUTOFF &&
	    state != GUEST_STATE_CRASHED)
		r = virt_domain_destroy(dom);
	if (r == 0)
		r = virt_domain_start(dom, c->sid);
	if (r < 0) {
		reply_fail(c, -EIO, "cannot reboot %s: %s", c->sid, virt_last_error_message());
		return;
	}
	c->vnc_port = virt_domain_vnc_port(dom);
	if (c->vnc_port < 0)
		c->vnc_port = -1;
	started_metadata(c, dom);
	reply_ok(c, json_pack("{s:s,s:s}", "result", "ok", "details", "rebooted"));
}

static void op_simple(struct op_ctx *c, virDomainPtr dom)
{
	int state = 0, r = 0;
	if (virt_domain_get_state(dom, &state, NULL) < 0) {
		reply_fail(c, -EIO, "%s", virt_last_error_message());
		return;
	}
	bool running = state == GUEST_STATE_RUNNING || state == GUEST_STATE_BLOCKED;
	const char *details = "done";
	switch (c->op) {
	case GUEST_OP_SUSPEND:
		if (state == GUEST_STATE_PAUSED)
			details = "already suspended";
		else if (!running) {
			reply_fail(c, -EHOSTDOWN, "guest %s is not running", c->sid);
			return;
		} else
			r = virt_domain_suspend(dom);
		break;
	case GUEST_OP_RESUME:
		if (running)
			details = "already running";
		else if (state != GUEST_STATE_PAUSED) {
			reply_fail(c, -EHOSTDOWN, "guest %s is not suspended", c->sid);
			return;
		} else
			r = virt_domain_resume(dom);
		break;
	case GUEST_OP_REBOOT: {
		/* is_force: a hardware reset (same QEMU). Otherwise a cold reboot that works
		 * whatever runs inside: ACPI shutdown with a timeout, then a fresh start. */
		json_t *f = json_object_get(c->args, "is_force");
		if (!running && state != GUEST_STATE_PAUSED) {
			reply_fail(c, -EHOSTDOWN, "guest %s is not running", c->sid);
			return;
		}
		if (json_is_true(f))
			r = virt_domain_reset(dom);
		else {
			json_t *t = json_object_get(c->args, "timeout");
			int timeout = json_is_integer(t) ? (int)json_integer_value(t) : 10;
			if (timeout < 0 || timeout > 3600)
				timeout = 10;
			if (timeout > 0 && virt_domain_power_button(dom) == 0) {
				/* The loop waits for the power-off, then reboot_finish() starts it.
				 */
				c->stop = STOP_AWAIT;
				c->stop_deadline =
				    now_usec(CLOCK_MONOTONIC) + (uint64_t)timeout * USEC_PER_SEC;
				return;
			}
			return reboot_finish(c, dom);
		}
		details = "rebooted";
		break;
	}
	default:
		break;
	}
	if (r < 0) {
		reply_fail(c, -EIO, "cannot %s %s: %s", guest_op_to_string(c->op), c->sid,
			   virt_last_error_message());
		return;
	}
	reply_ok(c, json_pack("{s:s,s:s}", "result", "ok", "details", details));
}

static void op_status(struct op_ctx *c, virDomainPtr dom)
{
	int state = 0;
	if (virt_domain_get_state(dom, &state, NULL) < 0) {
		reply_fail(c, -EIO, "%s", virt_last_error_message());
		return;
	}
	const char *power, *reason;
	const char *status = guest_state_status(state, &power);
	/* The region maps anything but its own states to unknown (SetStatusFromHost). */
	json_t *body =
	    json_pack("{s:s,s:s,s:i}", "status", guest_status_cloudpods(status, &reason),
		      "power_states", power, "block_jobs_count", virt_domain_block_jobs(dom));
	if (body && reason)
		json_object_set_new(body, "reason", json_string(reason));
	int pid = streq(power, "on") ? virt_qemu_pid(c->sid) : -1;
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
		reply_fail(c, -EINVAL, "cmd: missing or not a string");
		return;
	}
	if (qmp && !json_is_boolean(qmp)) {
		reply_fail(c, -EINVAL, "qmp: expected boolean");
		return;
	}
	_cleanup_free_ char *fwd = NULL;
	int r = monitor_filter(json_string_value(cmd), json_is_true(qmp), &fwd);
	if (r == -EPERM) {
		reply_fail(c, -EPERM,
			   "cmd: only read-only queries (HMP info ..., QMP query-*) and power/run "
			   "control (system_powerdown, system_reset, stop, cont) are allowed; QMP "
			   "takes only execute, arguments and id");
		return;
	}
	if (r < 0) {
		reply_fail(c, -EINVAL, "cmd: %s",
			   r == -EINVAL ? "malformed (QMP: one JSON object without duplicate "
					  "keys; HMP: one line)"
					: strerror(-r));
		return;
	}
	char *out = NULL;
	if (virt_domain_monitor(dom, fwd, !json_is_true(qmp), &out) < 0) {
		reply_fail(c, -EBUSY, "%s", virt_last_error_message());
		return;
	}
	reply_ok(c, json_pack("{s:s}", "results", out ? out : ""));
	free(out);
}

/* The console of a guest as an operator connects to it: port, address, password (H1). */
static void op_console(struct op_ctx *c, virDomainPtr dom)
{
	_cleanup_free_ char *ws = workspace_dir(c->g->cfg, c->sid);
	char *pw = NULL;
	int r = console_password_read(ws, &pw);
	if (r < 0 && r != -ENOENT) {
		reply_fail(c, -EIO, "cannot read the console password of %s: %s", c->sid,
			   strerror(-r));
		return;
	}
	struct domxml_opts o;
	domxml_options(c->g, &o);
	int port = virt_domain_vnc_port(dom);
	json_t *b =
	    json_pack("{s:i,s:s}", "vnc_port", port > 0 ? port : -1, "listen", o.vnc_listen);
	if (b && pw)
		json_object_set_new(b, "password", json_string(pw));
	else if (b)
		json_object_set_new(b, "password", json_null());
	pw = erase_and_free(pw);
	reply_ok(c, b);
}

static void op_delete(struct op_ctx *c, virConnectPtr conn)
{
	const struct config *cfg = c->g->cfg;
	_cleanup_(virDomainFreep) virDomainPtr dom = virt_domain_lookup(conn, c->sid);
	if (!dom && !virt_last_error_no_domain()) {
		reply_fail(c, -EIO, "%s", virt_last_error_message());
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
		if (virt_domain_is_active(dom) && virt_domain_destroy(dom) < 0) {
			reply_fail(c, -EIO, "cannot destroy %s: %s", c->sid,
				   virt_last_error_message());
			return;
		}
		if (virt_domain_undefine(dom) < 0) {
			reply_fail(c, -EIO, "cannot undefine %s: %s", c->sid,
				   virt_last_error_message());
			return;
		}
	}
	/* The disk files stay: they are the region's, which deletes them through the disk
	 * routes (and keeps the ones that outlive the guest). */
	int r = rm_rf(ws);
	if (r < 0) {
		reply_fail(c, -EIO, "cannot remove workspace %s: %s", ws, strerror(-r));
		return;
	}
	c->removed = true;
	/* Its disk files are nobody's now: the region's disk routes may delete them. */
	claims_release(c->g->claims, c->sid, NULL, 0);
	reply_ok(c, NULL);
}

/* libvirt's state of dom after an operation, for the view. */
static void record_state(struct op_ctx *c, virDomainPtr dom)
{
	int state = 0, reason = 0;
	if (!dom || virt_domain_get_state(dom, &state, &reason) < 0)
		return;
	c->have_state = true;
	c->new_state = state;
	c->new_reason = reason;
	bool off = state == GUEST_STATE_SHUTOFF || state == GUEST_STATE_CRASHED ||
		   state == GUEST_STATE_NOSTATE;
	int pid = off ? 0 : virt_qemu_pid(c->sid);
	c->new_pid = pid > 0 ? pid : 0;
}

static void op_work(void *userdata)
{
	struct op_ctx *c = userdata;
	_cleanup_(virConnectClosep) virConnectPtr conn = virt_conn_ref(c->g->virt);
	if (!conn) {
		reply_fail(c, -ENOTCONN, "libvirt is not connected");
		return;
	}
	switch (c->op) {
	case GUEST_OP_CREATE:
	case GUEST_OP_SYNC:
		op_create(c, conn, c->op == GUEST_OP_SYNC);
		if (c->created) {
			_cleanup_(virDomainFreep) virDomainPtr d = virt_domain_lookup(conn, c->sid);
			record_state(c, d);
		}
		return;
	case GUEST_OP_DELETE:
		op_delete(c, conn);
		return;
	default:
		break;
	}
	_cleanup_(virDomainFreep) virDomainPtr dom = virt_domain_lookup(conn, c->sid);
	if (!dom) {
		if (virt_last_error_no_domain())
			reply_fail(c, -ENOENT, "guest %s not found", c->sid);
		else {
			reply_fail(c, -EAGAIN, "%s", virt_last_error_message());
			if (!virt_conn_alive(conn))
				virt_connection_lost(c->g->virt);
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
		if (c->stop == STOP_FORCE)
			stop_force(c, dom);
		else
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
	case GUEST_OP_DEPLOY:
		op_deploy(c, dom);
		break;
	default:
		if (c->op == GUEST_OP_REBOOT && c->stop == STOP_FORCE)
			reboot_finish(c, dom);
		else
			op_simple(c, dom);
		break;
	}
	if (c->reply.error == 0 && c->reply.body)
		record_state(c, dom);
	if (c->reply.error < 0 && !virt_conn_alive(conn))
		virt_connection_lost(c->g->virt);
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

bool guests_managed(struct guests *g, const char *sid)
{
	const struct guest_info *x = g ? guestview_get(g->view, sid) : NULL;
	return x && x->managed;
}

bool guests_creating(struct guests *g, const char *sid)
{
	return g && strv_contains(g->creating, sid);
}

static int stop_wait_begin(struct guests *g, struct op_ctx *c);

static void op_ctx_free(struct op_ctx *c)
{
	sd_event_source_disable_unref(c->stop_timer);
	op_reply_clear(&c->reply);
	json_decref(c->args);
	free(c->name);
	free(c->uuid);
	free(c->qemu_version);
	dhcp_hosts_free(c->dhcp_hosts, c->n_dhcp_hosts);
	erase_and_free(c->vnc_password);
	free(c->sid);
	free(c);
}

static void op_done(void *userdata)
{
	struct op_ctx *c = userdata;
	struct guests *g = c->g;
	if (c->stop == STOP_AWAIT && !replied(c) && g && stop_wait_begin(g, c) >= 0)
		return; /* finished by the wait */
	if (!replied(c))
		reply_fail(c, -ESHUTDOWN, "the agent is shutting down");
	if (g && c->reply.error == 0) {
		if (c->removed)
			guests_view_remove(g, c->sid);
		else {
			/* The operation's own reading of libvirt, unless an event told the view
			 * about this guest since the operation was queued: events come in order and
			 * are newer than anything read before they arrived. */
			const struct guest_info *x = guestview_get(g->view, c->sid);
			if (c->have_state && (!x || x->seq <= c->seq))
				guests_view_state(g, c->sid, c->new_state, c->new_reason,
						  c->new_pid);
			if (c->created && guestview_get(g->view, c->sid) &&
			    guestview_set_desc(g->view, c->sid, c->name, c->uuid, 1) < 0)
				log_oom();
			if (c->created && c->dhcp_known) {
				dhcp_guest_set(c->g->dhcp, c->sid, TAKE_PTR(c->dhcp_hosts),
					       c->n_dhcp_hosts);
				c->n_dhcp_hosts = 0;
			}
			if (c->vnc_port > 0)
				guestview_set_runtime(g->view, c->sid, c->vnc_port, -1);
		}
	}
	if (g && c->marked_creating)
		creating_remove(g, c->sid);
	if (c->qemu_version && c->reply.error == 0)
		serverpush_started(config_standalone(c->g->cfg) ? NULL : c->g->region, c->sid,
				   c->qemu_version, c->vnc_port, c->vnc_password);
	log_kv(c->reply.error == 0 ? LOG_INFO : LOG_WARNING, "Guest operation finished", "op",
	       guest_op_to_string(c->op), "sid", c->sid, "error",
	       c->reply.error == 0 ? "none" : strerror(-c->reply.error), NULL);
	c->cb(&c->reply, c->userdata);
	op_ctx_free(c);
}

/* ---- graceful stop: waiting for the power-off (loop thread) ---- */

static void stop_wait_unlink(struct guests *g, struct op_ctx *c)
{
	for (struct op_ctx **p = &g->stop_waits; *p; p = &(*p)->stop_next)
		if (*p == c) {
			*p = c->stop_next;
			c->stop_next = NULL;
			g->n_stop_waits--;
			return;
		}
}

/* Whether the view shows the guest off (or gone), and how it went off. */
static bool stop_wait_off(struct guests *g, struct op_ctx *c, const char **ret_how)
{
	if (!g->connected || !guestview_valid(g->view))
		return false; /* nothing known until the view is rebuilt: the deadline decides */
	const struct guest_info *x = guestview_get(g->view, c->sid);
	if (x && x->state != GUEST_STATE_SHUTOFF && x->state != GUEST_STATE_CRASHED &&
	    x->state != GUEST_STATE_NO_DOMAIN)
		return false;
	bool destroyed =
	    x && x->state == GUEST_STATE_SHUTOFF && x->reason == VIRT_SHUTOFF_DESTROYED;
	*ret_how = !x ? "gone" : destroyed ? "forced" : "graceful";
	return true;
}

static int on_stop_wait(sd_event_source *src, uint64_t usec, void *userdata)
{
	struct op_ctx *c = userdata;
	struct guests *g = c->g;
	const char *how = NULL;
	bool off = stop_wait_off(g, c, &how);
	if (!off && usec < c->stop_deadline) { /* poked by a change that is not the power-off */
		(void)event_source_arm(src, c->stop_deadline);
		return 0;
	}
	stop_wait_unlink(g, c);
	if (off && c->op == GUEST_OP_STOP) { /* done without a worker */
		reply_ok(c, json_pack("{s:s,s:s}", "result", "ok", "details", how));
		op_done(c);
		return 0;
	}
	/* The deadline of a stop (forced), or a reboot's power-off (started again): a worker
	 * finishes it, in the guest's queue like any operation. */
	if (!off)
		log_kv(LOG_INFO, "Guest did not power off in time, forcing it", "sid", c->sid, "op",
		       guest_op_to_string(c->op), NULL);
	c->stop = STOP_FORCE;
	int r = tasks_submit(c->g->tasks, c->sid, op_work, op_done, c);
	if (r < 0) {
		reply_fail(
		    c, -EAGAIN, "cannot finish the %s of %s: %s", guest_op_to_string(c->op), c->sid,
		    r == -EBUSY ? "too many queued operations" : "the agent is shutting down");
		op_done(c);
	}
	return 0;
}

/* A stop or reboot that pressed the power button waits here; 0, or < 0 with the reply set. */
static int stop_wait_begin(struct guests *g, struct op_ctx *c)
{
	c->stop = STOP_WAITING;
	int r = sd_event_add_time(c->g->event, &c->stop_timer, CLOCK_MONOTONIC, c->stop_deadline, 0,
				  on_stop_wait, c);
	if (r < 0) {
		reply_fail(c, -EIO, "cannot wait for %s to power off: %s", c->sid, strerror(-r));
		return r;
	}
	c->stop_next = g->stop_waits;
	g->stop_waits = c;
	g->n_stop_waits++;
	log_kv(LOG_DEBUG, "Waiting for the guest to power off", "sid", c->sid, "op",
	       guest_op_to_string(c->op), NULL);
	/* It may be off already (the event came before this): looked at on the next turn. */
	stop_waits_poke(g, c->sid);
	return 0;
}

/* A change of sid in the view (NULL: of every guest) wakes its waiting stops, which look at the
 * view on their next turn: never completed from inside the caller. */
static void stop_waits_poke(struct guests *g, const char *sid)
{
	for (struct op_ctx *c = g->stop_waits; c; c = c->stop_next)
		if (!sid || streq(c->sid, sid)) {
			(void)event_source_arm(c->stop_timer, 1);
		}
}

size_t guests_busy(struct guests *g)
{
	return g ? g->n_stop_waits : 0;
}

void guests_stop(struct guests *g)
{
	if (g)
		g->stopping = true;
}

/* NICs without a bridge get the one of the host network on their wire (loop thread: the
 * host network table is the loop's). A descriptor that names no known wire is refused. */
static int fill_bridges(struct op_ctx *c, char **ret_message)
{
	json_t *desc = json_object_get(c->args, "desc");
	_cleanup_free_ char *err = NULL;
	json_t *filled = NULL;
	if (!json_is_object(desc))
		return 0; /* op_create refuses it */
	int r = guest_desc_fill_bridges(desc, c->g->hostnets, &filled, &err);
	if (r < 0)
		return error_set(ret_message, r == -ENOMEM ? -ENOMEM : -EINVAL, "%s",
				 err ? err : strerror(-r));
	if (!filled)
		return 0;
	json_t *args = json_copy(c->args);
	if (!args || json_object_set_new(args, "desc", filled) < 0) {
		json_decref(args);
		return error_set(ret_message, -ENOMEM, "out of memory");
	}
	json_decref(c->args);
	c->args = args;
	return 0;
}

int guests_op(struct guests *g, enum guest_op op, const char *sid, json_t *args, op_done_fn cb,
	      void *userdata, char **ret_message)
{
	if (op >= _GUEST_OP_MAX)
		return error_set(ret_message, -EINVAL, "unknown operation");
	if (!id_is_valid(sid, GUEST_ID_MAX))
		return error_set(ret_message, -EINVAL, "sid: invalid guest id");
	if (args && !json_is_object(args))
		return error_set(ret_message, -EINVAL, "body: expected a JSON object");
	if (g->stopping)
		return error_set(ret_message, -ESHUTDOWN, "the agent is shutting down");
	struct op_ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return error_set(ret_message, -ENOMEM, "out of memory");
	*c = (struct op_ctx){.g = g, .op = op, .cb = cb, .userdata = userdata};
	c->args = args ? json_incref(args) : json_object();
	c->sid = strdup(sid);
	c->seq = guestview_seq(g->view);
	int r = c->sid && c->args ? 0 : error_set(ret_message, -ENOMEM, "out of memory");
	if (r >= 0 && (op == GUEST_OP_CREATE || op == GUEST_OP_SYNC))
		r = fill_bridges(c, ret_message);
	if (r >= 0 && (r = tasks_submit(g->tasks, sid, op_work, op_done, c)) < 0)
		r = error_set(ret_message, r == -EBUSY ? -EAGAIN : -ESHUTDOWN, "%s",
			      r == -EBUSY ? "too many queued operations, retry later"
					  : "the agent is shutting down");
	if (r < 0) {
		op_ctx_free(c);
		return r;
	}
	if (op == GUEST_OP_CREATE && strv_extend(&g->creating, sid) >= 0)
		c->marked_creating = true;
	return 0;
}

/* ---- statuses of listed guests (POST /servers/upload-status) ---- */

struct statuses {
	struct guests *g;
	json_t *ids;
	op_done_fn cb;
	void *userdata;
	struct op_reply reply;
};

static void statuses_work(void *userdata)
{
	struct statuses *s = userdata;
	_cleanup_(virConnectClosep) virConnectPtr conn = virt_conn_ref(s->g->virt);
	if (!conn) {
		(void)op_reply_fail(&s->reply, -ENOTCONN, "libvirt is not connected");
		return;
	}
	json_t *guests = json_object(), *missing = json_array();
	size_t i;
	json_t *v;
	json_array_foreach (s->ids, i, v) {
		const char *sid = json_string_value(v);
		_cleanup_(virDomainFreep) virDomainPtr dom = virt_domain_lookup(conn, sid);
		int state = 0;
		if (!dom || virt_domain_get_state(dom, &state, NULL) < 0) {
			json_array_append_new(missing, json_string(sid));
			continue;
		}
		const char *power, *reason;
		const char *status =
		    guest_status_cloudpods(guest_state_status(state, &power), &reason);
		json_t *e = json_pack("{s:s,s:s}", "status", status, "power_states", power);
		if (e && reason)
			json_object_set_new(e, "reason", json_string(reason));
		json_object_set_new(guests, sid, e);
	}
	json_t *body = json_pack("{s:o,s:o}", "guests", guests, "notfound", missing);
	if (body)
		op_reply_ok(&s->reply, body);
	else
		(void)op_reply_fail(&s->reply, -ENOMEM, "out of memory");
}

static void statuses_done(void *userdata)
{
	struct statuses *s = userdata;
	if (s->reply.error == 0 && !s->reply.body)
		(void)op_reply_fail(&s->reply, -ESHUTDOWN, "the agent is shutting down");
	s->cb(&s->reply, s->userdata);
	op_reply_clear(&s->reply);
	json_decref(s->ids);
	free(s);
}

int guests_statuses(struct guests *g, json_t *ids, op_done_fn cb, void *userdata,
		    char **ret_message)
{
	if (g->stopping)
		return error_set(ret_message, -ESHUTDOWN, "the agent is shutting down");
	struct statuses *s = calloc(1, sizeof(*s));
	if (!s)
		return error_set(ret_message, -ENOMEM, "out of memory");
	*s = (struct statuses){.g = g, .ids = json_incref(ids), .cb = cb, .userdata = userdata};
	int r = tasks_submit(g->tasks, NULL, statuses_work, statuses_done, s);
	if (r < 0) {
		json_decref(s->ids);
		free(s);
		return error_set(ret_message, r == -EBUSY ? -EAGAIN : -ESHUTDOWN, "%s",
				 r == -EBUSY ? "too many queued operations, retry later"
					     : "the agent is shutting down");
	}
	return 0;
}

/* ---- lifecycle ---- */

static void collect(FILE *f, void *userdata);

/* Readiness: libvirt not connected (the table is not built). */
static void reasons(void *userdata, json_t *out)
{
	struct guests *g = userdata;
	if (!guests_connected(g))
		json_array_append_new(
		    out, json_sprintf("libvirt: not connected to %s", g->cfg->libvirt_uri));
}

int guests_new(const struct guests_deps *deps, struct guests **ret)
{
	struct guests *g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->event = deps->event;
	g->cfg = deps->cfg;
	g->tasks = deps->tasks;
	g->virt = deps->virt;
	g->claims = deps->claims;
	g->dhcp = deps->dhcp;
	g->metrics = deps->metrics;
	g->hostnets = deps->hostnets;
	g->region = deps->region;
	g->readiness = deps->readiness;
	int r = guestview_new(&g->view);
	if (r >= 0 && (r = qga_tracker_new(&g->qga)) < 0)
		guestview_free(g->view);
	if (r >= 0 && (r = readiness_add(g->readiness, reasons, g)) < 0) {
		qga_tracker_free(g->qga);
		guestview_free(g->view);
	}
	if (r < 0) {
		free(g);
		return r;
	}
	*ret = g;
	return 0;
}

struct guests *guests_free(struct guests *g)
{
	if (!g)
		return NULL;
	while (g->stop_waits) {
		struct op_ctx *c = g->stop_waits;
		stop_wait_unlink(g, c);
		reply_fail(
		    c, -EAGAIN,
		    "the agent stopped while %s was powering off (the power button was pressed)",
		    c->sid);
		op_done(c);
	}
	readiness_remove(g->readiness, g);
	sd_event_source_disable_unref(g->reconcile_timer);
	sd_event_source_disable_unref(g->qga_timer);
	qga_tracker_free(g->qga);
	guests_list_drop_delayed(g, 0);
	guests_list_drop_delayed(g, 1);
	guestview_free(g->view);
	free(g->list_text);
	strv_free(g->creating);
	free(g);
	return NULL;
}

/* The disk paths of every stored descriptor, claimed for their guest (M1). Two descriptors
 * that name one file (stored before claims existed) are logged; the first keeps it. */
static void claims_load(struct guests *g)
{
	const struct config *cfg = g->cfg;
	_cleanup_strv_free_ char **sids = NULL;
	int lr = workspace_list(cfg, &sids);
	if (lr < 0)
		log_error("Cannot list the workspaces in %s (%s): %s", cfg->servers_path,
			  "their disk claims are not loaded", strerror(-lr));
	STRV_FOREACH (w, sids) {
		const char *sid = *w;
		_cleanup_guest_desc_ struct guest_desc *d = NULL;
		if (workspace_load_desc(cfg, sid, NULL, &d, NULL) < 0)
			continue;
		for (size_t i = 0; i < d->n_disks; i++) {
			const char *p = d->disks[i].path;
			_cleanup_free_ char *holder = NULL;
			int r = claims_take(g->claims, sid, &p, 1, NULL, &holder);
			if (r == -EBUSY)
				log_kv(LOG_WARNING, "Two guests name one disk file", "path", p,
				       "sid", sid, "owner", strempty(holder), NULL);
			else if (r < 0)
				log_kv(LOG_ERR, "Disk file not claimed (out of memory)", "path", p,
				       "sid", sid, NULL);
		}
	}
}

int guests_start(struct guests *g)
{
	const struct config *cfg = g->cfg;
	int r = mkdir_p(cfg->servers_path, 0755);
	if (r < 0)
		return log_error_errno(r, "Cannot create servers_path %s: %m", cfg->servers_path);
	STRV_FOREACH (root, cfg->local_image_path) {
		r = mkdir_p(*root, 0755);
		if (r < 0)
			return log_error_errno(r, "Cannot create disk root %s: %m", *root);
	}
	if (g->metrics) {
		r = metrics_add_collector(g->metrics, collect, g);
		if (r < 0)
			return r;
	}
	claims_load(g);
	guests_schedule_reconcile(g);
	r = guests_qga_start(g);
	if (r < 0)
		return r;
	return virt_start(g->virt, guests_on_virt_event, guests_on_virt_conn, g);
}

bool guests_connected(struct guests *g)
{
	return g && g->connected;
}

/* The guest part of /metrics, from the view (loop thread, like every collector). */
static void collect(FILE *f, void *userdata)
{
	static const char *const states[] = {"running",	 "ready",   "suspend",
					     "stopping", "crashed", "unknown"};
	struct guests *g = userdata;
	bool valid = g->connected && guestview_valid(g->view);
	unsigned counts[ELEMENTSOF(states)] = {0}, unknown = 0;
	for (size_t i = 0; valid && i < guestview_size(g->view); i++) {
		const struct guest_info *x = guestview_at(g->view, i);
		const char *status = guest_state_status(x->state, NULL);
		for (size_t s = 0; s < ELEMENTSOF(states); s++)
			if (streq(status, states[s]))
				counts[s]++;
		if (!x->managed && streq(status, "running"))
			unknown++;
	}
	/* While libvirt is disconnected nothing is known: no samples rather than stale ones. */
	metrics_write_family(f, "hostagent_guests", "gauge", "Guests on this host by state.");
	for (size_t s = 0; valid && s < ELEMENTSOF(states); s++) {
		char labels[64];
		snprintf(labels, sizeof(labels), "state=\"%s\"", states[s]);
		metrics_write_sample(f, "hostagent_guests", labels, counts[s]);
	}
	metrics_write_family(f, "hostagent_guests_unknown", "gauge",
			     "Running domains without a readable workspace (left running).");
	if (valid)
		metrics_write_sample(f, "hostagent_guests_unknown", NULL, unknown);
	metrics_write_family(f, "hostagent_guest_view_drift_total", "counter",
			     "Differences between the guest view and a full libvirt listing, "
			     "found and corrected by the periodic reconciliation.");
	metrics_write_sample(f, "hostagent_guest_view_drift_total", NULL, (double)g->drift);
	metrics_write_family(f, "hostagent_guest_view_reconciliations_total", "counter",
			     "Reconciliations of the guest view with libvirt completed.");
	metrics_write_sample(f, "hostagent_guest_view_reconciliations_total", NULL,
			     (double)g->reconciled);
	metrics_write_family(f, "hostagent_guests_agent_answering", "gauge",
			     "Running guests whose QEMU guest agent answered its last command or "
			     "probe (the heartbeat's qga_running_guests).");
	if (valid)
		metrics_write_sample(f, "hostagent_guests_agent_answering", NULL,
				     (double)qga_tracker_count_answering(g->qga));
	metrics_write_family(f, "hostagent_libvirt_connected", "gauge",
			     "1 while the libvirt connection is up.");
	metrics_write_sample(f, "hostagent_libvirt_connected", NULL, g->connected ? 1 : 0);
	metrics_write_family(f, "hostagent_libvirt_reconnects_total", "counter",
			     "Times the libvirt connection was re-established.");
	metrics_write_sample(f, "hostagent_libvirt_reconnects_total", NULL,
			     virt_reconnects(g->virt));
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

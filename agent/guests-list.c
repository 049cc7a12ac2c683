/* The guest table's contents: the listing of libvirt and the workspaces that (re)builds the view
 * after every connection, the periodic reconciliation that finds and corrects drift, libvirt's
 * lifecycle events applied to the view, and the reads served from it (GET /servers, one
 * guest's status). The listings (scan_work) run on the worker pool and touch only their
 * struct scan; everything else runs on the loop thread, which owns struct guests
 * (agent/guests-internal.h). */
#include <stdio.h>
#include <stdlib.h>

#include "agent/desc.h"
#include "agent/dhcp.h"
#include "agent/guests-internal.h"
#include "agent/guests.h"
#include "agent/guestview.h"
#include "agent/ops.h"
#include "agent/qga.h"
#include "agent/tasks.h"
#include "agent/virt.h"
#include "agent/workspace.h"
#include "common/event-util.h"
#include "common/config.h"
#include "common/log.h"
#include "common/path.h"

enum scan_kind {
	SCAN_REBUILD,	/* after a (re)connection: replaces the view */
	SCAN_RECONCILE, /* first look: differences become candidates */
	SCAN_CONFIRM,	/* a second look a moment later: what still differs is drift */
};

struct scan {
	struct guests *g;
	enum scan_kind kind;
	struct guest_info *list; /* sorted by sid once on the loop */
	size_t n;
	bool ok;
	uint64_t seq; /* the view's seq when the first listing was submitted */
	unsigned retries;
	char **candidates;	 /* SCAN_CONFIRM: sids that differed in the first look */
	struct dhcp_guest *dhcp; /* the NICs of every managed guest that get a DHCP lease */
	size_t n_dhcp;
};

static void scan_free(struct scan *s)
{
	guest_info_array_free(s->list, s->n);
	strv_free(s->candidates);
	dhcp_guests_free(s->dhcp, s->n_dhcp);
	free(s);
}

static void scan_add_dhcp(struct scan *s, const char *sid, const struct guest_desc *d)
{
	struct dhcp_host *h = NULL;
	size_t n = 0;
	if (dhcp_hosts_from_desc(sid, d, &h, &n) < 0 || n == 0)
		return;
	struct dhcp_guest *v = realloc(s->dhcp, sizeof(*v) * (s->n_dhcp + 1));
	char *copy = strdup(sid);
	if (!v || !copy) {
		if (v)
			s->dhcp = v;
		free(copy);
		dhcp_hosts_free(h, n);
		return;
	}
	s->dhcp = v;
	s->dhcp[s->n_dhcp++] = (struct dhcp_guest){copy, h, n};
}

/* libvirt's domains and the workspaces, as view entries. */
static void scan_work(void *userdata)
{
	struct scan *s = userdata;
	const struct config *cfg = s->g->cfg;
	_cleanup_(virConnectClosep) virConnectPtr conn = virt_conn_ref(s->g->virt);
	if (!conn || virt_list_domains(s->g->virt, conn, &s->list, &s->n) < 0)
		return;
	for (size_t i = 0; i < s->n; i++) {
		struct guest_info *x = &s->list[i];
		_cleanup_guest_desc_ struct guest_desc *d = NULL;
		if (id_is_valid(x->sid, 64) &&
		    workspace_load_desc(cfg, x->sid, NULL, &d, NULL) >= 0) {
			x->managed = true;
			x->name = strdup(d->name);
			x->uuid = strdup(d->uuid);
			if (s->kind == SCAN_REBUILD)
				scan_add_dhcp(s, x->sid, d);
		}
	}
	/* Workspaces without a domain: a half-created or externally undefined guest. */
	_cleanup_strv_free_ char **sids = NULL;
	size_t listed = s->n;
	int lr = workspace_list(cfg, &sids);
	if (lr < 0)
		log_error("Cannot list the workspaces in %s (%s): %s", cfg->servers_path,
			  "guests without a domain are not listed", strerror(-lr));
	STRV_FOREACH (w, sids) {
		bool seen = false;
		for (size_t i = 0; i < listed && !seen; i++)
			seen = streq(s->list[i].sid, *w);
		if (seen)
			continue;
		struct guest_info *l = realloc(s->list, sizeof(*l) * (s->n + 1));
		if (!l)
			break;
		s->list = l;
		l[s->n] = (struct guest_info){
		    .sid = strdup(*w), .state = GUEST_STATE_NO_DOMAIN, .managed = true};
		if (l[s->n].sid)
			s->n++;
	}
	s->ok = true;
}

static int scan_submit(struct guests *g, enum scan_kind kind, uint64_t seq, unsigned retries,
		       char **candidates, bool delayed);

/* Replaces the view with what libvirt and the workspaces say now (merge: with the view's
 * changes since the listing kept, guestview_merge). A guest that is no longer there (undefined
 * while the connection was down) leaves through the hooks like a deleted one. */
static int rebuild(struct guests *g, struct scan *s, bool merge)
{
	_cleanup_strv_free_ char **before = calloc(guestview_size(g->view) + 1, sizeof(char *));
	for (size_t k = 0; before && k < guestview_size(g->view); k++)
		before[k] = strdup(guestview_at(g->view, k)->sid);
	size_t n = s->n;
	s->n = 0;
	int r = merge ? guestview_merge(g->view, TAKE_PTR(s->list), n, s->seq)
		      : guestview_replace(g->view, TAKE_PTR(s->list), n);
	if (r < 0)
		return r;
	/* The DHCP serves what the stored descriptors of the listed domains say. */
	dhcp_guests_replace(g->dhcp, TAKE_PTR(s->dhcp), s->n_dhcp);
	s->n_dhcp = 0;
	for (size_t i = 0; i < guestview_size(g->view); i++) {
		const struct guest_info *x = guestview_at(g->view, i);
		const char *status = guest_state_status(x->state, NULL);
		guests_hooks_state(g, x->sid, status);
		/* The agent channel as the listing saw it (no agent call: the view never waits
		 * for guest agents). */
		if (x->agent_channel && x->managed && streq(status, "running") &&
		    qga_tracker_channel(g->qga, x->sid, (enum qga_channel)x->agent_channel) < 0)
			log_oom();
		if (streq(status, "running") || streq(status, "suspend")) {
			log_kv(LOG_INFO,
			       x->managed ? "Adopted running guest"
					  : "Running domain has no readable workspace; left "
					    "running as unknown",
			       "sid", x->sid, "status", status, NULL);
			if (x->qemu_pid > 0)
				guests_hooks_running(g, x->sid, x->qemu_pid);
		}
	}
	for (size_t k = 0; before && before[k]; k++)
		if (!guestview_get(g->view, before[k]))
			guests_hooks_gone(g, before[k]);
	return 0;
}

static const struct guest_info *list_find(const struct scan *s, const char *sid)
{
	for (size_t i = 0; i < s->n; i++)
		if (streq(s->list[i].sid, sid))
			return &s->list[i];
	return NULL;
}

/* Whether the view's entry of sid (a, or its absence) and the listing's (b) differ in what the
 * view serves, with both described in buf. Entries changed since seq are newer than the
 * listing's and never differ. */
static bool entry_differs(struct guests *g, uint64_t seq, const char *sid,
			  const struct guest_info *b, char *buf, size_t size)
{
	const struct guest_info *a = guestview_get(g->view, sid);
	if (a ? a->seq > seq : guestview_removed_seq(g->view) > seq)
		return false;
	if (!a && !b)
		return false;
	if (!a || !b) {
		snprintf(buf, size, "%s -> %s",
			 a ? guest_state_status(a->state, NULL) : "not in the view",
			 b ? guest_state_status(b->state, NULL) : "not in libvirt");
		return true;
	}
	return guest_info_differs(a, b, buf, size);
}

static void reconcile_first(struct guests *g, struct scan *s)
{
	_cleanup_strv_free_ char **cand = NULL;
	char what[256];
	for (size_t i = 0; i < s->n; i++) {
		struct guest_info *b = &s->list[i];
		const struct guest_info *a = guestview_get(g->view, b->sid);
		if (entry_differs(g, s->seq, b->sid, b, what, sizeof(what)))
			strv_extend(&cand, b->sid);
		else if (a && a->seq <= s->seq)
			/* Not carried by events: refreshed from the listing. */
			guestview_set_runtime(g->view, b->sid, b->vnc_port, b->block_jobs);
	}
	for (size_t i = 0; i < guestview_size(g->view); i++) {
		const char *sid = guestview_at(g->view, i)->sid;
		if (!list_find(s, sid) && entry_differs(g, s->seq, sid, NULL, what, sizeof(what)))
			strv_extend(&cand, sid);
	}
	if (!cand) {
		g->reconciled++;
		g->reconciling = false;
		return;
	}
	/* An event may still be on its way: look again in a moment before calling it drift. */
	if (scan_submit(g, SCAN_CONFIRM, s->seq, 0, TAKE_PTR(cand), true) < 0)
		g->reconciling = false;
}

static void reconcile_confirm(struct guests *g, struct scan *s)
{
	char what[256];
	STRV_FOREACH (sid, s->candidates) {
		const struct guest_info *b = list_find(s, *sid);
		if (!entry_differs(g, s->seq, *sid, b, what, sizeof(what)))
			continue;
		g->drift++;
		log_kv(LOG_WARNING, "Guest view differed from libvirt; corrected", "sid", *sid,
		       "view -> libvirt", what, NULL);
		if (!b) {
			guests_view_remove(g, *sid);
			continue;
		}
		const struct guest_info *a = guestview_get(g->view, *sid);
		const char *before = a ? guest_state_status(a->state, NULL) : NULL;
		struct guest_info copy = *b;
		copy.sid = strdup(b->sid);
		copy.name = b->name ? strdup(b->name) : NULL;
		copy.uuid = b->uuid ? strdup(b->uuid) : NULL;
		if (!copy.sid || guestview_put(g->view, &copy) < 0) {
			guest_info_clear(&copy);
			log_oom();
			continue;
		}
		const char *after = guest_state_status(b->state, NULL);
		if (!streq_ptr(before, after))
			guests_hooks_state(g, *sid, after);
	}
	g->reconciled++;
	g->reconciling = false;
}

static void scan_done(void *userdata)
{
	struct scan *s = userdata;
	struct guests *g = s->g;
	if (g && !s->ok && g->connected && s->kind == SCAN_REBUILD && !s->g->stopping) {
		/* The view stays invalid (503) until a listing succeeds: try again shortly. */
		log_debug("Listing libvirt for the guest view failed, retrying");
		scan_submit(s->g, SCAN_REBUILD, guestview_seq(g->view), 0, NULL, true);
		return scan_free(s);
	}
	if (!g || !s->ok || !g->connected) {
		if (g && s->kind != SCAN_REBUILD)
			g->reconciling = false;
		return scan_free(s);
	}
	if (s->kind == SCAN_REBUILD) {
		/* An operation or event changed a guest while libvirt was being listed: the list
		 * may be older than the view. The changes since are merged over it; only a guest
		 * removed meanwhile (the list may still hold it) needs a fresh listing. Under a
		 * storm of events a listing never finds a quiet view, so no waiting for one. */
		bool changed = guestview_seq(g->view) != s->seq;
		bool removed = guestview_removed_seq(g->view) > s->seq;
		if (removed && s->retries < 10 &&
		    scan_submit(s->g, SCAN_REBUILD, guestview_seq(g->view), s->retries + 1, NULL,
				false) >= 0)
			return scan_free(s);
		int r = rebuild(g, s, changed && !removed);
		if (r < 0) {
			log_warning_errno(r,
					  "Cannot install the guest view's listing, retrying: %m");
			scan_submit(s->g, SCAN_REBUILD, guestview_seq(g->view), 0, NULL, true);
		} else if (changed && !removed)
			log_debug("Guest view listed while guests changed; the changes since were "
				  "merged over the listing");
	} else if (!guestview_valid(g->view))
		g->reconciling = false; /* a rebuild comes */
	else if (s->kind == SCAN_RECONCILE)
		reconcile_first(g, s);
	else
		reconcile_confirm(g, s);
	scan_free(s);
}

static void scan_queue(struct scan *s)
{
	int r = tasks_submit(s->g->tasks, NULL, scan_work, scan_done, s);
	if (r < 0)
		scan_done(s); /* !ok: dropped */
}

static int on_delay_timer(sd_event_source *src, uint64_t usec, void *userdata)
{
	struct scan *s = userdata;
	struct guests *g = s->g;
	int slot = s->kind == SCAN_CONFIRM;
	g->delay_src[slot] = sd_event_source_unref(g->delay_src[slot]);
	g->delayed[slot] = NULL;
	scan_queue(s);
	return 0;
}

void guests_list_drop_delayed(struct guests *g, int slot)
{
	g->delay_src[slot] = sd_event_source_disable_unref(g->delay_src[slot]);
	if (g->delayed[slot])
		scan_free(g->delayed[slot]);
	g->delayed[slot] = NULL;
}

/* delayed: the listing starts in a second (libvirt delivers an event within milliseconds: a
 * second listing one second later that still differs from an unchanged view is no event in
 * flight; a failed rebuild is retried without spinning). */
static int scan_submit(struct guests *g, enum scan_kind kind, uint64_t seq, unsigned retries,
		       char **candidates, bool delayed)
{
	struct scan *s = calloc(1, sizeof(*s));
	if (!s) {
		strv_free(candidates);
		return -ENOMEM;
	}
	*s = (struct scan){
	    .g = g, .kind = kind, .seq = seq, .retries = retries, .candidates = candidates};
	if (delayed && g) {
		int slot = kind == SCAN_CONFIRM;
		guests_list_drop_delayed(g, slot);
		int r = sd_event_add_time_relative(g->event, &g->delay_src[slot], CLOCK_MONOTONIC,
						   USEC_PER_SEC, 0, on_delay_timer, s);
		if (r < 0) {
			scan_free(s);
			return r;
		}
		g->delayed[slot] = s;
		return 0;
	}
	scan_queue(s);
	return 0;
}

static int on_reconcile_timer(sd_event_source *src, uint64_t usec, void *userdata)
{
	struct guests *g = userdata;
	if (g->connected && guestview_valid(g->view) && !g->reconciling && !g->stopping) {
		g->reconciling = true;
		if (scan_submit(g, SCAN_RECONCILE, guestview_seq(g->view), 0, NULL, false) < 0)
			g->reconciling = false;
	}
	guests_schedule_reconcile(g);
	return 0;
}

void guests_schedule_reconcile(struct guests *g)
{
	uint64_t every = (uint64_t)MAX(g->cfg->guest_view_reconcile_seconds, 1) * USEC_PER_SEC;
	int r = event_reset_time_relative(g->event, &g->reconcile_timer, every, USEC_PER_SEC / 10,
					  on_reconcile_timer, g);
	if (r < 0)
		log_warning_errno(r, "Cannot schedule the guest view reconciliation: %m");
}

static json_t *list_json(struct guests *g)
{
	json_t *servers = json_array();
	for (size_t i = 0; servers && i < guestview_size(g->view); i++)
		if (json_array_append_new(
			servers, guestview_list_entry_json(guestview_at(g->view, i))) < 0) {
			json_decref(servers);
			servers = NULL;
		}
	return servers ? json_pack("{s:o}", "servers", servers) : NULL;
}

int guests_list(struct guests *g, op_done_fn cb, void *userdata)
{
	struct op_reply reply = {0};
	if (!g || !g->connected || !guestview_valid(g->view))
		(void)op_reply_fail(&reply, -ENOTCONN, "libvirt is not connected");
	else if (!(reply.body = list_json(g)))
		(void)op_reply_fail(&reply, -ENOMEM, "out of memory");
	cb(&reply, userdata);
	op_reply_clear(&reply);
	return 0;
}

int guests_list_text(struct guests *g, const char **ret_text, size_t *ret_len)
{
	if (!g || !g->connected || !guestview_valid(g->view))
		return -ENOTCONN;
	if (!g->list_text || g->list_seq != guestview_seq(g->view)) {
		_cleanup_(json_decrefp) json_t *j = list_json(g);
		char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
		if (!text)
			return -ENOMEM;
		free(g->list_text);
		g->list_text = text;
		g->list_len = strlen(text);
		g->list_seq = guestview_seq(g->view);
	}
	*ret_text = g->list_text;
	*ret_len = g->list_len;
	return 0;
}

int guests_status(struct guests *g, const char *sid, struct op_reply *ret)
{
	const struct guest_info *x = NULL;
	*ret = (struct op_reply){0};
	if (!id_is_valid(sid, GUEST_ID_MAX))
		return op_reply_fail(ret, -EINVAL, "sid: invalid guest id");
	if (!g || g->stopping)
		return op_reply_fail(ret, -ESHUTDOWN, "the agent is shutting down");
	if (!g->connected || !guestview_valid(g->view))
		return op_reply_fail(ret, -ENOTCONN, "libvirt is not connected");
	if (!(x = guestview_get(g->view, sid)) || x->state == GUEST_STATE_NO_DOMAIN)
		return op_reply_fail(ret, -ENOENT, "guest %s not found", sid);
	if (!(ret->body = guestview_status_json(x)))
		return op_reply_fail(ret, -ENOMEM, "out of memory");
	return 0;
}

/* ---- events ---- */

void guests_on_virt_event(const char *name, int event, int detail, void *userdata)
{
	struct guests *g = userdata;
	char ev[16], det[16];
	snprintf(ev, sizeof(ev), "%d", event);
	snprintf(det, sizeof(det), "%d", detail);
	log_kv(LOG_DEBUG, "libvirt lifecycle event", "domain", name, "event", ev, "detail", det,
	       NULL);
	const struct guest_info *x = guestview_get(g->view, name);
	bool off = x && (x->state == GUEST_STATE_SHUTOFF || x->state == GUEST_STATE_CRASHED ||
			 x->state == GUEST_STATE_NOSTATE || x->state == GUEST_STATE_NO_DOMAIN);
	if (virt_event_undefined(event)) {
		/* A running domain that loses its definition goes on as a transient one. */
		if (x && !off)
			guestview_set_transient(g->view, name, true);
		if (!x || !off)
			return;
		if (!x->managed)
			guests_view_remove(g, name);
		else /* its workspace stays: listed as a workspace without a domain */
			guestview_set_state(g->view, name, GUEST_STATE_NO_DOMAIN, 0, 0, NULL);
		return;
	}
	int state, reason;
	if (virt_event_defined(event)) {
		/* A new domain (or a workspace's domain defined again); a redefinition of a
		 * known domain changes nothing the view holds. */
		if (x)
			guestview_set_transient(g->view, name, false);
		if (x && x->state != GUEST_STATE_NO_DOMAIN)
			return;
		state = GUEST_STATE_SHUTOFF;
		reason = 0;
	} else if (virt_event_state(event, detail, &state, &reason) < 0)
		return;
	/* libvirt raises SHUTDOWN and SUSPENDED from QEMU's own events, which can come after the
	 * STOPPED of a destroy: for a domain that is off they are stale. (RESUMED is not: a start
	 * resumes the paused QEMU before STARTED.) */
	if (off && (state == GUEST_STATE_SHUTDOWN || state == GUEST_STATE_PAUSED ||
		    state == GUEST_STATE_PMSUSPENDED)) {
		log_kv(LOG_DEBUG, "Stale lifecycle event for a stopped domain ignored", "domain",
		       name, "event", ev, NULL);
		return;
	}
	const char *old = x ? guest_state_status(x->state, NULL) : "none";
	const char *status = guest_state_status(state, NULL);
	if (!streq(old, status))
		log_kv(LOG_INFO, "Guest state changed", "sid", name, "from", old, "to", status,
		       NULL);
	bool stopped = state == GUEST_STATE_SHUTOFF || state == GUEST_STATE_CRASHED;
	int pid = stopped ? 0 : -1;
	if (virt_event_started(event)) {
		int p = virt_qemu_pid(name);
		pid = p > 0 ? p : 0;
	}
	/* A persistent domain comes to the view through DEFINED or a listing: one that shows up
	 * running without either (virsh create; RESUMED may come before STARTED) is transient. */
	bool transient =
	    !virt_event_defined(event) && (!x || x->transient || x->state == GUEST_STATE_NO_DOMAIN);
	if (stopped && transient) {
		/* libvirt forgets a transient domain when it stops (no UNDEFINED event). */
		if (x && x->managed)
			guestview_set_state(g->view, name, GUEST_STATE_NO_DOMAIN, 0, 0, NULL);
		else
			guests_view_remove(g, name);
		return;
	}
	guests_view_state(g, name, state, reason, pid);
	if (transient)
		guestview_set_transient(g->view, name, true);
	if (stopped)
		guestview_set_runtime(g->view, name, 0, 0);
	/* Every new QEMU (an agent start, a cold reboot, or anyone else's start) raises STARTED:
	 * with adoption, the only place the running hooks (placement) fire. */
	if (virt_event_started(event) && pid > 0 && guests_hooks_want_running(g))
		guests_hooks_running(g, name, pid);
}

void guests_on_virt_conn(bool connected, void *userdata)
{
	struct guests *g = userdata;
	g->connected = connected;
	/* Never served stale: invalid until the listing of this connection is installed. */
	guestview_invalidate(g->view);
	if (connected)
		scan_submit(g, SCAN_REBUILD, guestview_seq(g->view), 0, NULL, false);
}

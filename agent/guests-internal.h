/* Internals of the guest table shared by its modules: agent/guests.c (table, hooks,
 * operations, lifecycle), agent/guests-list.c (listing, reconciliation, lifecycle events, reads
 * of the view) and agent/guests-qga.c (the guest agent). Not for other modules.
 * struct guests is the loop thread's: workers never touch it (they get copies in their jobs
 * and hand results back through agent/tasks.h). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <systemd/sd-event.h>

#include "agent/guests.h"

struct op_ctx;
struct scan;

struct guests {
	/* What the table uses (struct guests_deps), set at creation and never changed: workers
	 * read these (the configuration, the libvirt connection, the claims) and nothing else. */
	sd_event *event;
	const struct config *cfg;
	struct tasks *tasks;
	struct virt *virt;
	struct claims *claims;
	struct dhcp *dhcp;
	struct metrics *metrics;
	struct hostnets *hostnets;
	struct region *region;
	struct readiness *readiness;
	bool stopping;		/* guests_stop(): new operations are refused */
	struct guestview *view; /* loop thread only */
	bool connected;
	struct guest_hook hooks[GUESTS_MAX_HOOKS];
	size_t n_hooks;
	char **creating; /* sids with a create queued or running, once per create */
	sd_event_source *reconcile_timer;
	bool reconciling;    /* a reconciliation is queued or running */
	uint64_t drift;	     /* differences the reconciliation found (and corrected) */
	uint64_t reconciled; /* reconciliations completed */
	/* listings waiting a moment: [0] a rebuild retried, [1] a reconciliation's second look */
	sd_event_source *delay_src[2];
	struct scan *delayed[2];
	/* graceful stops waiting for their guest to power off (loop thread) */
	struct op_ctx *stop_waits;
	size_t n_stop_waits;
	/* GET /servers as text, for the view at list_seq (rebuilt when the view changed) */
	char *list_text;
	size_t list_len;
	uint64_t list_seq;
	/* the guest agents: which answer (agent/qga.h), probed now and then (loop thread) */
	struct qga_tracker *qga;
	sd_event_source *qga_timer;
	bool qga_probing; /* a probe round is queued or running */
};

/* ---- agent/guests.c ---- */
/* The hooks (loop thread): sid started running with qemu_pid; its status changed (NULL: it
 * left the table; guests_hooks_gone also drops its DHCP hosts). */
bool guests_hooks_want_running(struct guests *g);
void guests_hooks_running(struct guests *g, const char *sid, int qemu_pid);
void guests_hooks_state(struct guests *g, const char *sid, const char *status);
void guests_hooks_gone(struct guests *g, const char *sid);
/* Updates the view of sid, then tells the hooks when its status changed (loop thread). */
void guests_view_state(struct guests *g, const char *sid, int state, int reason, int qemu_pid);
void guests_view_remove(struct guests *g, const char *sid);

/* ---- agent/guests-list.c (loop thread) ---- */
/* (Re)arms the periodic reconciliation of the view with libvirt. */
void guests_schedule_reconcile(struct guests *g);
/* Drops a delayed listing (slot 0: a rebuild retried, 1: a reconciliation's second look). */
void guests_list_drop_delayed(struct guests *g, int slot);
/* libvirt's lifecycle events and connection changes (agent/virt.h handlers). */
void guests_on_virt_event(const char *name, int event, int detail, void *userdata);
void guests_on_virt_conn(bool connected, void *userdata);

/* ---- agent/guests-qga.c (loop thread) ---- */
/* Schedules the probes of the guest agents and installs the agent channel handler (before
 * virt_start). */
int guests_qga_start(struct guests *g);
/* A status change of sid (NULL: it left the table): only running guests have an agent. */
void guests_qga_on_state(struct guests *g, const char *sid, const char *status);

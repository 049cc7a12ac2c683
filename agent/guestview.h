/* The agent's view of every guest: what libvirt and the workspaces say, kept current by libvirt
 * lifecycle events, rebuilt from a full listing on every (re)connection, and checked against a
 * fresh listing now and then. Owned by the loop thread: no locks. Status and list replies are
 * built from it without any libvirt call. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

/* libvirt's virDomainState values (agent/virt.c checks they match), plus one of ours. */
enum guest_state {
	GUEST_STATE_NOSTATE = 0,
	GUEST_STATE_RUNNING = 1,
	GUEST_STATE_BLOCKED = 2,
	GUEST_STATE_PAUSED = 3,
	GUEST_STATE_SHUTDOWN = 4,
	GUEST_STATE_SHUTOFF = 5,
	GUEST_STATE_CRASHED = 6,
	GUEST_STATE_PMSUSPENDED = 7,
	GUEST_STATE_NO_DOMAIN = -1, /* a workspace without a libvirt domain */
};

/* libvirt's VIR_DOMAIN_PAUSED_STARTING_UP: QEMU runs paused while libvirt sets it up; no event
 * announces it (RESUMED and STARTED end it). */
#define GUEST_REASON_PAUSED_STARTING_UP 11

struct guest_info {
	char *sid;
	char *name;	/* from the descriptor, or NULL */
	char *uuid;	/* from the descriptor, or NULL */
	int state;	/* enum guest_state */
	int reason;	/* libvirt's state reason (informative: not all events carry it exactly) */
	int qemu_pid;	/* > 0 while a QEMU runs and its pid file was readable */
	int vnc_port;	/* > 0 when known */
	int block_jobs; /* block jobs seen at the last listing */
	int agent_channel; /* guest agent channel at the last listing: 1 connected, 2 not, 0 ? */
	bool managed;	   /* has a readable workspace */
	bool transient;	   /* libvirt forgets the domain when it stops (virsh create) */
	uint64_t changed_usec; /* CLOCK_REALTIME of the last state change */
	uint64_t seq;	       /* view sequence number of the last change */
};

void guest_info_clear(struct guest_info *x);
void guest_info_array_free(struct guest_info *l, size_t n);

/* A guest status in Cloudpods' terms (running, ready, suspend, unknown): stopping is still
 * running, crashed is ready with *ret_reason "crashed" (NULL otherwise); anything else is
 * unknown. */
const char *guest_status_cloudpods(const char *status, const char **ret_reason);

/* The libvirt-level status string ("running", "suspend", "stopping", "ready", "crashed",
 * "unknown") and power state ("on"/"off") of a state. */
const char *guest_state_status(int state, const char **ret_power);

struct guestview;

int guestview_new(struct guestview **ret);
struct guestview *guestview_free(struct guestview *v);

/* Valid after a full listing was installed; invalid (all lookups answer "not connected") while
 * libvirt is disconnected. */
bool guestview_valid(const struct guestview *v);
void guestview_invalidate(struct guestview *v);
/* Bumped on every change; seq of an entry is the value after its last change. */
uint64_t guestview_seq(const struct guestview *v);
/* seq of the last removal of an entry (0: none). */
uint64_t guestview_removed_seq(const struct guestview *v);

const struct guest_info *guestview_get(const struct guestview *v, const char *sid);
size_t guestview_size(const struct guestview *v);
const struct guest_info *guestview_at(const struct guestview *v, size_t i); /* sorted by sid */

/* Sets the state of sid, adding it when missing. *ret_changed (optional) tells whether the
 * status string changed. qemu_pid < 0 leaves it, 0 clears it. */
int guestview_set_state(struct guestview *v, const char *sid, int state, int reason, int qemu_pid,
			bool *ret_changed);
/* Descriptor facts: name and uuid NULL leave them; managed < 0 leaves it. */
int guestview_set_desc(struct guestview *v, const char *sid, const char *name, const char *uuid,
		       int managed);
/* Runtime facts not carried by events; < 0 leaves a value. */
void guestview_set_runtime(struct guestview *v, const char *sid, int vnc_port, int block_jobs);
void guestview_set_transient(struct guestview *v, const char *sid, bool transient);
/* Returns true when sid was there. */
bool guestview_remove(struct guestview *v, const char *sid);
/* Replaces the whole view by the n entries of l (taken over, l freed) and marks it valid. */
int guestview_replace(struct guestview *v, struct guest_info *l, size_t n);
/* The same for a listing taken while the view was at seq, with the changes the view got since
 * (events are newer than the listing): an entry changed after seq keeps its state, reason, pid
 * and change time, and one that appeared after seq is kept. -ESTALE when an entry was removed
 * after seq (the listing may still hold it): nothing installed. l is taken either way. */
int guestview_merge(struct guestview *v, struct guest_info *l, size_t n, uint64_t seq);
/* Takes over x as the entry of x->sid (replacing any), for a drift correction. */
int guestview_put(struct guestview *v, struct guest_info *x);

/* What differs between the view's entry a and the listing's b in the fields the view serves
 * (state, QEMU pid, managed): a description "state: running -> ready" in buf, or false. A
 * listing taken while libvirt starts the domain (paused, starting up) never differs: that
 * state has no event, the ones that end it are on their way. */
bool guest_info_differs(const struct guest_info *a, const struct guest_info *b, char *buf,
			size_t size);

/* Reply bodies. The status in Cloudpods' terms, as GET /servers/<sid>/status answers. */
json_t *guestview_status_json(const struct guest_info *x);
/* One entry of GET /servers. */
json_t *guestview_list_entry_json(const struct guest_info *x);

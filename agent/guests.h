/* Guest table and operations: the workspaces under servers_path plus libvirt as ground
 * truth. The table lives on the loop thread; libvirt calls run on the worker pool.
 * Implements agent/ops.h. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <systemd/sd-event.h>

#include "agent/guestview.h"
#include "agent/qga.h"

struct claims;
struct config;
struct dhcp;
struct guests;
struct hostnets;
struct metrics;
struct readiness;
struct region;
struct tasks;
struct virt;

/* What the guest table uses. All of it outlives the table but the worker pool, which is freed
 * just before it, after running the last completions (which still use the table). */
struct guests_deps {
	sd_event *event;
	const struct config *cfg;
	struct tasks *tasks;	     /* the worker pool the operations run on */
	struct virt *virt;	     /* the libvirt connection */
	struct claims *claims;	     /* which guest owns which disk path */
	struct dhcp *dhcp;	     /* the guests' DHCP hosts */
	struct metrics *metrics;     /* NULL: no guest metrics */
	struct hostnets *hostnets;   /* bridges of NICs, the console's default listen address */
	struct region *region;	     /* a started guest's metadata is pushed there */
	struct readiness *readiness; /* gets "libvirt: not connected to ..." */
};

int guests_new(const struct guests_deps *deps, struct guests **ret);
struct guests *guests_free(struct guests *g);
/* Connects to libvirt in the background; on every (re)connection the table is rebuilt from
 * libvirt and the workspaces and running guests are adopted as they are. */
int guests_start(struct guests *g);
/* Hooks other subsystems install (loop thread): after a guest started or was adopted
 * running, with its QEMU pid; on every status change (including the table rebuild after a
 * libvirt connection, which reports every guest), and with status NULL when a guest leaves the
 * table (deleted through the agent, or undefined behind its back). Used for placement checks and
 * status reports. Every installed hook gets every call, in installation order; either function may
 * be NULL. -ENOSPC beyond GUESTS_MAX_HOOKS. */
typedef void (*guest_running_fn)(const char *sid, int qemu_pid, void *ud);
typedef void (*guest_state_fn)(const char *sid, const char *status, void *ud);
#define GUESTS_MAX_HOOKS 4
struct guest_hook {
	guest_running_fn on_running;
	guest_state_fn on_state;
	void *ud;
};
int guests_add_hooks(struct guests *g, guest_running_fn on_running, guest_state_fn on_state,
		     void *ud);
/* Removes every hook installed with ud (its owner goes away before the guest table). */
void guests_remove_hooks(struct guests *g, void *ud);

/* True while a create of sid runs (loop thread): its status changes are not reported, as the
 * region learns the outcome from the task. */
bool guests_creating(struct guests *g, const char *sid);
/* True when sid is a guest of this agent (it has a readable workspace): only those are
 * reported to the region; a domain someone else defined is listed as unmanaged, nothing more. */
bool guests_managed(struct guests *g, const char *sid);
/* Stops and reboots waiting on the loop for their guest to power off (counted by the drain). */
size_t guests_busy(struct guests *g);
/* The agent is stopping: operations are refused from now on (503); running guests stay. */
void guests_stop(struct guests *g);
/* Whether libvirt is connected and the table built from it. */
bool guests_connected(struct guests *g);

/* ---- the guest agent (issue 13, agent/qga.h) ----
 * Runs op for the running guest sid on the worker pool (one agent request of a guest at a
 * time, apart from its lifecycle operations). Returns 0 when queued, cb then called exactly
 * once on the loop with r 0 and the result (NULL for qga-guest-ping and qga-set-password; the
 * agent's "return" value, or the os info object; the callback's reference) or r < 0 and a
 * message. Refused at once (negative errno, message in err, cb not called): -EINVAL a bad body
 * or id, -EPERM a command not allowed, -ESRCH no such guest, -EHOSTDOWN not running,
 * -EOPNOTSUPP qga-set-network, -ENOLINK libvirt not connected, -EBUSY queue full, -ESHUTDOWN.
 * Later failures: -EPERM not our domain, -ENOTCONN no agent connected in the guest, -ETIMEDOUT
 * no answer in time, -EREMOTEIO the agent answered with an error, -EBADMSG an unreadable
 * reply, -EIO other libvirt errors, and the refusals above. Passwords are never logged. */
typedef void (*guests_qga_fn)(int r, json_t *result, const char *msg, void *userdata);
int guests_qga(struct guests *g, enum qga_op op, const char *sid, json_t *args, guests_qga_fn cb,
	       void *userdata, char *err, size_t err_size);
/* The guests whose agent answered its last command or probe (qga_running_guests of the
 * heartbeat), a sorted JSON array (new reference; NULL on OOM). */
json_t *guests_qga_running(struct guests *g);

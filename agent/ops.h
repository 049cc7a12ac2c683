/* The operations the agent offers, independent of the transport: the HTTP API (agent/api*.c)
 * and the admin socket (hostctl) both turn a request into a call here and the reply into
 * their wire format. Every function is called on the event-loop thread; completion
 * callbacks run on the event-loop thread too. */
#pragma once

#include <jansson.h>

#include "common/macros.h"

struct guests;

enum guest_op {
	GUEST_OP_CREATE, /* args: {"desc": {...}} and deploy fields (agent/configdrive.h) */
	GUEST_OP_START,	 /* reply: {"vnc_port": N, "is_running": bool} */
	GUEST_OP_STOP,	 /* args: {"timeout": 30, "is_force": false} */
	GUEST_OP_REBOOT,
	GUEST_OP_SUSPEND,
	GUEST_OP_RESUME,
	GUEST_OP_SYNC,	  /* args: {"desc": {...}} */
	GUEST_OP_STATUS,  /* reply: {"status": "...", "power_states": "on|off"} */
	GUEST_OP_MONITOR, /* args: {"cmd": "...", "qmp": bool}; reply: {"result": "..."} */
	GUEST_OP_DELETE,
	GUEST_OP_CONSOLE, /* reply: {"vnc_port", "listen", "password"}; admin socket only */
	GUEST_OP_DEPLOY,  /* args: deploy fields, optional desc; rebuilds the config drive, which
			   * the guest reads at its next boot; reply: {"account", "key", "os"} */
	_GUEST_OP_MAX,
};

const char *guest_op_to_string(enum guest_op op);

/* A finished operation. On success error is 0 and body the result (NULL stands for
 * {"result": "ok"}); on failure error is a negative errno that says what kind of failure it is
 * and message what failed, for a person (NULL when there was no memory for it). The errno
 * vocabulary of the operations, which the API turns into an HTTP status and Cloudpods' error
 * class in one table (agent/api-internal.h api_errno_http):
 *   -EINVAL     the request is wrong (a field, a body, an id)
 *   -EPERM      refused by policy (a monitor or guest-agent command off the allow-list)
 *   -ENOENT     no such guest, disk, image or storage here (-ESRCH too)
 *   -EEXIST     conflicts with what is there: another descriptor, a foreign domain, a disk of
 *               another guest, a file that is not the disk asked for (-EBUSY too)
 *   -EHOSTDOWN  the guest is not in the state the operation needs (not running, not suspended)
 *   -EOPNOTSUPP not implemented here
 *   -EREMOTEIO  a peer (guest agent, image service, region) failed or answered nonsense
 *               (-EBADMSG, -EPROTO too)
 *   -EAGAIN     busy or shutting down: retry later (-ENOTCONN while libvirt is disconnected,
 *               -ESHUTDOWN)
 *   -ETIMEDOUT  a peer did not answer in time
 *   anything else (-ENOMEM, -EIO, ...) an internal error. */
struct op_reply {
	int error;
	char *message;
	json_t *body;
};

/* Replaces what r held by a failure (error < 0) with a formatted message; returns error. */
int op_reply_fail(struct op_reply *r, int error, const char *fmt, ...) _printf_(3, 4);
/* Replaces what r held by a success with body (owned by r; NULL: {"result": "ok"}). */
void op_reply_ok(struct op_reply *r, json_t *body);
/* Frees what r holds and leaves it empty (a success without body). */
void op_reply_clear(struct op_reply *r);

typedef void (*op_done_fn)(struct op_reply *reply, void *userdata);

/* Queues op for guest sid on the worker pool. Operations on one guest run one at a time, in
 * order. A request refused before any work (unknown op, invalid id, a body that is not an
 * object, a bad descriptor's bridges, a full queue, shutting down) returns the negative errno
 * at once, with *ret_message (when not NULL) saying why, and cb is never called. Otherwise
 * this returns 0 and cb is called exactly once, from the loop after this returned; the reply
 * is freed after cb returns (take its body with json_incref to keep it). */
int guests_op(struct guests *g, enum guest_op op, const char *sid, json_t *args, op_done_fn cb,
	      void *userdata, char **ret_message);

/* Snapshot of the guests this host knows, as {"servers": [{"id":..,"name":..,"status":..}]},
 * from the agent's view of the guests: cb is called before this returns (-ENOTCONN while libvirt is
 * disconnected). */
int guests_list(struct guests *g, op_done_fn cb, void *userdata);
/* The same as JSON text, kept until the view changes (valid until the loop runs on): 0, or
 * -ENOTCONN while libvirt is disconnected. */
int guests_list_text(struct guests *g, const char **ret_text, size_t *ret_len);

/* The status of guest sid from the agent's view of the guests (no libvirt call, answered at
 * once), as GUEST_OP_STATUS replies: {"status", "power_states", "block_jobs_count", "reason"
 * (crashed), "qemu_pid"} (the API adds the region's "host_id"); -ENOENT for a guest libvirt does
 * not have, -ENOTCONN while libvirt is disconnected: returns ret->error. *ret is the caller's
 * (op_reply_clear). */
int guests_status(struct guests *g, const char *sid, struct op_reply *ret);

/* Statuses of the guests listed in ids (an array of valid guest ids) from libvirt, as
 * {"guests": {<sid>: {"status", "power_states"}}, "notfound": [sids libvirt does not have]},
 * statuses in Cloudpods' terms. On the worker pool; refusals and cb as guests_op(). */
int guests_statuses(struct guests *g, json_t *ids, op_done_fn cb, void *userdata,
		    char **ret_message);

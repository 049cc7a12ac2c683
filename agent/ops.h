/* The operations the agent offers, independent of the transport: the HTTP API (agent/api*.c)
 * and the admin socket (hostctl) both turn a request into a call here and the reply into
 * their wire format. Every function is called on the event-loop thread; completion
 * callbacks run on the event-loop thread too. */
#pragma once

#include <jansson.h>

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

/* A finished operation: HTTP-like status code and a JSON body (owned by the reply).
 * Errors carry Cloudpods' {"code": N, "class": "...", "details": "..."}. */
struct op_reply {
	int code;
	json_t *body;
};

typedef void (*op_done_fn)(struct op_reply *reply, void *userdata);

/* Queues op for guest sid on the worker pool. Operations on one guest run one at a time, in
 * order. cb is always called exactly once (also on refusal) unless this returns < 0
 * (out of memory); the callback takes ownership of nothing: the reply is freed after it
 * returns, so json_incref the body to keep it. */
int guests_op(struct guests *g, enum guest_op op, const char *sid, json_t *args, op_done_fn cb,
	      void *userdata);

/* Snapshot of the guests this host knows, as {"servers": [{"id":..,"name":..,"status":..}]},
 * from the agent's view of the guests: cb is called before this returns (503 while libvirt is
 * disconnected). */
int guests_list(struct guests *g, op_done_fn cb, void *userdata);
/* The same as JSON text, kept until the view changes (valid until the loop runs on): 0, or
 * -ENOTCONN while libvirt is disconnected. */
int guests_list_text(struct guests *g, const char **ret_text, size_t *ret_len);

/* The status of guest sid from the agent's view of the guests (no libvirt call, answered at
 * once), as GUEST_OP_STATUS replies: {"status", "power_states", "block_jobs_count", "reason"
 * (crashed), "qemu_pid"} (the API adds the region's "host_id"); 404 for a guest libvirt does not
 * have, 503 while libvirt is disconnected. *ret's body is the caller's. */
int guests_status(struct guests *g, const char *sid, struct op_reply *ret);

/* Statuses of the guests listed in ids (an array of valid guest ids) from libvirt, as
 * {"guests": {<sid>: {"status", "power_states"}}, "notfound": [sids libvirt does not have]},
 * statuses in Cloudpods' terms. On the worker pool; cb as above. */
int guests_statuses(struct guests *g, json_t *ids, op_done_fn cb, void *userdata);

/* Builds {"code": N, "class": "...", "details": "..."}; the class follows the code when cls
 * is NULL (Cloudpods' class names: InputParameterError, NotFoundError, ConflictError, ...). */
json_t *op_error_body(int code, const char *cls, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The QEMU guest agent (issue 13): which commands may reach a guest's agent, how request
 * bodies are checked, how the agent's replies become the answers of Cloudpods' Go host agent,
 * and which guests' agents answer (the heartbeat's qga_running_guests). Pure: no libvirt, no
 * I/O, no clock (times are passed in). agent/virt.c carries the commands (libvirt's agent API),
 * agent/guests.c runs them on the worker pool. Any thread. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The routes POST /servers/<sid>/qga-* (Cloudpods' guesthandlers). */
enum qga_op {
	QGA_OP_PING,	     /* qga-guest-ping {timeout, async}: {"result": "ok"} */
	QGA_OP_SET_PASSWORD, /* qga-set-password {username, password, crypted} */
	QGA_OP_COMMAND,	     /* qga-command {command: "<JSON text>", timeout}: the "return" */
	QGA_OP_GET_NETWORK,  /* qga-get-network: guest-network-get-interfaces' "return" */
	QGA_OP_GET_OS_INFO,  /* qga-get-os-info: guest-get-osinfo as the Go agent's GuestOsInfo */
	QGA_OP_GUEST_INFO,   /* qga-guest-info-task: guest-info's "return" */
	QGA_OP_SET_NETWORK,  /* qga-set-network: not implemented (501) */
	_QGA_OP_MAX,
};

const char *qga_op_to_string(enum qga_op op); /* "qga-guest-ping", ... */

#define QGA_TIMEOUT_DEFAULT 5  /* seconds, when a request names none */
#define QGA_TIMEOUT_MAX	    30 /* the longest any request may wait for the guest's agent */
#define QGA_PROBE_TIMEOUT   2  /* heartbeat probes (guest-ping) */
#define QGA_USERNAME_MAX    64
#define QGA_PASSWORD_MAX    1024
#define QGA_COMMAND_MAX	    (64 * 1024)

/* Read-only commands qga-command forwards (guest-ping, guest-info, guest-get-*, ...); anything
 * that writes, executes, freezes, suspends or shuts the guest down is refused. */
bool qga_command_allowed(const char *name);

/* The optional "timeout" of a body (seconds, 1..QGA_TIMEOUT_MAX; 0 or absent: def; larger
 * values are capped at QGA_TIMEOUT_MAX). -EINVAL with a message in err when not an integer
 * or negative. */
int qga_parse_timeout(json_t *body, int def, int *ret, char *err, size_t size);

/* qga-command's body {"command": "<JSON text>" (or the object itself), "timeout": N}. The
 * command must be one object {"execute": NAME, "arguments": {...}} (nothing else): on success
 * *ret_cmd is it re-serialized (compact) and *ret_name its name (both the caller's). -EINVAL (a
 * 400) or -EPERM (a 403: the command is not allowed, named in err). */
int qga_parse_command(json_t *body, char **ret_cmd, char **ret_name, int *ret_timeout, char *err,
		      size_t size);

/* qga-set-password's body {"username", "password", "crypted": bool}. The strings point into
 * body. -EINVAL with a message in err (the password never appears in it). */
int qga_parse_set_password(json_t *body, const char **ret_user, const char **ret_password,
			   bool *ret_crypted, char *err, size_t size);

/* The JSON text of a command without arguments, {"execute":"<name>"}; caller frees. */
char *qga_command_text(const char *name);

/* An agent reply as libvirt returns it ({"return": ...} or {"error": {"class", "desc"}}):
 * 0 with *ret the "return" value (new reference; JSON null when the reply has none), -EREMOTEIO
 * with the agent's error in err, -EBADMSG when the text is not such a reply. */
int qga_parse_reply(const char *text, json_t **ret, char *err, size_t size);

/* guest-get-osinfo's "return" as the Go agent answers it: every field of its GuestOsInfo
 * (id, kernel-release, kernel-version, machine, name, pretty-name, version, version-id), ""
 * when the guest did not report it. New reference; NULL on OOM. */
json_t *qga_os_info(json_t *ret);

/* ---- which guests' agents answer ---- */

/* The agent channel of a guest as libvirt reports it (domain XML channel state, agent
 * lifecycle events). */
enum qga_channel {
	QGA_CHANNEL_UNKNOWN = 0,
	QGA_CHANNEL_CONNECTED = 1,
	QGA_CHANNEL_DISCONNECTED = 2,
};

enum qga_answer {
	QGA_ANSWER_UNKNOWN = 0, /* not probed since the channel (re)connected */
	QGA_ANSWER_YES,
	QGA_ANSWER_NO,
};

struct qga_tracker;

int qga_tracker_new(struct qga_tracker **ret);
struct qga_tracker *qga_tracker_free(struct qga_tracker *t);
/* The channel of sid changed (an event or a listing); a change forgets the last answer. */
int qga_tracker_channel(struct qga_tracker *t, const char *sid, enum qga_channel ch);
/* The outcome of a command sent to sid's agent at now_usec (a probe or a request). */
int qga_tracker_answered(struct qga_tracker *t, const char *sid, bool answered, uint64_t now_usec);
/* sid's QEMU stopped, or the guest left the host. */
void qga_tracker_remove(struct qga_tracker *t, const char *sid);
enum qga_answer qga_tracker_answer(const struct qga_tracker *t, const char *sid);
/* The guests whose agent answered the last command, sorted (a JSON array of ids). */
json_t *qga_tracker_running(const struct qga_tracker *t);
size_t qga_tracker_count_answering(const struct qga_tracker *t);
/* The guests to probe in a round, a NULL-terminated strv (caller frees): every guest whose
 * agent answered last time (cheap: it answers at once), at most max_fresh of those whose channel
 * came up and which were not probed since (after an agent restart: the listing's), and at most
 * max_other of the rest whose channel is not known to be down (agents that did not answer),
 * those probed least recently first. A guest whose channel is down is never probed (libvirt
 * refuses at once). The bounds keep a round's cost at a few probe timeouts whatever the number
 * of unresponsive agents. */
char **qga_tracker_pick(const struct qga_tracker *t, size_t max_fresh, size_t max_other);

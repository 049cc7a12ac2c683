/* The guest agent (issue 13, agent/qga.h) of the guests in the table: requests (guests_qga),
 * the tracker of which agents answer (qga_running_guests of the heartbeat), its probes every
 * QGA_PROBE_INTERVAL_USEC, and the agent channel events. The tracker and the timer are the
 * loop thread's (struct guests, agent/guests-internal.h); the libvirt agent calls (qga_work,
 * qga_probe_work) run on the worker pool, keyed "<sid>/qga" so one request of a guest runs at
 * a time, and touch only their job. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "agent/guests-internal.h"
#include "agent/desc.h"
#include "agent/guests.h"
#include "agent/guestview.h"
#include "agent/qga.h"
#include "agent/tasks.h"
#include "agent/virt.h"
#include "common/event-util.h"
#include "common/config.h"
#include "common/log.h"
#include "common/path.h"

#define QGA_PROBE_INTERVAL_USEC (15 * USEC_PER_SEC)
#define QGA_PROBE_FRESH_MAX	16 /* probes of agents not probed since their channel came up */
#define QGA_PROBE_OTHERS_MAX	3  /* probes of agents that did not answer, per round */

/* Only running guests have an agent to track. */
void guests_qga_on_state(struct guests *g, const char *sid, const char *status)
{
	if (g->qga && !streq_ptr(status, "running") && !streq_ptr(status, "stopping"))
		qga_tracker_remove(g->qga, sid);
}

/* Whether an outcome says something about the guest's agent: it answered (even with an
 * error), or it did not. */
static bool qga_outcome(int r, bool *ret_answered)
{
	if (r == 0 || r == -EREMOTEIO) {
		*ret_answered = true;
		return true;
	}
	if (r == -ETIMEDOUT || r == -ENOTCONN) {
		*ret_answered = false;
		return true;
	}
	return false;
}

static bool qga_trackable(struct guests *g, const char *sid)
{
	const struct guest_info *x = guestview_get(g->view, sid);
	return x && x->managed && x->state == GUEST_STATE_RUNNING;
}

static void qga_record(struct guests *g, const char *sid, int r)
{
	bool answered;
	if (!g->qga || !qga_outcome(r, &answered) || !qga_trackable(g, sid))
		return;
	enum qga_answer before = qga_tracker_answer(g->qga, sid);
	if (qga_tracker_answered(g->qga, sid, answered, now_usec(CLOCK_REALTIME)) < 0) {
		log_oom();
		return;
	}
	if ((before == QGA_ANSWER_YES) != answered)
		log_kv(LOG_INFO, answered ? "Guest agent answers" : "Guest agent does not answer",
		       "sid", sid, NULL);
}

struct qga_job {
	struct guests *g;
	enum qga_op op;
	char *sid;
	char *cmd;	/* the command text (not for set-password) */
	char *name;	/* the command's name, for messages */
	char *user;	/* set-password */
	char *password; /* set-password: erased once used */
	bool crypted;
	int timeout;
	/* outcome */
	int r;
	json_t *result;
	char *msg;
	guests_qga_fn cb;
	void *userdata;
};

static void qga_job_free(struct qga_job *j)
{
	free(j->sid);
	free(j->cmd);
	free(j->name);
	free(j->user);
	erase_and_free(j->password);
	json_decref(j->result);
	free(j->msg);
	free(j);
}

static void qga_fail(struct qga_job *j, int r, const char *fmt, ...) _printf_(3, 4);
static void qga_fail(struct qga_job *j, int r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	free(j->msg);
	if (vasprintf(&j->msg, fmt, ap) < 0)
		j->msg = NULL;
	va_end(ap);
	j->r = r;
}

/* The message of a failed agent call, with what the user can do about it. */
static void qga_fail_virt(struct qga_job *j, int r, const char *verr)
{
	const char *sid = j->sid, *what = j->name ? j->name : qga_op_to_string(j->op);
	switch (r) {
	case -ESRCH:
		return qga_fail(j, r, "guest %s not found", sid);
	case -EPERM:
		return qga_fail(j, r, "domain %s is not managed by hostagent", sid);
	case -EHOSTDOWN:
		return qga_fail(j, r, "guest %s is not running", sid);
	case -ENOTCONN:
		return qga_fail(j, r,
				"the guest agent of %s is not connected (no qemu-guest-agent runs "
				"in the guest): %s",
				sid, strempty(verr));
	case -ETIMEDOUT:
		return qga_fail(j, r, "the guest agent of %s did not answer %s within %d s: %s",
				sid, what, j->timeout, strempty(verr));
	default:
		return qga_fail(j, r, "%s of %s failed: %s", what, sid, verr ? verr : strerror(-r));
	}
}

static void qga_work(void *userdata)
{
	struct qga_job *j = userdata;
	_cleanup_(virConnectClosep) virConnectPtr conn = virt_conn_ref(j->g->virt);
	if (!conn)
		return qga_fail(j, -ENOLINK, "libvirt is not connected");
	_cleanup_free_ char *verr = NULL;
	if (j->op == QGA_OP_SET_PASSWORD) {
		int r = virt_agent_set_password(conn, j->sid, j->user, j->password, j->crypted,
						j->timeout, &verr);
		j->password = erase_and_free(j->password);
		if (r < 0)
			qga_fail_virt(j, r, verr);
		else
			j->r = 0;
		return;
	}
	_cleanup_free_ char *reply = NULL;
	int r = virt_agent_command(conn, j->sid, j->cmd, j->timeout, &reply, &verr);
	if (r < 0)
		return qga_fail_virt(j, r, verr);
	char err[512];
	json_t *ret = NULL;
	r = qga_parse_reply(reply, &ret, err, sizeof(err));
	if (r < 0)
		return qga_fail(j, r, "%s of %s: %s", j->name, j->sid, err);
	j->r = 0;
	switch (j->op) {
	case QGA_OP_PING:
		json_decref(ret);
		break;
	case QGA_OP_GET_OS_INFO:
		j->result = qga_os_info(ret);
		json_decref(ret);
		if (!j->result)
			qga_fail(j, -ENOMEM, "out of memory");
		break;
	default:
		j->result = ret;
		break;
	}
}

static void qga_done(void *userdata)
{
	struct qga_job *j = userdata;
	struct guests *g = j->g;
	if (j->r == -ESHUTDOWN && !j->msg) /* the pool shut down before it ran */
		qga_fail(j, -ESHUTDOWN, "the agent is shutting down");
	if (g)
		qga_record(g, j->sid, j->r);
	/* Never the password, nor the command's arguments. */
	log_kv(j->r < 0 ? LOG_WARNING : LOG_INFO, "Guest agent request finished", "op",
	       qga_op_to_string(j->op), "sid", j->sid, "command", strempty(j->name), "result",
	       j->r < 0 ? strempty(j->msg) : "ok", NULL);
	j->cb(j->r, TAKE_PTR(j->result), j->msg, j->userdata);
	qga_job_free(j);
}

int guests_qga(struct guests *g, enum qga_op op, const char *sid, json_t *args, guests_qga_fn cb,
	       void *userdata, char *err, size_t err_size)
{
	if (op >= _QGA_OP_MAX)
		return snprintf(err, err_size, "unknown operation"), -EINVAL;
	if (!id_is_valid(sid, GUEST_ID_MAX))
		return snprintf(err, err_size, "sid: invalid guest id"), -EINVAL;
	if (args && !json_is_object(args))
		return snprintf(err, err_size, "body: expected a JSON object"), -EINVAL;
	if (op == QGA_OP_SET_NETWORK)
		return snprintf(err, err_size,
				"qga-set-network is not implemented by hostagent: guest addresses "
				"come from the descriptor (DHCP) and the config drive"),
		       -EOPNOTSUPP;
	if (g->stopping)
		return snprintf(err, err_size, "the agent is shutting down"), -ESHUTDOWN;
	if (!g->connected || !guestview_valid(g->view))
		return snprintf(err, err_size, "libvirt is not connected"), -ENOLINK;
	const struct guest_info *x = guestview_get(g->view, sid);
	if (!x || x->state == GUEST_STATE_NO_DOMAIN)
		return snprintf(err, err_size, "guest %s not found", sid), -ESRCH;
	if (x->state != GUEST_STATE_RUNNING)
		return snprintf(err, err_size, "guest %s is not in state running", sid), -EHOSTDOWN;
	struct qga_job *j = calloc(1, sizeof(*j));
	if (!j || !(j->sid = strdup(sid))) {
		free(j);
		return snprintf(err, err_size, "out of memory"), -ENOMEM;
	}
	*j = (struct qga_job){
	    .g = g, .op = op, .sid = j->sid, .r = -ESHUTDOWN, .cb = cb, .userdata = userdata};
	int r = 0;
	const char *simple = NULL;
	switch (op) {
	case QGA_OP_PING:
		simple = "guest-ping";
		break;
	case QGA_OP_GET_NETWORK:
		simple = "guest-network-get-interfaces";
		break;
	case QGA_OP_GET_OS_INFO:
		simple = "guest-get-osinfo";
		break;
	case QGA_OP_GUEST_INFO:
		simple = "guest-info";
		break;
	case QGA_OP_COMMAND:
		r = qga_parse_command(args, &j->cmd, &j->name, &j->timeout, err, err_size);
		break;
	case QGA_OP_SET_PASSWORD: {
		const char *user, *pw;
		r = qga_parse_set_password(args, &user, &pw, &j->crypted, err, err_size);
		if (r >= 0)
			r = qga_parse_timeout(args, QGA_TIMEOUT_DEFAULT, &j->timeout, err,
					      err_size);
		if (r >= 0 && (!(j->user = strdup(user)) || !(j->password = strdup(pw))))
			r = -ENOMEM;
		j->name = strdup("guest-set-user-password");
		break;
	}
	default:
		break;
	}
	if (simple) {
		r = qga_parse_timeout(args, QGA_TIMEOUT_DEFAULT, &j->timeout, err, err_size);
		j->name = strdup(simple);
		if (r >= 0 && !(j->cmd = qga_command_text(simple)))
			r = -ENOMEM;
	}
	if (r >= 0 && !j->name)
		r = -ENOMEM;
	if (r == -ENOMEM)
		snprintf(err, err_size, "out of memory");
	if (r >= 0) {
		char key[80];
		snprintf(key, sizeof(key), "%s/qga", sid);
		r = tasks_submit(g->tasks, key, qga_work, qga_done, j);
		if (r < 0) {
			snprintf(err, err_size, "%s",
				 r == -EBUSY ? "too many queued operations, retry later"
					     : "the agent is shutting down");
			r = r == -EBUSY ? -EAGAIN : r; /* agent/ops.h: retry later */
		}
	}
	if (r < 0) {
		qga_job_free(j);
		return r;
	}
	return 0;
}

json_t *guests_qga_running(struct guests *g)
{
	return g && g->qga ? qga_tracker_running(g->qga) : json_array();
}

/* A probe round: guest-ping to the picked guests, one after the other, each bounded. */
struct qga_probe {
	struct guests *g;
	char **sids;
	int *results;
	bool round;
};

static void qga_probe_work(void *userdata)
{
	struct qga_probe *p = userdata;
	_cleanup_(virConnectClosep) virConnectPtr conn = virt_conn_ref(p->g->virt);
	_cleanup_free_ char *cmd = qga_command_text("guest-ping");
	for (size_t i = 0; p->sids[i]; i++) {
		char *reply = NULL;
		p->results[i] = !conn || !cmd ? -ENOLINK
					      : virt_agent_command(conn, p->sids[i], cmd,
								   QGA_PROBE_TIMEOUT, &reply, NULL);
		free(reply);
	}
}

static void qga_probe_done(void *userdata)
{
	struct qga_probe *p = userdata;
	struct guests *g = p->g;
	for (size_t i = 0; g && p->sids[i]; i++)
		if (p->results[i] != 1) /* 1: not run (the pool shut down) */
			qga_record(g, p->sids[i], p->results[i]);
	if (g && p->round)
		g->qga_probing = false;
	strv_free(p->sids);
	free(p->results);
	free(p);
}

static int qga_probe_submit(struct guests *g, char **sids, bool round)
{
	struct qga_probe *p = calloc(1, sizeof(*p));
	size_t n = strv_length(sids);
	if (!p || !(p->results = malloc(sizeof(int) * (n + 1)))) {
		free(p);
		strv_free(sids);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		p->results[i] = 1;
	*p = (struct qga_probe){.g = g, .sids = sids, .results = p->results, .round = round};
	char key[80];
	if (!round)
		snprintf(key, sizeof(key), "%s/qga", sids[0]);
	int r = tasks_submit(g->tasks, round ? TASKS_INTERNAL_KEY("qga-probe") : key,
			     qga_probe_work, qga_probe_done, p);
	if (r < 0) {
		strv_free(p->sids);
		free(p->results);
		free(p);
		return r;
	}
	if (round)
		g->qga_probing = true;
	return 0;
}

static int on_qga_timer(sd_event_source *src, uint64_t usec, void *userdata)
{
	struct guests *g = userdata;
	if (g->connected && guestview_valid(g->view) && !g->qga_probing && !g->stopping) {
		_cleanup_strv_free_ char **picked =
		    qga_tracker_pick(g->qga, QGA_PROBE_FRESH_MAX, QGA_PROBE_OTHERS_MAX);
		char **sids = calloc(1, sizeof(char *));
		STRV_FOREACH (s, picked)
			if (sids && qga_trackable(g, *s) && strv_extend(&sids, *s) < 0)
				sids = strv_free(sids);
		if (sids && sids[0])
			(void)qga_probe_submit(g, TAKE_PTR(sids), true);
		strv_free(sids);
	}
	(void)event_source_arm_relative(src, QGA_PROBE_INTERVAL_USEC);
	return 0;
}

static void on_virt_agent(const char *name, bool connected, void *userdata)
{
	struct guests *g = userdata;
	log_kv(LOG_INFO, connected ? "Guest agent connected" : "Guest agent disconnected", "sid",
	       name, NULL);
	if (!qga_trackable(g, name))
		return;
	if (qga_tracker_channel(g->qga, name,
				connected ? QGA_CHANNEL_CONNECTED : QGA_CHANNEL_DISCONNECTED) < 0) {
		log_oom();
		return;
	}
	/* Probed at once: the heartbeat lists it as soon as it answers. */
	char **one = NULL;
	if (connected && strv_extend(&one, name) >= 0)
		(void)qga_probe_submit(g, one, false);
}

int guests_qga_start(struct guests *g)
{
	int r = sd_event_add_time_relative(g->event, &g->qga_timer, CLOCK_MONOTONIC,
					   QGA_PROBE_INTERVAL_USEC, USEC_PER_SEC, on_qga_timer, g);
	if (r < 0)
		return log_error_errno(r, "Cannot schedule the guest agent probes: %m");
	virt_set_agent_handler(g->virt, on_virt_agent);
	return 0;
}

#include <arpa/inet.h>
#include <fcntl.h>
#include <libgen.h>
#include <microhttpd.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "agent/api-conns.h"
#include "agent/api-internal.h"
#include "agent/api.h"
#include "agent/modules.h"
#include "agent/auth.h"
#include "agent/diskops.h"
#include "agent/guests.h"
#include "agent/imagecache.h"
#include "agent/metrics.h"
#include "agent/region.h"
#include "agent/report.h"
#include "agent/serverpush.h"
#include "agent/tasks.h"
#include "agent/tls.h"
#include "agent/virt.h"
#include "common/event-util.h"
#include "common/fs.h"
#include "common/http-client.h"
#include "common/log.h"
#include "common/macros.h"
#include "common/path.h"

#define RATE_BUCKETS	  1024
#define RATE_MAX_CLIENTS  16384
#define DISCARD_FACTOR	  16 /* chunked bodies: close after discarding this many times the limit */
#define CONN_MEMORY_LIMIT (64 * 1024)

struct api;
struct api_request;

struct api_listener {
	struct api *api;
	struct MHD_Daemon *daemon;
	sd_event_source *io, *timer;
	int fd; /* listening socket, owned by MHD once started */
	bool admin;
	bool quiesced;
	struct api_conns *conns; /* absolute request deadlines (agent/api-conns.h) */
};

/* One outstanding callback (token validation, guest operation, scrape). It outlives the
 * request and even the api: whoever calls back finds api/req NULL after a detach. */
struct api_call {
	struct api_call *prev, *next;
	struct api *api;	  /* NULL once detached by api_free() */
	const struct api_deps *a; /* the agent's, outlives the api and its calls */
	struct api_request *req;  /* NULL for asynchronous tasks or once the request is gone */
	char *task_id;		  /* X-Task-Id: post the outcome there */
	char sid[REGION_ID_MAX + 1];
	int op;
	/* scrape job */
	virConnectPtr conn;
	char *text;
	size_t text_len;
};

struct api_request {
	struct api_request *prev, *next;
	struct api_listener *l;
	struct MHD_Connection *conn;
	struct api_match match;
	struct timespec start;
	char client[INET6_ADDRSTRLEN];
	char *body;
	size_t body_len, discarded;
	bool too_large, started, in_handler, suspended, done, queued;
	bool authenticated, auth_pending, header_wait;
	struct api_call *call;
	int code;
	struct MHD_Response *response;
};

struct rate_entry {
	struct rate_entry *next;
	double tokens;
	struct timespec last;
	char client[INET6_ADDRSTRLEN];
};

struct api {
	const struct api_deps *a; /* the agent's, outlives the api */
	struct api_listener tcp, admin;
	struct api_request *requests;
	struct api_call *calls;
	struct rate_entry *rate[RATE_BUCKETS];
	size_t n_rate;
	struct tls_creds *tls;
	struct timespec log_window;
	unsigned log_lines;
	unsigned long log_suppressed;
	int port;
	bool stopping;
};

static double elapsed(const struct timespec *since, const struct timespec *now)
{
	return (double)(now->tv_sec - since->tv_sec) +
	       (double)(now->tv_nsec - since->tv_nsec) / 1e9;
}

/* ---- outstanding calls ------------------------------------------------------------------ */

static struct api_call *call_new(struct api *api, struct api_request *req)
{
	struct api_call *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->api = api;
	c->a = api->a;
	c->req = req;
	c->op = -1;
	c->next = api->calls;
	if (api->calls)
		api->calls->prev = c;
	api->calls = c;
	if (req)
		req->call = c;
	return c;
}

static void call_free(struct api_call *c)
{
	if (!c)
		return;
	if (c->api) {
		if (c->prev)
			c->prev->next = c->next;
		else
			c->api->calls = c->next;
		if (c->next)
			c->next->prev = c->prev;
	}
	if (c->req)
		c->req->call = NULL;
	virt_conn_unref(c->conn);
	free(c->task_id);
	free(c->text);
	free(c);
}

/* ---- the event loop side of MHD -------------------------------------------------------- */

static void listener_arm(struct api_listener *l)
{
	MHD_UNSIGNED_LONG_LONG ms = 0;
	uint64_t now;
	if (!l->timer)
		return;
	if (MHD_get_timeout(l->daemon, &ms) != MHD_YES) {
		(void)sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
		return;
	}
	if (sd_event_now(sd_event_source_get_event(l->timer), CLOCK_MONOTONIC, &now) < 0)
		return;
	(void)event_source_arm(l->timer, now + (uint64_t)ms * USEC_PER_MSEC);
}

/* Two MHD behaviours need another MHD_run() at once: its inner epoll set is edge-triggered, so a
 * connection with more data in the kernel stays on MHD's ready list without making the outer
 * epoll fd readable again (MHD reports that with a zero timeout); and at the connection limit
 * MHD takes the listening socket out of its epoll set, putting it back only at the start of the
 * next run after a connection closed. Bounded so other sources still get their turn. */
#define RUN_ROUNDS 64

static unsigned listener_connections(struct api_listener *l)
{
	const union MHD_DaemonInfo *di =
	    MHD_get_daemon_info(l->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
	return di ? di->num_connections : 0;
}

static void listener_run(struct api_listener *l)
{
	MHD_UNSIGNED_LONG_LONG ms;
	if (!l->daemon)
		return;
	for (unsigned i = 0; i < RUN_ROUNDS; i++) {
		unsigned before = listener_connections(l);
		(void)MHD_run(l->daemon);
		bool closed = listener_connections(l) < before;
		if (!closed && (MHD_get_timeout(l->daemon, &ms) != MHD_YES || ms > 0))
			break;
	}
	listener_arm(l);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	listener_run(userdata);
	return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	listener_run(userdata);
	return 0;
}

/* After a resume: MHD's ITC wakes its epoll fd too; the immediate timer makes it explicit. */
static void listener_kick(struct api_listener *l)
{
	uint64_t now;
	if (!l->timer ||
	    sd_event_now(sd_event_source_get_event(l->timer), CLOCK_MONOTONIC, &now) < 0)
		return;
	(void)event_source_arm(l->timer, now);
}

/* ---- replies ---------------------------------------------------------------------------- */

static void record(struct api_request *req)
{
	struct api *api = req->l->api;
	struct timespec now;
	char labels[160];
	const char *route = req->match.route ? req->match.route->template : "unmatched";
	clock_gettime(CLOCK_MONOTONIC, &now);
	double secs = elapsed(&req->start, &now);
	snprintf(labels, sizeof(labels), "route=\"%s\",code=\"%d\"", route, req->code);
	metrics_counter_add(api->a->metrics, "hostagent_api_requests_total",
			    "API requests by route template and HTTP status.", labels, 1);
	snprintf(labels, sizeof(labels), "route=\"%s\"", route);
	metrics_histogram_observe(api->a->metrics, "hostagent_api_request_duration_seconds",
				  "API request latency by route template.", labels, secs);
	log_debug("API request listener=%s route=%s code=%d duration_ms=%.1f",
		  req->l->admin ? "admin" : "tcp", route, req->code, secs * 1000);
}

/* Stores the reply (takes the text) and, when the connection waits suspended, resumes it. */
static void finish_raw(struct api_request *req, int code, char *text, size_t len,
		       const char *content_type)
{
	if (req->done) {
		free(text);
		return;
	}
	if (!text) {
		static const char oom[] =
		    "{\"code\": 500, \"class\": \"InternalServerError\", \"details\": "
		    "\"out of memory\"}";
		code = 500;
		content_type = "application/json";
		req->response = MHD_create_response_from_buffer(strlen(oom), (void *)oom,
								MHD_RESPMEM_PERSISTENT);
	} else
		req->response = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (!req->response)
		free(text);
	else
		(void)MHD_add_response_header(req->response, MHD_HTTP_HEADER_CONTENT_TYPE,
					      content_type);
	req->code = code;
	req->done = true;
	if (req->suspended) {
		req->suspended = false;
		MHD_resume_connection(req->conn);
		listener_kick(req->l);
	}
}

static void finish_json(struct api_request *req, int code, json_t *body)
{
	/* Any JSON value: a guest agent's reply may be an array or a scalar. */
	char *text = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	json_decref(body);
	finish_raw(req, code, text, text ? strlen(text) : 0, "application/json");
}

static void finish_error(struct api_request *req, int code, const char *cls, const char *details)
{
	finish_json(req, code, op_error_body(code, cls, "%s", details));
}

/* An operation refused before it started (agent/ops.h): its errno and message. */
static void finish_refusal(struct api_request *req, int error, const char *message)
{
	const char *cls;
	int code = api_errno_http(error, &cls);
	finish_json(req, code,
		    op_error_body(code, cls, "%s", message ? message : strerror(-error)));
}

static enum MHD_Result queue(struct api_request *req)
{
	if (req->queued)
		return MHD_YES;
	req->queued = true;
	record(req);
	if (!req->response)
		return MHD_NO;
	if (req->code == 405 && req->match.allow[0])
		(void)MHD_add_response_header(req->response, MHD_HTTP_HEADER_ALLOW,
					      req->match.allow);
	enum MHD_Result r = MHD_queue_response(req->conn, (unsigned)req->code, req->response);
	MHD_destroy_response(req->response);
	req->response = NULL;
	return r;
}

/* ---- per-client rate limit (token bucket, api_rate_limit per second, same burst) -------- */

static size_t rate_hash(const char *s)
{
	size_t h = 5381;
	for (; *s; s++)
		h = h * 33 + (unsigned char)*s;
	return h % RATE_BUCKETS;
}

static void rate_sweep(struct api *api, const struct timespec *now, double rate)
{
	for (size_t i = 0; i < RATE_BUCKETS; i++)
		for (struct rate_entry **e = &api->rate[i]; *e;) {
			/* A bucket that would be full again carries no state worth keeping. */
			if ((*e)->tokens + elapsed(&(*e)->last, now) * rate >= rate) {
				struct rate_entry *dead = *e;
				*e = dead->next;
				free(dead);
				api->n_rate--;
			} else
				e = &(*e)->next;
		}
}

static bool rate_allow(struct api *api, const char *client)
{
	double rate = api->a->cfg->api_rate_limit;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	size_t h = rate_hash(client);
	struct rate_entry *e;
	for (e = api->rate[h]; e; e = e->next)
		if (streq(e->client, client))
			break;
	if (!e) {
		if (api->n_rate >= RATE_MAX_CLIENTS)
			rate_sweep(api, &now, rate);
		if (api->n_rate >= RATE_MAX_CLIENTS)
			return false;
		e = calloc(1, sizeof(*e));
		if (!e)
			return false;
		snprintf(e->client, sizeof(e->client), "%s", client);
		e->tokens = rate;
		e->last = now;
		e->next = api->rate[h];
		api->rate[h] = e;
		api->n_rate++;
	}
	e->tokens = MIN(rate, e->tokens + elapsed(&e->last, &now) * rate);
	e->last = now;
	if (e->tokens < 1)
		return false;
	e->tokens -= 1;
	return true;
}

/* ---- handlers --------------------------------------------------------------------------- */

/* A guest status the region reads carries the host it is on (once registered). */
static void status_add_host_id(const struct api_deps *a, int code, json_t *body)
{
	const char *hid = report_host_id(a->report);
	if (code == 200 && hid && json_is_object(body))
		json_object_set_new(body, "host_id", json_string(hid));
}

/* The HTTP status and body of an operation's outcome: the one place errno becomes HTTP. */
static int reply_http(const struct op_reply *r, json_t **ret_body)
{
	if (r->error == 0) {
		*ret_body = r->body ? json_incref(r->body) : json_pack("{s:s}", "result", "ok");
		return 200;
	}
	const char *cls;
	int code = api_errno_http(r->error, &cls);
	*ret_body = op_error_body(code, cls, "%s", r->message ? r->message : strerror(-r->error));
	return code;
}

static void on_op_done(struct op_reply *reply, void *userdata)
{
	struct api_call *c = userdata;
	_cleanup_(json_decrefp) json_t *rbody = NULL;
	int code = reply_http(reply, &rbody);
	if (c->op == GUEST_OP_STATUS)
		status_add_host_id(c->a, code, rbody);
	if (c->task_id) {
		/* The region's status task waits for this callback: a guest the host does not
		 * have is a status (notfound), not a failure (RequestDetachDisk skips a sync). */
		_cleanup_(json_decrefp) json_t *notfound = NULL;
		if (c->op == GUEST_OP_STATUS && code == 404) {
			const char *hid = report_host_id(c->a->report);
			notfound = json_pack("{s:s,s:s,s:i}", "status", "notfound", "power_states",
					     "off", "block_jobs_count", 0);
			if (notfound && hid)
				json_object_set_new(notfound, "host_id", json_string(hid));
		}
		_cleanup_(json_decrefp) json_t *body =
		    notfound ? json_incref(notfound) : api_task_result(code, rbody);
		if (body && c->op == GUEST_OP_STATUS)
			json_object_del(body,
					"qemu_pid"); /* the region's input has no such field */
		if (!body)
			log_oom();
		else if (!c->a->region)
			log_warning("Task callback dropped: no region client task_id=%s sid=%s",
				    c->task_id, c->sid);
		else {
			int r = region_task_callback(c->a->region, c->task_id, body);
			if (r < 0)
				log_warning_errno(r, "Failed to post task callback task_id=%s: %m",
						  c->task_id);
		}
		log_info("Task finished task_id=%s sid=%s op=%s code=%d", c->task_id, c->sid,
			 c->op >= 0 ? guest_op_to_string(c->op) : "-", code);
		if (code >= 400 && c->op < 0)
			log_warning("Task failed task_id=%s: %s", c->task_id,
				    json_string_value(json_object_get(body, "__reason__")) ?: "?");
	} else if (c->req)
		finish_json(c->req, code, TAKE_PTR(rbody));
	call_free(c);
}

static void start_guest_op(struct api_request *req, json_t *args)
{
	struct api *api = req->l->api;
	const struct api_route *route = req->match.route;
	const char *task_id = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "X-Task-Id");
	bool async = task_id && route->id != API_ROUTE_DISK_STATUS;
	bool guest = route->id == API_ROUTE_SERVER_OP || route->id == API_ROUTE_SERVER_STATUS ||
		     route->id == API_ROUTE_SERVER_DELETE;
	if (async && !id_is_valid(task_id, REGION_ID_MAX))
		return finish_error(req, 400, NULL, "invalid X-Task-Id");
	if (!async && route->id == API_ROUTE_SERVER_STATUS) {
		/* From the guest view, on the loop: no worker, no libvirt call. */
		struct op_reply reply;
		(void)guests_status(api->a->guests, req->match.id, &reply);
		json_t *body;
		int code = reply_http(&reply, &body);
		op_reply_clear(&reply);
		status_add_host_id(api->a, code, body);
		return finish_json(req, code, body);
	}

	struct api_call *c = call_new(api, async ? NULL : req);
	if (!c)
		return finish_json(req, 500, NULL);
	snprintf(c->sid, sizeof(c->sid), "%s", req->match.id);
	c->op = guest ? route->op : -1;
	if (async && !(c->task_id = strdup(task_id))) {
		call_free(c);
		return finish_json(req, 500, NULL);
	}
	int r;
	_cleanup_free_ char *msg = NULL;
	if (route->id == API_ROUTE_DISK_OP || route->id == API_ROUTE_DISK_STATUS)
		r = diskops_submit(api->a->diskops, (enum disk_op)route->op, req->match.id,
				   req->match.id2, args, on_op_done, c, &msg);
	else if (route->id == API_ROUTE_IMAGE_CACHE)
		r = imagecache_fetch(api->a->imagecache, args, on_op_done, c, &msg);
	else if (route->id == API_ROUTE_IMAGE_UNCACHE)
		r = imagecache_uncache(api->a->imagecache, args, on_op_done, c, &msg);
	else
		r = guests_op(api->a->guests, (enum guest_op)route->op, req->match.id, args,
			      on_op_done, c, &msg);
	if (r < 0) {
		/* Refused: the callback will not run, the call is still ours, and the refusal is
		 * the HTTP reply (also of a task: the region learns at once). */
		call_free(c);
		return finish_refusal(req, r, msg);
	}
	if (async) {
		log_info("Task accepted task_id=%s sid=%s op=%s", task_id, req->match.id,
			 guest ? guest_op_to_string(route->op) : route->template);
		/* delay_clean: the region waits for the callback of an undeploy instead of going
		 * on at once (RequestUndeployGuestOnHost). */
		if (route->id == API_ROUTE_SERVER_DELETE)
			finish_json(req, 200, json_pack("{s:b}", "delay_clean", 1));
		else
			finish_json(req, 200, json_pack("{s:s}", "result", "ok"));
	}
}

/* POST /servers/<sid>/qga-*: the guest agent (agent/qga.h, guests_qga()). As in the Go
 * agent, qga-guest-ping and qga-set-password run as tasks when the region sends X-Task-Id
 * (qga-guest-ping: unless the body says "async": false), answering {"result": "ok"} at once and
 * posting the outcome to the task; every other qga route answers synchronously, X-Task-Id or
 * not. */

static void on_qga_done(int r, json_t *result, const char *msg, void *userdata)
{
	struct api_call *c = userdata;
	const char *cls;
	int code = r < 0 ? api_errno_http(r, &cls) : 200;
	json_t *body = r < 0	? op_error_body(code, cls, "%s", msg ? msg : strerror(-r))
			  : result ? result
				: NULL;
	if (c->task_id) {
		_cleanup_(json_decrefp) json_t *cb = api_task_result(code, body);
		if (!cb)
			log_oom();
		else if (!c->a->region)
			log_warning("Task callback dropped: no region client task_id=%s sid=%s",
				    c->task_id, c->sid);
		else {
			int k = region_task_callback(c->a->region, c->task_id, cb);
			if (k < 0)
				log_warning_errno(k, "Failed to post task callback task_id=%s: %m",
						  c->task_id);
		}
		log_info("Task finished task_id=%s sid=%s op=%s code=%d", c->task_id, c->sid,
			 qga_op_to_string(c->op), code);
		json_decref(body);
	} else if (c->req)
		finish_json(c->req, code, body ? body : json_pack("{s:s}", "result", "ok"));
	else
		json_decref(body);
	call_free(c);
}

static void start_qga(struct api_request *req, json_t *args)
{
	struct api *api = req->l->api;
	enum qga_op op = (enum qga_op)req->match.route->op;
	const char *task_id = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "X-Task-Id");
	json_t *async_flag = json_object_get(args, "async");
	if (async_flag && !json_is_boolean(async_flag))
		return finish_error(req, 400, NULL, "async: expected a boolean");
	bool async = task_id && (op == QGA_OP_SET_PASSWORD ||
				 (op == QGA_OP_PING && !json_is_false(async_flag)));
	if (async && !id_is_valid(task_id, REGION_ID_MAX))
		return finish_error(req, 400, NULL, "invalid X-Task-Id");
	if (!api->a->guests)
		return finish_error(req, 503, NULL, "guests are not managed");
	struct api_call *c = call_new(api, async ? NULL : req);
	if (!c || (async && !(c->task_id = strdup(task_id)))) {
		call_free(c);
		return finish_json(req, 500, NULL);
	}
	snprintf(c->sid, sizeof(c->sid), "%s", req->match.id);
	c->op = (int)op;
	char err[512] = "";
	int r =
	    guests_qga(api->a->guests, op, req->match.id, args, on_qga_done, c, err, sizeof(err));
	if (r < 0) {
		call_free(c);
		return finish_refusal(req, r, err);
	}
	if (async) {
		log_info("Task accepted task_id=%s sid=%s op=%s", task_id, req->match.id,
			 qga_op_to_string(op));
		finish_json(req, 200, json_pack("{s:s}", "result", "ok"));
	}
}

/* POST /servers/upload-status {"guest_ids": [...]}: the statuses from libvirt, posted to the
 * region in one POST /servers/upload-status, then the callback (or the reply) {}. */

/* Finishes an upload-status call: body on success (NULL: {}), or the reply r already holds. */
static void upload_finish(struct api_call *c, struct op_reply *r, json_t *body)
{
	if (r->error == 0)
		op_reply_ok(r, body ? body : json_object());
	on_op_done(r, c);
	op_reply_clear(r);
}

static void on_upload_posted(int err, const struct http_response *resp, void *userdata)
{
	struct api_call *c = userdata;
	struct op_reply r = {0};
	if (err < 0)
		(void)op_reply_fail(&r, -EAGAIN, "region unreachable: %s", strerror(-err));
	else if (resp->status < 200 || resp->status >= 300)
		(void)op_reply_fail(&r, -EREMOTEIO, "region refused upload-status (HTTP %ld)",
				    resp->status);
	upload_finish(c, &r, NULL);
}

static void on_statuses(struct op_reply *reply, void *userdata)
{
	struct api_call *c = userdata;
	struct op_reply r = {0};
	if (reply->error < 0)
		return on_op_done(reply, c);
	json_t *guests = json_object_get(reply->body, "guests");
	json_t *missing = json_object_get(reply->body, "notfound");
	const char *hid = report_host_id(c->a->report), *sid;
	json_t *g;
	json_object_foreach (guests, sid, g)
		if (hid)
			json_object_set_new(g, "host_id", json_string(hid));
	if (json_array_size(missing) > 0) {
		_cleanup_free_ char *list = json_dumps(missing, JSON_COMPACT);
		log_kv(LOG_INFO, "upload-status: guests not on this host left out", "guests",
		       strempty(list), NULL);
	}
	if (json_object_size(guests) == 0)
		return upload_finish(c, &r, NULL);
	int k = serverpush_upload_status(config_standalone(c->a->cfg) ? NULL : c->a->region, guests,
					 on_upload_posted, c);
	if (k == -ESHUTDOWN)
		return upload_finish(
		    c, &r, json_pack("{s:s}", "details", "standalone: no region to post to"));
	if (k < 0) {
		(void)op_reply_fail(&r, -EAGAIN, "region not reachable: %s", strerror(-k));
		upload_finish(c, &r, NULL);
	}
}

static void start_upload_status(struct api_request *req, json_t *args)
{
	struct api *api = req->l->api;
	const char *task_id = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "X-Task-Id");
	if (task_id && !id_is_valid(task_id, REGION_ID_MAX))
		return finish_error(req, 400, NULL, "invalid X-Task-Id");
	char msg[96];
	if (api_upload_ids_check(args, msg, sizeof(msg)) < 0)
		return finish_error(req, 400, NULL, msg);
	json_t *ids = json_object_get(args, "guest_ids");
	struct api_call *c = call_new(api, task_id ? NULL : req);
	if (!c)
		return finish_json(req, 500, NULL);
	if (task_id) {
		if (!(c->task_id = strdup(task_id))) {
			call_free(c);
			return finish_json(req, 500, NULL);
		}
	}
	_cleanup_free_ char *why = NULL;
	int r = guests_statuses(api->a->guests, ids, on_statuses, c, &why);
	if (r < 0) {
		call_free(c);
		return finish_refusal(req, r, why);
	}
	if (task_id) {
		log_info("Task accepted task_id=%s op=upload-status guests=%zu", task_id,
			 json_array_size(ids));
		finish_json(req, 200, json_pack("{s:s}", "result", "ok"));
	}
}

/* Scrape: libvirt bulk statistics on a worker, the registry rendered on the loop. */

struct stat_families {
	FILE *f[7];
	char *buf[7];
	size_t len[7];
};

static const struct {
	const char *name, *type, *help;
} stat_family[7] = {
    {"hostagent_guest_cpu_seconds_total", "counter", "Guest CPU time (libvirt cpu.time)."},
    {"hostagent_guest_memory_bytes", "gauge", "Guest memory (libvirt balloon.current)."},
    {"hostagent_guest_memory_rss_bytes", "gauge", "Resident memory of the guest's QEMU."},
    {"hostagent_guest_block_read_bytes_total", "counter", "Bytes read by a guest disk."},
    {"hostagent_guest_block_write_bytes_total", "counter", "Bytes written by a guest disk."},
    {"hostagent_guest_network_receive_bytes_total", "counter", "Bytes received by a guest NIC."},
    {"hostagent_guest_network_transmit_bytes_total", "counter",
     "Bytes transmitted by a guest NIC."},
};

static void stat_sample(struct stat_families *sf, int i, const char *labels, double v)
{
	metrics_write_sample(sf->f[i], stat_family[i].name, labels, v);
}

static void stat_devices(struct stat_families *sf, const struct virt_stats *st, int rec,
			 const char *guest, const char *kind, const char *label, const char *k1,
			 int i1, const char *k2, int i2)
{
	unsigned count = 0;
	char key[64];
	snprintf(key, sizeof(key), "%s.count", kind);
	if (!virt_stats_uint(st, rec, key, &count))
		return;
	for (unsigned i = 0; i < count && i < 1024; i++) {
		const char *name = NULL;
		unsigned long long v;
		char labels[512];
		snprintf(key, sizeof(key), "%s.%u.name", kind, i);
		if (!virt_stats_string(st, rec, key, &name) || !name)
			continue;
		_cleanup_free_ char *dev = metrics_escape_label_value(name);
		if (!dev)
			continue;
		snprintf(labels, sizeof(labels), "guest=\"%s\",%s=\"%s\"", guest, label, dev);
		snprintf(key, sizeof(key), "%s.%u.%s", kind, i, k1);
		if (virt_stats_ullong(st, rec, key, &v))
			stat_sample(sf, i1, labels, (double)v);
		snprintf(key, sizeof(key), "%s.%u.%s", kind, i, k2);
		if (virt_stats_ullong(st, rec, key, &v))
			stat_sample(sf, i2, labels, (double)v);
	}
}

static void scrape_work(void *userdata)
{
	struct api_call *c = userdata;
	struct virt_stats *recs = NULL;
	struct stat_families sf = {};
	FILE *out;
	if (!c->conn)
		return;
	int n = virt_all_domain_stats(c->conn, &recs);
	if (n < 0)
		return;
	for (size_t i = 0; i < ELEMENTSOF(sf.f); i++)
		if (!(sf.f[i] = open_memstream(&sf.buf[i], &sf.len[i])))
			goto out;
	for (int i = 0; i < n; i++) {
		unsigned long long v;
		const char *name = virt_stats_name(recs, i);
		_cleanup_free_ char *guest = name ? metrics_escape_label_value(name) : NULL;
		char labels[256];
		if (!guest)
			continue;
		snprintf(labels, sizeof(labels), "guest=\"%s\"", guest);
		if (virt_stats_ullong(recs, i, "cpu.time", &v))
			stat_sample(&sf, 0, labels, (double)v / 1e9);
		if (virt_stats_ullong(recs, i, "balloon.current", &v))
			stat_sample(&sf, 1, labels, (double)v * 1024);
		if (virt_stats_ullong(recs, i, "balloon.rss", &v))
			stat_sample(&sf, 2, labels, (double)v * 1024);
		stat_devices(&sf, recs, i, guest, "block", "device", "rd.bytes", 3, "wr.bytes", 4);
		stat_devices(&sf, recs, i, guest, "net", "interface", "rx.bytes", 5, "tx.bytes", 6);
	}
	if (!(out = open_memstream(&c->text, &c->text_len)))
		goto out;
	for (size_t i = 0; i < ELEMENTSOF(sf.f); i++) {
		fclose(sf.f[i]);
		sf.f[i] = NULL;
		metrics_write_family(out, stat_family[i].name, stat_family[i].type,
				     stat_family[i].help);
		fwrite(sf.buf[i], 1, sf.len[i], out);
	}
	if (fclose(out) != 0) {
		free(c->text);
		c->text = NULL;
	}
out:
	for (size_t i = 0; i < ELEMENTSOF(sf.f); i++) {
		if (sf.f[i])
			fclose(sf.f[i]);
		free(sf.buf[i]);
	}
	virt_stats_free(recs);
}

static void scrape_render(struct api *api, struct api_request *req, const char *guest_stats)
{
	const struct api_deps *a = api->a;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return finish_json(req, 500, NULL);
	metrics_gauge_set(a->metrics, "hostagent_tasks_queued", "Jobs waiting for a worker.", NULL,
			  a->tasks ? (double)tasks_queued(a->tasks) : 0);
	metrics_gauge_set(a->metrics, "hostagent_tasks_running", "Jobs running on a worker.", NULL,
			  a->tasks ? (double)tasks_running(a->tasks) : 0);
	int r = metrics_render(a->metrics, f);
	if (r >= 0 && guest_stats)
		fputs(guest_stats, f);
	if (fclose(f) != 0 || r < 0) {
		free(buf);
		return finish_json(req, 500, NULL);
	}
	finish_raw(req, 200, buf, len, "text/plain; version=0.0.4; charset=utf-8");
}

static void scrape_done(void *userdata)
{
	struct api_call *c = userdata;
	if (c->req && c->api)
		scrape_render(c->api, c->req, c->text);
	call_free(c);
}

static void start_scrape(struct api_request *req)
{
	struct api *api = req->l->api;
	const struct api_deps *a = api->a;
	virConnectPtr conn = a->virt ? virt_conn_ref(a->virt) : NULL;
	if (!conn || !a->tasks)
		goto inline_render;
	struct api_call *c = call_new(api, req);
	if (!c)
		goto inline_render;
	c->conn = TAKE_PTR(conn);
	if (tasks_submit(a->tasks, NULL, scrape_work, scrape_done, c) < 0) {
		call_free(c);
		goto inline_render;
	}
	return;
inline_render:
	virt_conn_unref(conn);
	scrape_render(api, req, NULL);
}

static void host_sync_done(struct op_reply *reply, void *userdata)
{
	on_op_done(reply, userdata);
}

static void dispatch(struct api_request *req)
{
	struct api *api = req->l->api;
	const struct api_deps *a = api->a;
	const struct api_route *route = req->match.route;
	_cleanup_(json_decrefp) json_t *args = NULL;
	json_t *err = NULL;

	if (!streq(route->method, "GET") &&
	    api_parse_body(req->body ? req->body : "", req->body_len, &args, &err) < 0)
		return finish_json(req, 400, err);

	switch (route->id) {
	case API_ROUTE_PING:
		return finish_raw(req, 200, strdup("pong"), 4, "text/plain; charset=utf-8");
	case API_ROUTE_HEALTHZ:
		return finish_json(req, 200, json_pack("{s:s}", "status", "ok"));
	case API_ROUTE_READYZ: {
		json_t *reasons = a->not_ready(a->not_ready_ud);
		if (api->stopping) {
			if (!reasons)
				reasons = json_array();
			json_array_append_new(reasons, json_string("shutting down"));
		}
		/* L2: the reasons name the libvirt URI, modules and the region: on the admin
		 * socket only (hostctl status); a probe over TCP needs just the code. */
		if (reasons && !req->l->admin) {
			size_t n = json_array_size(reasons);
			json_decref(reasons);
			return finish_json(req, 503,
					   json_pack("{s:s,s:I,s:s}", "status", "not ready",
						     "reasons_count", (json_int_t)n, "details",
						     "the reasons are on the admin socket (hostctl "
						     "status)"));
		}
		if (reasons)
			return finish_json(req, 503, json_pack("{s:o}", "reasons", reasons));
		return finish_json(req, 200, json_pack("{s:s}", "status", "ready"));
	}
	case API_ROUTE_VERSION:
		return finish_json(
		    req, 200,
		    json_pack("{s:s,s:s}", "name", PACKAGE_NAME, "version", PACKAGE_VERSION));
	case API_ROUTE_METRICS:
		return start_scrape(req);
	case API_ROUTE_SERVERS: {
		/* From the guest view's cached text: no worker, no libvirt call. */
		const char *text;
		size_t len;
		int r = guests_list_text(a->guests, &text, &len);
		if (r == -ENOTCONN)
			return finish_error(req, 503, NULL, "libvirt is not connected");
		if (r >= 0) {
			char *copy = malloc(len + 1);
			if (!copy)
				return finish_json(req, 500, NULL);
			memcpy(copy, text, len + 1);
			return finish_raw(req, 200, copy, len, "application/json");
		}
		struct api_call *c = call_new(api, req);
		if (!c)
			return finish_json(req, 500, NULL);
		if (guests_list(a->guests, on_op_done, c) < 0) {
			call_free(c);
			return finish_error(req, 500, NULL, "failed to list guests");
		}
		return;
	}
	case API_ROUTE_SERVER_OP:
	case API_ROUTE_SERVER_STATUS:
	case API_ROUTE_SERVER_DELETE:
	case API_ROUTE_DISK_OP:
	case API_ROUTE_DISK_STATUS:
	case API_ROUTE_IMAGE_CACHE:
	case API_ROUTE_IMAGE_UNCACHE:
		if (!args && !(args = json_object()))
			return finish_json(req, 500, NULL);
		return start_guest_op(req, args);
	case API_ROUTE_UPLOAD_STATUS:
		return start_upload_status(req, args);
	case API_ROUTE_SERVER_QGA:
		if (!args && !(args = json_object()))
			return finish_json(req, 500, NULL);
		return start_qga(req, args);
	case API_ROUTE_HOST_SYNC: {
		struct api_call *c = call_new(api, req);
		if (!c)
			return finish_json(req, 500, NULL);
		if (report_host_sync(a->report, host_sync_done, c) < 0) {
			call_free(c);
			return finish_error(req, 500, NULL, "failed to sync host information");
		}
		return;
	}
	case API_ROUTE_MODULES:
		if (!a->modules)
			return finish_error(req, 503, NULL, "kernel modules are not managed");
		return finish_json(req, 200, agent_modules_json(a->modules));
	case API_ROUTE_MODULES_ENSURE: {
		if (!a->modules)
			return finish_error(req, 503, NULL, "kernel modules are not managed");
		struct api_call *c = call_new(api, req);
		if (!c)
			return finish_json(req, 500, NULL);
		if (agent_modules_ensure(a->modules, on_op_done, c) < 0) {
			call_free(c);
			return finish_error(req, 500, NULL, "failed to check kernel modules");
		}
		return;
	}
	case _API_ROUTE_MAX:
		break;
	}
	finish_error(req, 404, NULL, "no such resource");
}

/* Authentication runs on the request headers, before any body is read, so an unauthenticated
 * client cannot make the agent buffer bodies; the connection waits suspended meanwhile. */
/* The outcome of a token validation (agent/auth.h), at once or from on_auth_done(). */
static void auth_result(struct api_request *req, int result)
{
	if (result == 0)
		req->authenticated = true;
	else if (result == -EACCES)
		finish_error(req, 401, NULL, "missing or invalid X-Auth-Token");
	else if (result == -EPERM)
		finish_error(req, 403, NULL, "the token lacks an allowed role");
	else
		finish_error(req, 503, NULL, "token validation is unavailable");
}

static void on_auth_done(int result, void *userdata)
{
	struct api_call *c = userdata;
	struct api_request *req = c->req;
	call_free(c);
	if (!req)
		return;
	req->auth_pending = false;
	auth_result(req, result);
	if (req->suspended) {
		req->suspended = false;
		MHD_resume_connection(req->conn);
		listener_kick(req->l);
	}
}

static void authenticate(struct api_request *req)
{
	struct api *api = req->l->api;
	const struct api_deps *a = api->a;
	enum api_auth need = req->match.route->auth;
	/* Over TCP an admin-only route does not exist, whatever the token. */
	if (need == API_AUTH_ADMIN && !req->l->admin)
		return finish_error(req, 404, NULL, "no such route");
	if (req->l->admin || need == API_AUTH_NONE ||
	    (need == API_AUTH_METRICS && !a->cfg->metrics_require_token)) {
		req->authenticated = true;
		return;
	}
	if (!a->auth)
		return finish_error(req, 503, NULL, "token validation is unavailable");
	struct api_call *c = call_new(api, req);
	if (!c)
		return finish_json(req, 500, NULL);
	const char *token = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "X-Auth-Token");
	/* Prometheus sends its credentials as a bearer token (authorization: credentials_file). */
	const char *authz =
	    token ? NULL : MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Authorization");
	if (authz && strncasecmp(authz, "Bearer ", 7) == 0)
		token = authz + 7;
	int r = auth_validate(a->auth, token, on_auth_done, c);
	if (r == AUTH_PENDING) {
		req->auth_pending = true;
		return;
	}
	call_free(c);
	auth_result(req, r);
}

/* ---- MHD callbacks ---------------------------------------------------------------------- */

static struct api_request *request_new(struct api_listener *l, struct MHD_Connection *conn,
				       const char *url, const char *method)
{
	struct api *api = l->api;
	struct api_request *req = calloc(1, sizeof(*req));
	if (!req)
		return NULL;
	req->l = l;
	req->conn = conn;
	clock_gettime(CLOCK_MONOTONIC, &req->start);
	snprintf(req->client, sizeof(req->client), "%s", l->admin ? "local" : "unknown");
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (!l->admin && ci && ci->client_addr) {
		const struct sockaddr *sa = ci->client_addr;
		if (sa->sa_family == AF_INET)
			inet_ntop(AF_INET,
				  &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
				  req->client, sizeof(req->client));
		else if (sa->sa_family == AF_INET6)
			inet_ntop(AF_INET6,
				  &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
				  req->client, sizeof(req->client));
	}
	(void)api_route_match(method, url, &req->match);
	req->next = api->requests;
	if (api->requests)
		api->requests->prev = req;
	api->requests = req;
	return req;
}

static void request_free(struct api_request *req)
{
	struct api *api = req->l->api;
	if (req->call)
		req->call->req = NULL;
	if (req->prev)
		req->prev->next = req->next;
	else
		api->requests = req->next;
	if (req->next)
		req->next->prev = req->prev;
	if (req->response)
		MHD_destroy_response(req->response);
	free(req->body);
	free(req);
}

static bool content_length_too_big(struct api_request *req, size_t max)
{
	const char *cl =
	    MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (!cl)
		return false;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(cl, &end, 10);
	/* A malformed length is MHD's to refuse; only a well-formed big one is ours. */
	return errno == 0 && end != cl && *end == 0 && v > max;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct api_listener *l = cls;
	struct api *api = l->api;
	struct api_request *req = *con_cls;
	size_t max = (size_t)api->a->cfg->api_max_body;

	if (!req) {
		req = request_new(l, conn, url, method);
		if (!req)
			return MHD_NO;
		*con_cls = req;
		if (!l->admin && !rate_allow(api, req->client))
			finish_error(req, 429, NULL, "request rate limit exceeded");
		else if (req->match.code)
			finish_error(req, req->match.code, NULL, req->match.details);
		else if (content_length_too_big(req, max))
			finish_error(req, 413, NULL, "request body too large");
		else
			authenticate(req);
		if (req->done) {
			api_conns_set_busy(conn, true);
			return queue(req);
		}
		if (req->auth_pending) {
			/* MHD calls again in the header phase once resumed. */
			req->header_wait = true;
			req->suspended = true;
			MHD_suspend_connection(conn);
		}
		return MHD_YES;
	}
	if (req->header_wait) {
		req->header_wait = false;
		if (req->done)
			return queue(req);
		if (*upload_data_size == 0)
			return MHD_YES;
	}

	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (req->too_large || req->body_len + n > max) {
			req->too_large = true;
			req->discarded += n;
			return req->discarded > max * DISCARD_FACTOR ? MHD_NO : MHD_YES;
		}
		char *b = realloc(req->body, req->body_len + n + 1);
		if (!b)
			return MHD_NO;
		memcpy(b + req->body_len, upload_data, n);
		req->body = b;
		req->body_len += n;
		req->body[req->body_len] = 0;
		return MHD_YES;
	}

	/* The whole request is in: from here the wait is the agent's, not the client's. */
	api_conns_set_busy(conn, true);
	if (req->queued)
		return MHD_YES;
	if (req->too_large && !req->done)
		finish_error(req, 413, NULL, "request body too large");
	if (req->done)
		return queue(req);
	if (req->started)
		return MHD_YES; /* resumed spuriously; the reply comes later */
	req->started = true;
	req->in_handler = true;
	dispatch(req);
	req->in_handler = false;
	if (req->done)
		return queue(req);
	req->suspended = true;
	MHD_suspend_connection(conn);
	return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct api_request *req = *con_cls;
	api_conns_set_busy(conn, false);
	if (!req)
		return;
	*con_cls = NULL;
	request_free(req);
}

/* Paths reach the router still percent-encoded: it decodes each segment itself, so an
 * encoded '/' cannot split a segment and "%2e%2e" is validated as "..". */
static size_t unescape_none(void *cls, struct MHD_Connection *c, char *s)
{
	return strlen(s);
}

#define MHD_LOG_BURST  20
#define MHD_LOG_WINDOW 10.0 /* seconds */

/* MHD logs one line per malformed connection, which needs no token: a burst per window,
 * then one line saying how many were suppressed. */
static bool mhd_log_allow(struct api *api)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (api->log_lines == 0 || elapsed(&api->log_window, &now) >= MHD_LOG_WINDOW) {
		if (api->log_suppressed)
			log_notice("HTTP server: %lu more messages suppressed in the last %.0f s",
				   api->log_suppressed, MHD_LOG_WINDOW);
		api->log_window = now;
		api->log_lines = 0;
		api->log_suppressed = 0;
	}
	if (api->log_lines >= MHD_LOG_BURST) {
		api->log_suppressed++;
		return false;
	}
	api->log_lines++;
	return true;
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
	struct api_listener *l = cls;
	if (l && l->api && !mhd_log_allow(l->api))
		return;
	char buf[512]; /* one log line: a longer MHD message is cut, not the daemon's memory */
	vsnprintf(buf, sizeof(buf), fmt, ap);
	size_t n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = 0;
	log_notice("HTTP server: %s", buf);
}

/* ---- listeners -------------------------------------------------------------------------- */

static int tcp_socket(const char *address, int port, int *ret_fd, int *ret_port)
{
	struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_PASSIVE | AI_NUMERICSERV,
				 .ai_socktype = SOCK_STREAM};
	struct addrinfo *ai = NULL;
	char service[16];
	snprintf(service, sizeof(service), "%d", port);
	int r = getaddrinfo(address, service, &hints, &ai);
	if (r != 0)
		return r == EAI_SYSTEM ? negative_errno() : -EADDRNOTAVAIL;
	_cleanup_close_ int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r = negative_errno();
		freeaddrinfo(ai);
		return r;
	}
	int one = 1;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0) {
		r = negative_errno();
		freeaddrinfo(ai);
		return r;
	}
	freeaddrinfo(ai);
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
		struct sockaddr_storage ss;
	} u;
	socklen_t sl = sizeof(u);
	if (getsockname(fd, &u.sa, &sl) < 0)
		return negative_errno();
	*ret_port = ntohs(u.sa.sa_family == AF_INET6 ? u.in6.sin6_port : u.in.sin_port);
	*ret_fd = TAKE_FD(fd);
	return 0;
}

/* The admin socket: directory created 0700 when missing, a stale socket (nobody listening)
 * replaced, a live one or a non-socket refused; the socket itself is made 0600. */
static int unix_socket(const char *path, int *ret_fd)
{
	union {
		struct sockaddr sa;
		struct sockaddr_un un;
	} u = {.un.sun_family = AF_UNIX};
	struct stat st;
	if (strlen(path) >= sizeof(u.un.sun_path))
		return -ENAMETOOLONG;
	strcpy(u.un.sun_path, path);
	_cleanup_free_ char *dir_copy = strdup(path);
	if (!dir_copy)
		return -ENOMEM;
	const char *dir = dirname(dir_copy);
	if (stat(dir, &st) < 0) {
		int r = mkdir_p(dir, 0700);
		if (r < 0)
			return r;
	} else if (st.st_uid != geteuid() || (st.st_mode & 022)) {
		/* L8: in a directory others may write, another user could take the path over. */
		log_error("Admin socket directory %s is %s (mode %04o): it must be owned by this "
			  "user and writable by nobody else",
			  dir,
			  st.st_uid != geteuid() ? "owned by another user" : "writable by others",
			  (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return negative_errno();
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return -EEXIST;
		_cleanup_close_ int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe < 0)
			return negative_errno();
		if (connect(probe, &u.sa, sizeof(u.un)) == 0)
			return -EADDRINUSE;
		if (unlink(path) < 0 && errno != ENOENT)
			return negative_errno();
	}
	if (bind(fd, &u.sa, sizeof(u.un)) < 0)
		return negative_errno();
	if (chmod(path, 0600) < 0 || listen(fd, 64) < 0) {
		int r = negative_errno();
		(void)unlink(path);
		return r;
	}
	*ret_fd = TAKE_FD(fd);
	return 0;
}

/* 127.0.0.0/8, ::1 and "localhost": the only addresses where plain HTTP keeps tokens local. */
static bool address_is_loopback(const char *addr)
{
	if (isempty(addr))
		return false;
	if (streq(addr, "localhost") || streq(addr, "::1"))
		return true;
	struct in_addr in;
	return inet_pton(AF_INET, addr, &in) == 1 && (ntohl(in.s_addr) >> 24) == 127;
}

static int listener_start(struct api_listener *l, int fd, bool tls)
{
	struct api *api = l->api;
	const struct config *cfg = api->a->cfg;
	unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC |
			 MHD_USE_ERROR_LOG | (tls ? MHD_USE_TLS : 0);
	int r = api_conns_new(api->a->event, (unsigned)cfg->api_max_connections,
			      (unsigned)cfg->api_request_timeout, &l->conns);
	if (r < 0) {
		safe_close(fd);
		return r;
	}
	struct MHD_OptionItem opts[] = {
	    {MHD_OPTION_LISTEN_SOCKET, fd, NULL},
	    {MHD_OPTION_CONNECTION_LIMIT, cfg->api_max_connections, NULL},
	    {MHD_OPTION_CONNECTION_TIMEOUT, cfg->api_request_timeout, NULL},
	    {MHD_OPTION_CONNECTION_MEMORY_LIMIT, CONN_MEMORY_LIMIT, NULL},
	    {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, l},
	    {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)api_conns_notify, l->conns},
	    {MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t)unescape_none, l},
	    {MHD_OPTION_PER_IP_CONNECTION_LIMIT, l->admin ? 0 : cfg->api_max_connections_per_ip,
	     NULL},
	    {tls ? MHD_OPTION_HTTPS_PRIORITIES : MHD_OPTION_END, 0, (void *)TLS_PRIORITIES},
	    {tls ? MHD_OPTION_HTTPS_CERT_CALLBACK : MHD_OPTION_END, 0, (void *)tls_cert_callback},
	    {MHD_OPTION_END, 0, NULL},
	};
	l->fd = fd;
	l->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, l,
				     /* first, so that MHD logs nothing through its own logger */
				     MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, l, MHD_OPTION_ARRAY,
				     opts, MHD_OPTION_END);
	if (!l->daemon) {
		safe_close(fd);
		l->fd = -1;
		return -EIO;
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(l->daemon, MHD_DAEMON_INFO_EPOLL_FD);
	if (!di)
		return -EIO;
	sd_event *e = api->a->event;
	r = sd_event_add_io(e, &l->io, di->epoll_fd, EPOLLIN, on_io, l);
	if (r < 0)
		return r;
	/* accuracy 1 us: 0 would mean sd-event's default slack of 250 ms on every reply */
	r = sd_event_add_time(e, &l->timer, CLOCK_MONOTONIC, UINT64_MAX, 1, on_timer, l);
	if (r < 0)
		return r;
	listener_arm(l);
	return 0;
}

static void listener_stop(struct api_listener *l)
{
	l->io = sd_event_source_disable_unref(l->io);
	l->timer = sd_event_source_disable_unref(l->timer);
	if (l->daemon) {
		MHD_stop_daemon(l->daemon);
		l->daemon = NULL;
	}
	l->conns = api_conns_free(l->conns);
}

int api_new(const struct api_deps *a, struct api **ret)
{
	struct api *api = calloc(1, sizeof(*api));
	if (!api)
		return -ENOMEM;
	api->a = a;
	api->tcp = (struct api_listener){.api = api, .fd = -1};
	api->admin = (struct api_listener){.api = api, .fd = -1, .admin = true};
	*ret = api;
	return 0;
}

int api_start(struct api *api)
{
	const struct config *cfg = api->a->cfg;
	bool tls = !isempty(cfg->tls_cert_file) && !isempty(cfg->tls_key_file);
	int fd, r;
	if (tls) {
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
			return log_error_errno(EOPNOTSUPP, "libmicrohttpd was built without TLS");
		_cleanup_free_ char *err = NULL;
		r = tls_creds_new(cfg->tls_cert_file, cfg->tls_key_file, &api->tls, &err);
		if (r < 0)
			return log_error_errno(r, "%s",
					       err ? err : "TLS credentials: out of memory");
		tls_creds_activate(api->tls);
		r = tls_creds_watch(api->tls, api->a->event);
		if (r < 0)
			log_warning_errno(
			    r, "Cannot watch the TLS files for changes (SIGHUP reloads): %m");
	} else if (!address_is_loopback(cfg->listen_address))
		log_warning("API on %s port %d is plain HTTP: tokens travel in clear; set "
			    "tls_cert_file and tls_key_file",
			    cfg->listen_address, cfg->port);
	r = tcp_socket(cfg->listen_address, cfg->port, &fd, &api->port);
	if (r < 0)
		return log_error_errno(r, "Failed to listen on %s port %d: %m", cfg->listen_address,
				       cfg->port);
	r = listener_start(&api->tcp, fd, tls);
	if (r < 0)
		return log_error_errno(r, "Failed to start the HTTP%s server: %m", tls ? "S" : "");
	if (!isempty(cfg->admin_socket)) {
		r = unix_socket(cfg->admin_socket, &fd);
		if (r < 0)
			return log_error_errno(r, "Failed to listen on admin socket %s: %m",
					       cfg->admin_socket);
		r = listener_start(&api->admin, fd, false);
		if (r < 0)
			return log_error_errno(r, "Failed to serve the admin socket: %m");
	}
	metrics_gauge_set(api->a->metrics, "hostagent_build_info",
			  "Build information of the agent (always 1).",
			  "name=\"" PACKAGE_NAME "\",version=\"" PACKAGE_VERSION "\"", 1);
	log_info("API listening address=%s port=%d tls=%s admin_socket=%s", cfg->listen_address,
		 api->port, tls ? "yes" : "no", strempty(cfg->admin_socket));
	return 0;
}

int api_reload(struct api *api)
{
	if (!api || !api->tls)
		return 0;
	return tls_creds_reload(api->tls);
}

int api_port(struct api *api)
{
	return api ? api->port : 0;
}

static void listener_quiesce(struct api_listener *l)
{
	if (!l->daemon || l->quiesced)
		return;
	MHD_socket s = MHD_quiesce_daemon(l->daemon);
	if (s != MHD_INVALID_SOCKET)
		safe_close(s);
	l->quiesced = true;
}

void api_stop_accepting(struct api *api)
{
	if (!api || api->stopping)
		return;
	api->stopping = true;
	listener_quiesce(&api->tcp);
	listener_quiesce(&api->admin);
}

struct api *api_free(struct api *api)
{
	if (!api)
		return NULL;
	/* Detach every outstanding callback: it will find no api and no request. */
	for (struct api_call *c = api->calls, *next; c; c = next) {
		next = c->next;
		if (c->req)
			c->req->call = NULL;
		c->req = NULL;
		c->api = NULL;
		c->prev = c->next = NULL;
	}
	api->calls = NULL;
	/* MHD refuses to stop with suspended connections: answer them. */
	for (struct api_request *r = api->requests; r; r = r->next)
		if (r->suspended)
			finish_error(r, 503, NULL, "the agent is shutting down");
	listener_run(&api->tcp);
	listener_run(&api->admin);
	listener_stop(&api->tcp);
	listener_stop(&api->admin);
	const char *path = api->a->cfg->admin_socket;
	if (api->admin.fd >= 0 && !isempty(path))
		(void)unlink(path);
	for (size_t i = 0; i < RATE_BUCKETS; i++)
		for (struct rate_entry *e = api->rate[i], *n; e; e = n) {
			n = e->next;
			free(e);
		}
	api->tls = tls_creds_free(api->tls);
	free(api);
	return NULL;
}

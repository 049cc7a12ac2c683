#include <ctype.h>
#include <time.h>

#include "agent/region.h"
#include "agent/httploop.h"
#include "common/config.h"
#include "common/event-util.h"
#include "common/http-client.h"
#include "common/log.h"
#include "common/macros.h"
#include "common/path.h"

#define AUTH_TIMEOUT_MS	       10000
#define CALLBACK_TIMEOUT_MS    15000
#define BACKOFF_MIN_USEC       (1 * USEC_PER_SEC)
#define BACKOFF_MAX_USEC       (60 * USEC_PER_SEC)
#define RENEW_MIN_USEC	       (5 * USEC_PER_SEC)
#define CALLBACK_ATTEMPTS      10
#define CALLBACK_MAX_PENDING   4096
#define HTTP_MAX_IN_FLIGHT     512
#define VALIDATE_MAX_IN_FLIGHT 64
/* A callback waiting for a token (Keystone down) gives up after this long. */
#define CALLBACK_MAX_AGE_USEC (3600 * USEC_PER_SEC)

/* One HTTP request of an agent module on one of the region's loops (agent/httploop.h). */
struct region_http {
	struct region *region;
	struct region_http *prev, *next;
	struct httploop_req *q;
	region_http_done_fn done;
	void *userdata;
};

struct task_callback {
	struct region *region;
	struct task_callback *prev, *next;
	char *task_id;
	char *body;
	unsigned attempts;
	uint64_t created;
	sd_event_source *timer;
	struct region_http *http;
};

struct region {
	sd_event *event;
	const struct config *cfg; /* the agent's, outlives the region */
	bool standalone;
	/* Keystone and region calls run on the event loop (curl's multi interface), not on the
	 * agent's workers: slow guest operations never delay token checks, nor a hung keystone
	 * guest operations. */
	struct httploop *http;
	/* Token validations for API callers (anyone can make the agent ask for one) have their
	 * own cap in flight, so a flood of them never stops heartbeats, reports or callbacks. */
	struct httploop *validate_http;
	char *token;
	char *compute_url;
	char *image_url;	/* the catalog's image service (glance), NULL when it has none */
	uint64_t token_expires; /* CLOCK_MONOTONIC usec */
	sd_event_source *renew_timer;
	struct region_http *auth_http;
	unsigned auth_failures;
	uint64_t last_auth;
	struct region_http *jobs;
	struct task_callback *callbacks;
	size_t n_callbacks;
};

static uint64_t retry_delay(unsigned failures)
{
	return backoff_usec(failures, BACKOFF_MIN_USEC, BACKOFF_MAX_USEC);
}

/* ---- Keystone parsing ---- */

int keystone_parse_time(const char *s, uint64_t *ret_usec)
{
	if (!s)
		return -EINVAL;
	struct tm tm = {0};
	const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!p)
		return -EINVAL;
	uint64_t frac = 0;
	if (*p == '.') {
		unsigned digits = 0;
		for (p++; isdigit((unsigned char)*p); p++, digits++)
			if (digits < 6)
				frac = frac * 10 + (uint64_t)(*p - '0');
		if (digits == 0)
			return -EINVAL;
		for (; digits < 6; digits++)
			frac *= 10;
	}
	if (!streq(p, "Z") && !streq(p, "+00:00") && !streq(p, ""))
		return -EINVAL;
	time_t t = timegm(&tm);
	if (t < 0)
		return -ERANGE;
	*ret_usec = (uint64_t)t * USEC_PER_SEC + frac;
	return 0;
}

int keystone_token_times(json_t *token_body, uint64_t *ret_issued, uint64_t *ret_expires)
{
	json_t *tok = json_object_get(token_body, "token");
	uint64_t issued, expires;
	if (keystone_parse_time(json_string_value(json_object_get(tok, "issued_at")), &issued) <
		0 ||
	    keystone_parse_time(json_string_value(json_object_get(tok, "expires_at")), &expires) <
		0)
		return -EBADMSG;
	if (expires <= issued)
		return -EBADMSG;
	*ret_issued = issued;
	*ret_expires = expires;
	return 0;
}

int keystone_catalog_find(json_t *token_body, const char *const *types, const char *region,
			  const char *interface, char **ret_url)
{
	json_t *catalog = json_object_get(json_object_get(token_body, "token"), "catalog");
	if (!json_is_array(catalog))
		return -EBADMSG;
	/* Types in order of preference: the first listed type that has a match wins. */
	for (const char *const *t = types; t && *t; t++) {
		size_t i;
		json_t *svc;
		json_array_foreach (catalog, i, svc) {
			if (!streq_ptr(json_string_value(json_object_get(svc, "type")), *t))
				continue;
			size_t k;
			json_t *ep;
			json_array_foreach (json_object_get(svc, "endpoints"), k, ep) {
				const char *itf =
				    json_string_value(json_object_get(ep, "interface"));
				const char *reg =
				    json_string_value(json_object_get(ep, "region_id"));
				if (!reg)
					reg = json_string_value(json_object_get(ep, "region"));
				const char *url = json_string_value(json_object_get(ep, "url"));
				if (!itf || !url || !streq(itf, interface))
					continue;
				if (region && !streq_ptr(reg, region))
					continue;
				if (!strneq(url, "http://", 7) && !strneq(url, "https://", 8))
					continue;
				char *u = strdup(url);
				if (!u)
					return -ENOMEM;
				u[strlen_trim_slashes(u)] = 0; /* paths are appended with '/' */
				*ret_url = u;
				return 0;
			}
		}
	}
	return -ENOENT;
}

int keystone_token_has_role(json_t *token_body, char *const *roles)
{
	json_t *list = json_object_get(json_object_get(token_body, "token"), "roles");
	if (!json_is_array(list))
		return -EBADMSG;
	size_t i;
	json_t *role;
	json_array_foreach (list, i, role) {
		const char *name = json_string_value(json_object_get(role, "name"));
		if (name && strv_contains(roles, name))
			return 0;
	}
	return -EPERM;
}

/* ---- asynchronous HTTP ---- */

static void http_job_free(struct region_http *h)
{
	struct region *r = h->region;
	if (r) {
		if (h->prev)
			h->prev->next = h->next;
		else
			r->jobs = h->next;
		if (h->next)
			h->next->prev = h->prev;
	}
	free(h);
}

static void http_job_done(int err, const struct http_response *resp, void *userdata)
{
	struct region_http *h = userdata;
	region_http_done_fn done = h->done;
	void *ud = h->userdata;
	/* The handle is invalid once done runs: free it first (done may submit again). */
	http_job_free(h);
	done(err, resp, ud);
}

static int submit_on(struct region *r, struct httploop *loop, const char *method, const char *url,
		     char *const *headers, const char *body, long timeout_ms,
		     region_http_done_fn done, void *userdata, struct region_http **ret_handle)
{
	if (!loop)
		return -ESHUTDOWN;
	struct region_http *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	struct http_request req = {
	    .method = method,
	    .url = url,
	    .headers = (char **)headers,
	    .body = body,
	    .body_len = body ? strlen(body) : 0,
	    .timeout_ms = timeout_ms,
	};
	int k = httploop_submit(loop, &req, http_job_done, h, &h->q);
	if (k < 0) {
		free(h);
		return k;
	}
	h->done = done;
	h->userdata = userdata;
	h->region = r;
	h->next = r->jobs;
	if (r->jobs)
		r->jobs->prev = h;
	r->jobs = h;
	if (ret_handle)
		*ret_handle = h;
	return 0;
}

int region_http_submit(struct region *r, const char *method, const char *url, char *const *headers,
		       const char *body, long timeout_ms, region_http_done_fn done, void *userdata,
		       struct region_http **ret_handle)
{
	return submit_on(r, r->http, method, url, headers, body, timeout_ms, done, userdata,
			 ret_handle);
}

int region_validation_submit(struct region *r, const char *url, char *const *headers,
			     long timeout_ms, region_http_done_fn done, void *userdata,
			     struct region_http **ret_handle)
{
	return submit_on(r, r->validate_http, "GET", url, headers, NULL, timeout_ms, done, userdata,
			 ret_handle);
}

void region_http_cancel(struct region_http *h)
{
	if (!h)
		return;
	httploop_cancel(h->q);
	http_job_free(h);
}

/* ---- Keystone session ---- */

static int authenticate(struct region *r);

static int on_renew_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct region *r = userdata;
	int k = authenticate(r);
	if (k < 0) {
		log_warning_errno(k, "Failed to start keystone authentication: %m");
		r->auth_failures++;
		(void)event_source_arm_relative(r->renew_timer, retry_delay(r->auth_failures));
	}
	return 0;
}

static int schedule_renew(struct region *r, uint64_t after_usec)
{
	return event_reset_time_relative(r->event, &r->renew_timer, after_usec, USEC_PER_SEC / 10,
					 on_renew_timer, r);
}

static void auth_failed(struct region *r, int err, const char *what)
{
	r->auth_failures++;
	uint64_t d = retry_delay(r->auth_failures);
	/* A token that is still valid stays in use until it expires. */
	if (r->token && now_usec(CLOCK_MONOTONIC) >= r->token_expires) {
		explicit_bzero(r->token, strlen(r->token));
		free(r->token);
		r->token = NULL;
	}
	log_warning_errno(err, "Keystone authentication failed (%s), retrying in %llus: %m", what,
			  (unsigned long long)(d / USEC_PER_SEC));
	int k = schedule_renew(r, d);
	if (k < 0)
		log_error_errno(k, "Failed to schedule keystone authentication: %m");
}

static void kick_callbacks(struct region *r);

static void on_auth_done(int err, const struct http_response *resp, void *userdata)
{
	struct region *r = userdata;
	r->auth_http = NULL;
	if (err < 0)
		return auth_failed(r, err, "no answer");
	if (resp->status != 201 && resp->status != 200) {
		char what[64];
		snprintf(what, sizeof(what), "HTTP %ld", resp->status);
		return auth_failed(r, resp->status == 401 ? EACCES : EIO, what);
	}
	const char *token = http_response_header(resp, "x-subject-token");
	if (isempty(token) || strlen(token) > 8192)
		return auth_failed(r, EBADMSG, "no X-Subject-Token");
	json_error_t jerr;
	json_auto_t *body = json_loadb(resp->body, resp->body_len, 0, &jerr);
	if (!body)
		return auth_failed(r, EBADMSG, "malformed token body");
	uint64_t issued, expires;
	if (keystone_token_times(body, &issued, &expires) < 0)
		return auth_failed(r, EBADMSG, "token without issued_at/expires_at");
	static const char *const types[] = {"compute_v2", "compute", NULL};
	_cleanup_free_ char *url = NULL;
	const struct config *c = r->cfg;
	int k = keystone_catalog_find(body, types, isempty(c->region) ? NULL : c->region,
				      c->session_endpoint_type, &url);
	if (k < 0) {
		char what[160];
		snprintf(what, sizeof(what), "no compute endpoint for region '%s' interface '%s'",
			 strempty(c->region), c->session_endpoint_type);
		return auth_failed(r, -k, what);
	}
	char *t = strdup(token);
	if (!t)
		return auth_failed(r, ENOMEM, "out of memory");
	if (r->token) {
		explicit_bzero(r->token, strlen(r->token));
		free(r->token);
	}
	r->token = t;
	free(r->compute_url);
	r->compute_url = TAKE_PTR(url);
	/* Optional: only the image cache needs it, and it says so when it is missing. */
	static const char *const image_types[] = {"image", NULL};
	free(r->image_url);
	r->image_url = NULL;
	(void)keystone_catalog_find(body, image_types, isempty(c->region) ? NULL : c->region,
				    c->session_endpoint_type, &r->image_url);
	uint64_t life = expires - issued;
	r->token_expires = now_usec(CLOCK_MONOTONIC) + life;
	r->auth_failures = 0;
	log_kv(LOG_INFO, "Authenticated to keystone", "user", c->admin_user, "project",
	       c->admin_project, "compute", r->compute_url, NULL);
	k = schedule_renew(r, MAX(life / 2, RENEW_MIN_USEC));
	if (k < 0)
		log_error_errno(k, "Failed to schedule token renewal: %m");
	kick_callbacks(r);
}

static int authenticate(struct region *r)
{
	if (r->auth_http)
		return 0;
	const struct config *c = r->cfg;
	json_auto_t *req = json_pack(
	    "{s:{s:{s:[s],s:{s:{s:s,s:{s:s},s:s}}},s:{s:{s:s,s:{s:s}}}}}", "auth", "identity",
	    "methods", "password", "password", "user", "name", c->admin_user, "domain", "name",
	    strempty(c->admin_domain), "password", c->admin_password, "scope", "project", "name",
	    strempty(c->admin_project), "domain", "name", strempty(c->admin_project_domain));
	if (!req)
		return -ENOMEM;
	_cleanup_free_ char *body = json_dumps(req, JSON_COMPACT);
	_cleanup_free_ char *url = NULL;
	if (!body)
		return -ENOMEM;
	size_t l = strlen_trim_slashes(c->auth_url);
	if (asprintf_safe(&url, "%.*s/auth/tokens", (int)l, c->auth_url) < 0) {
		explicit_bzero(body, strlen(body));
		return -ENOMEM;
	}
	r->last_auth = now_usec(CLOCK_MONOTONIC);
	int k = region_http_submit(r, "POST", url, NULL, body, AUTH_TIMEOUT_MS, on_auth_done, r,
				   &r->auth_http);
	explicit_bzero(body, strlen(body));
	return k;
}

void region_token_invalid(struct region *r)
{
	if (!r || r->standalone || r->auth_http)
		return;
	/* Several 401s/403s in a row ask once. */
	if (r->last_auth && now_usec(CLOCK_MONOTONIC) - r->last_auth < RENEW_MIN_USEC)
		return;
	log_info("Keystone refused the service token, authenticating again");
	int k = schedule_renew(r, 0);
	if (k < 0)
		log_error_errno(k, "Failed to schedule keystone authentication: %m");
}

const char *region_token(struct region *r)
{
	if (!r || !r->token || now_usec(CLOCK_MONOTONIC) >= r->token_expires)
		return NULL;
	return r->token;
}

const char *region_compute_url(struct region *r)
{
	return r ? r->compute_url : NULL;
}

const char *region_image_url(struct region *r)
{
	return r ? r->image_url : NULL;
}

/* ---- task callbacks ---- */

static void callback_free(struct task_callback *cb)
{
	if (!cb)
		return;
	struct region *r = cb->region;
	if (r) {
		if (cb->prev)
			cb->prev->next = cb->next;
		else
			r->callbacks = cb->next;
		if (cb->next)
			cb->next->prev = cb->prev;
		r->n_callbacks--;
	}
	region_http_cancel(cb->http);
	sd_event_source_disable_unref(cb->timer);
	free(cb->task_id);
	free(cb->body);
	free(cb);
}

static int callback_send(struct task_callback *cb);

static int on_callback_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct task_callback *cb = userdata;
	int k = callback_send(cb);
	if (k < 0) {
		log_error_errno(k, "Task callback %s dropped: %m", cb->task_id);
		callback_free(cb);
	}
	return 0;
}

static int callback_retry(struct task_callback *cb, uint64_t after)
{
	struct region *r = cb->region;
	return event_reset_time_relative(r->event, &cb->timer, after, USEC_PER_SEC / 10,
					 on_callback_timer, cb);
}

static void on_callback_done(int err, const struct http_response *resp, void *userdata)
{
	struct task_callback *cb = userdata;
	struct region *r = cb->region;
	cb->http = NULL;
	long status = resp ? resp->status : 0;
	if (err >= 0 && status >= 200 && status < 300) {
		log_kv(LOG_DEBUG, "Task callback delivered", "task_id", cb->task_id, NULL);
		return callback_free(cb);
	}
	/* The real region answers 403, not 401, for a bad or expired token. */
	if (err >= 0 && (status == 401 || status == 403))
		region_token_invalid(r);
	bool retryable = err < 0 || status >= 500 || status == 401 || status == 403 ||
			 status == 408 || status == 429;
	if (!retryable || cb->attempts >= CALLBACK_ATTEMPTS) {
		if (err < 0)
			log_error_errno(err, "Task callback %s dropped after %u attempts: %m",
					cb->task_id, cb->attempts);
		else
			log_error("Task callback %s dropped after %u attempts: region answered "
				  "HTTP %ld",
				  cb->task_id, cb->attempts, status);
		return callback_free(cb);
	}
	uint64_t d = retry_delay(cb->attempts);
	if (err < 0)
		log_warning_errno(
		    err, "Task callback %s failed (attempt %u), retrying in %llus: %m", cb->task_id,
		    cb->attempts, (unsigned long long)(d / USEC_PER_SEC));
	else
		log_warning("Task callback %s failed with HTTP %ld (attempt %u), retrying in %llus",
			    cb->task_id, status, cb->attempts,
			    (unsigned long long)(d / USEC_PER_SEC));
	int k = callback_retry(cb, d);
	if (k < 0) {
		log_error_errno(k, "Task callback %s dropped: %m", cb->task_id);
		callback_free(cb);
	}
}

static int callback_send(struct task_callback *cb)
{
	struct region *r = cb->region;
	if (cb->http)
		return 0;
	const char *token = region_token(r);
	if (!token || !r->compute_url) {
		/* Not authenticated yet: wait for the session (kick_callbacks), poll slowly. */
		if (now_usec(CLOCK_MONOTONIC) - cb->created > CALLBACK_MAX_AGE_USEC)
			return -ETIMEDOUT;
		return callback_retry(cb, BACKOFF_MAX_USEC);
	}
	_cleanup_free_ char *url = NULL, *hdr = NULL;
	if (asprintf_safe(&url, "%s/tasks/%s", r->compute_url, cb->task_id) < 0 ||
	    asprintf_safe(&hdr, "X-Auth-Token: %s", token) < 0)
		return -ENOMEM;
	char *headers[] = {hdr, NULL};
	cb->attempts++;
	int k = region_http_submit(r, "POST", url, headers, cb->body, CALLBACK_TIMEOUT_MS,
				   on_callback_done, cb, &cb->http);
	explicit_bzero(hdr, strlen(hdr));
	if (k == -EBUSY && cb->attempts < CALLBACK_ATTEMPTS)
		return callback_retry(cb, retry_delay(cb->attempts));
	return k;
}

static void kick_callbacks(struct region *r)
{
	for (struct task_callback *cb = r->callbacks, *n; cb; cb = n) {
		n = cb->next;
		if (cb->http || cb->attempts > 0)
			continue;
		int k = callback_send(cb);
		if (k < 0) {
			log_error_errno(k, "Task callback %s dropped: %m", cb->task_id);
			callback_free(cb);
		}
	}
}

int region_task_callback(struct region *r, const char *task_id, json_t *body)
{
	if (!r || r->standalone)
		return 0;
	if (!id_is_valid(task_id, REGION_ID_MAX) || !json_is_object(body))
		return -EINVAL;
	if (r->n_callbacks >= CALLBACK_MAX_PENDING)
		return -EBUSY;
	struct task_callback *cb = calloc(1, sizeof(*cb));
	if (!cb)
		return -ENOMEM;
	cb->task_id = strdup(task_id);
	cb->body = json_dumps(body, JSON_COMPACT);
	if (!cb->task_id || !cb->body) {
		free(cb->task_id);
		free(cb->body);
		free(cb);
		return -ENOMEM;
	}
	cb->created = now_usec(CLOCK_MONOTONIC);
	cb->region = r;
	cb->next = r->callbacks;
	if (r->callbacks)
		r->callbacks->prev = cb;
	r->callbacks = cb;
	r->n_callbacks++;
	int k = callback_send(cb);
	if (k < 0) {
		callback_free(cb);
		return k;
	}
	return 0;
}

/* ---- lifecycle ---- */

int region_new(sd_event *event, const struct config *cfg, struct region **ret)
{
	struct region *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->event = event;
	r->cfg = cfg;
	r->standalone = config_standalone(cfg);
	if (!r->standalone) {
		int k = httploop_new(event, HTTP_MAX_IN_FLIGHT, &r->http);
		if (k >= 0)
			k = httploop_new(event, VALIDATE_MAX_IN_FLIGHT, &r->validate_http);
		if (k < 0) {
			r->http = httploop_free(r->http);
			free(r);
			return k;
		}
	}
	*ret = r;
	return 0;
}

int region_start(struct region *r)
{
	if (r->standalone)
		return 0;
	/* Keystone may be down now: authentication keeps retrying in the background. */
	int k = schedule_renew(r, 0);
	if (k < 0)
		return log_error_errno(k, "Failed to schedule keystone authentication: %m");
	return 0;
}

struct region *region_free(struct region *r)
{
	if (!r)
		return NULL;
	if (r->n_callbacks > 0)
		log_warning("Dropping %zu undelivered task callbacks", r->n_callbacks);
	while (r->callbacks)
		callback_free(r->callbacks);
	/* Requests still running are stopped; their done never runs. */
	while (r->jobs)
		region_http_cancel(r->jobs);
	r->http = httploop_free(r->http);
	r->validate_http = httploop_free(r->validate_http);
	sd_event_source_disable_unref(r->renew_timer);
	if (r->token) {
		explicit_bzero(r->token, strlen(r->token));
		free(r->token);
	}
	free(r->compute_url);
	free(r->image_url);
	free(r);
	return NULL;
}

size_t region_pending_callbacks(struct region *r)
{
	return r ? r->n_callbacks : 0;
}

#include <stdarg.h>

#include "agent/api-internal.h"
#include "agent/diskops.h"
#include "agent/ops.h"
#include "agent/qga.h"
#include "common/macros.h"
#include "common/path.h"

/* The fields of an operation of a family of routes: its method, path prefix and authentication
 * are stated once. */
#define SERVER_OP(verb, op)  API_ROUTE_SERVER_OP, "POST", "/servers/:sid/" verb, API_AUTH_TOKEN, op
#define SERVER_QGA(verb, op) API_ROUTE_SERVER_QGA, "POST", "/servers/:sid/" verb, API_AUTH_TOKEN, op
#define DISK_OP(verb, op)                                                                          \
	API_ROUTE_DISK_OP, "POST", "/disks/:storage/" verb "/:disk", API_AUTH_TOKEN, op

static const struct api_route routes[] = {
    {API_ROUTE_PING, "GET", "/ping", API_AUTH_NONE, -1},
    {API_ROUTE_HEALTHZ, "GET", "/healthz", API_AUTH_NONE, -1},
    {API_ROUTE_READYZ, "GET", "/readyz", API_AUTH_NONE, -1},
    {API_ROUTE_METRICS, "GET", "/metrics", API_AUTH_METRICS, -1},
    {API_ROUTE_VERSION, "GET", "/version", API_AUTH_TOKEN, -1},
    {API_ROUTE_SERVERS, "GET", "/servers", API_AUTH_TOKEN, -1},
    {API_ROUTE_UPLOAD_STATUS, "POST", "/servers/upload-status", API_AUTH_TOKEN, -1},
    {SERVER_OP("create", GUEST_OP_CREATE)},
    {SERVER_OP("start", GUEST_OP_START)},
    {SERVER_OP("stop", GUEST_OP_STOP)},
    {SERVER_OP("reboot", GUEST_OP_REBOOT)},
    {SERVER_OP("suspend", GUEST_OP_SUSPEND)},
    {SERVER_OP("resume", GUEST_OP_RESUME)},
    {SERVER_OP("sync", GUEST_OP_SYNC)},
    {SERVER_OP("monitor", GUEST_OP_MONITOR)},
    {SERVER_OP("deploy", GUEST_OP_DEPLOY)},
    {API_ROUTE_SERVER_STATUS, "GET", "/servers/:sid/status", API_AUTH_TOKEN, GUEST_OP_STATUS},
    {SERVER_QGA("qga-guest-ping", QGA_OP_PING)},
    {SERVER_QGA("qga-set-password", QGA_OP_SET_PASSWORD)},
    {SERVER_QGA("qga-command", QGA_OP_COMMAND)},
    {SERVER_QGA("qga-get-network", QGA_OP_GET_NETWORK)},
    {SERVER_QGA("qga-get-os-info", QGA_OP_GET_OS_INFO)},
    {SERVER_QGA("qga-guest-info-task", QGA_OP_GUEST_INFO)},
    {SERVER_QGA("qga-set-network", QGA_OP_SET_NETWORK)},
    {API_ROUTE_SERVER_OP, "GET", "/servers/:sid/console", API_AUTH_ADMIN, GUEST_OP_CONSOLE},
    {API_ROUTE_SERVER_DELETE, "DELETE", "/servers/:sid", API_AUTH_TOKEN, GUEST_OP_DELETE},
    {API_ROUTE_HOST_SYNC, "POST", "/hosts/:hid/sync", API_AUTH_TOKEN, -1},
    {API_ROUTE_MODULES, "GET", "/modules", API_AUTH_TOKEN, -1},
    {API_ROUTE_MODULES_ENSURE, "POST", "/modules/ensure", API_AUTH_TOKEN, -1},
    /* Literal routes before parameter routes of the same shape. */
    {API_ROUTE_IMAGE_CACHE, "POST", "/disks/image_cache", API_AUTH_TOKEN, -1},
    {API_ROUTE_IMAGE_UNCACHE, "DELETE", "/disks/image_cache", API_AUTH_TOKEN, -1},
    {DISK_OP("create", DISK_OP_CREATE)},
    {DISK_OP("delete", DISK_OP_DELETE)},
    {DISK_OP("resize", DISK_OP_RESIZE)},
    {API_ROUTE_DISK_STATUS, "GET", "/disks/:storage/:disk/status", API_AUTH_TOKEN, DISK_OP_STATUS},
};

#undef SERVER_OP
#undef SERVER_QGA
#undef DISK_OP

const struct api_route *api_route_by_id(enum api_route_id id)
{
	for (size_t i = 0; i < ELEMENTSOF(routes); i++)
		if (routes[i].id == id)
			return &routes[i];
	return NULL;
}

#define MAX_SEGMENTS 6
#define MAX_PARAMS   2

struct segment {
	const char *s;
	size_t len;
};

/* Splits "/a/b/c" into segments; an empty path or one without the leading '/' fails. Empty
 * segments ("//", trailing "/") are kept so that they can never match a literal. */
static int split(const char *url, struct segment *seg, size_t *ret_n)
{
	size_t n = 0;
	if (url[0] != '/')
		return -EINVAL;
	const char *p = url + 1;
	for (;;) {
		if (n == MAX_SEGMENTS)
			return -E2BIG;
		const char *e = strchrnul(p, '/');
		seg[n].s = p;
		seg[n].len = (size_t)(e - p);
		n++;
		if (!*e)
			break;
		p = e + 1;
	}
	*ret_n = n;
	return 0;
}

/* Matches the shape of a template; ret_params[k] points at the segment of its k-th :param
 * (NULL when the template has fewer). */
static bool template_matches(const char *template, const struct segment *seg, size_t n,
			     const struct segment **ret_params)
{
	struct segment t[MAX_SEGMENTS];
	size_t tn, np = 0;
	const struct segment *params[MAX_PARAMS] = {};
	if (split(template, t, &tn) < 0 || tn != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (t[i].s[0] == ':') {
			if (np < MAX_PARAMS)
				params[np++] = &seg[i];
			continue;
		}
		if (t[i].len != seg[i].len || memcmp(t[i].s, seg[i].s, seg[i].len) != 0)
			return false;
	}
	memcpy(ret_params, params, sizeof(params));
	return true;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int api_percent_decode(const char *s, size_t len, char *out, size_t size)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '%') {
			if (i + 2 >= len)
				return -EINVAL;
			int h = hexval(s[i + 1]), l = h < 0 ? -1 : hexval(s[i + 2]);
			if (h < 0 || l < 0)
				return -EINVAL;
			c = (char)(h * 16 + l);
			if (c == 0)
				return -EINVAL;
			i += 2;
		}
		if (o + 1 >= size)
			return -EINVAL;
		out[o++] = c;
	}
	out[o] = 0;
	return 0;
}

static int fail(struct api_match *m, int code, const char *fmt, ...) _printf_(3, 4);
static int fail(struct api_match *m, int code, const char *fmt, ...)
{
	/* Into the match's own buffer: the router allocates nothing (the fuzzer runs it a
	 * million times); its messages are ours and name at most a capped id. */
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m->details, sizeof(m->details), fmt, ap);
	va_end(ap);
	m->code = code;
	m->route = NULL;
	return code;
}

int api_route_match(const char *method, const char *url, struct api_match *m)
{
	struct segment seg[MAX_SEGMENTS];
	size_t n;
	memset(m, 0, sizeof(*m));
	if (!method || !url || strlen(url) > API_URL_MAX || split(url, seg, &n) < 0)
		return fail(m, 404, "no such resource");

	const struct api_route *found = NULL;
	const struct segment *param[MAX_PARAMS] = {};
	bool shape = false;
	for (size_t i = 0; i < ELEMENTSOF(routes); i++) {
		const struct segment *p[MAX_PARAMS];
		if (!template_matches(routes[i].template, seg, n, p))
			continue;
		if (!shape) {
			shape = true;
			snprintf(m->allow, sizeof(m->allow), "%s", routes[i].method);
		} else if (!strstr(m->allow, routes[i].method)) {
			size_t l = strlen(m->allow);
			snprintf(m->allow + l, sizeof(m->allow) - l, ", %s", routes[i].method);
		}
		if (streq(routes[i].method, method) ||
		    (streq(method, "HEAD") && streq(routes[i].method, "GET"))) {
			found = &routes[i];
			memcpy(param, p, sizeof(param));
			break;
		}
	}
	if (!shape)
		return fail(m, 404, "no such resource");
	if (!found) {
		char allow[API_ALLOW_MAX];
		memcpy(allow, m->allow, sizeof(allow));
		if (strstr(allow, "GET"))
			snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), ", HEAD");
		fail(m, 405, "method not allowed here; allowed: %s", allow);
		memcpy(m->allow, allow, sizeof(allow));
		return 405;
	}
	char *out[MAX_PARAMS] = {m->id, m->id2};
	for (size_t k = 0; k < MAX_PARAMS; k++) {
		if (!param[k])
			continue;
		if (api_percent_decode(param[k]->s, param[k]->len, out[k], REGION_ID_MAX + 1) < 0 ||
		    !id_is_valid(out[k], REGION_ID_MAX))
			return fail(m, 400, "invalid id in path");
	}
	m->route = found;
	m->code = 0;
	m->allow[0] = 0;
	return 0;
}

const char *api_error_class(int code)
{
	switch (code) {
	case 400:
		return "InputParameterError";
	case 401:
		return "UnauthorizedError";
	case 403:
		return "ForbiddenError";
	case 404:
		return "NotFoundError";
	case 405:
		return "MethodNotAllowedError";
	case 408:
	case 504:
		return "TimeoutError";
	case 409:
		return "ConflictError";
	case 413:
		return "TooLargeEntityError";
	case 429:
		return "TooManyRequestsError";
	case 501:
		return "NotImplementedError";
	case 503:
		return "ServiceUnavailableError";
	default:
		return code >= 500 ? "InternalServerError" : "BadRequestError";
	}
}

int api_errno_http(int error, const char **ret_cls)
{
	*ret_cls = NULL; /* the status code's (api_error_class) */
	switch (error) {
	case -EINVAL:
		return 400;
	case -EHOSTDOWN:
		*ret_cls = "InvalidStatusError"; /* Cloudpods' httperrors: 400 too */
		return 400;
	case -EPERM:
	case -EACCES:
		return 403;
	case -ENOENT:
	case -ESRCH:
		return 404;
	case -EEXIST:
	case -EBUSY:
		return 409;
	case -EOPNOTSUPP:
		return 501;
	case -EREMOTEIO:
	case -EBADMSG:
	case -EPROTO:
		return 502;
	case -EAGAIN:
	case -ENOTCONN:
	case -ENOLINK:
	case -ESHUTDOWN:
		return 503;
	case -ETIMEDOUT:
		return 504;
	case -ENOSPC:
	case -EDQUOT:
		return 507;
	default:
		return 500;
	}
}

/* The one builder of Cloudpods error bodies, for the API and the operations (agent/ops.h):
 * the top-level {"code", "class", "details"} of Cloudpods' httperrors, so that the region's
 * client recovers the class (its not-found checks compare it). */
json_t *op_error_body(int code, const char *cls, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *details = vstrprintf(fmt, ap);
	va_end(ap);
	return json_pack("{s:i,s:s,s:s}", "code", code, "class", cls ? cls : api_error_class(code),
			 "details", details ? details : "out of memory");
}

int api_parse_body(const char *data, size_t len, json_t **ret, json_t **ret_error)
{
	json_error_t e;
	size_t i = 0;
	while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n'))
		i++;
	if (i == len) {
		json_t *o = json_object();
		if (!o)
			return -ENOMEM;
		*ret = o;
		return 0;
	}
	json_t *j = json_loadb(data, len, 0, &e);
	if (!j) {
		/* jansson's text is ASCII and bounded; it may quote the offending token, which
		 * json_pack validates as UTF-8, so keep only printable ASCII. */
		char text[JSON_ERROR_TEXT_LENGTH];
		size_t k = 0;
		for (const char *p = e.text; *p && k + 1 < sizeof(text); p++)
			text[k++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
		text[k] = 0;
		*ret_error = op_error_body(400, NULL,
					   "malformed JSON body at line %d, column %d (position "
					   "%d): %s",
					   e.line, e.column, e.position, text);
		return -EINVAL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		*ret_error = op_error_body(400, NULL, "request body must be a JSON object");
		return -EINVAL;
	}
	*ret = j;
	return 0;
}

json_t *api_task_result(int code, json_t *body)
{
	json_t *r = json_is_object(body) ? json_deep_copy(body) : json_object();
	if (!r)
		return NULL;
	if (code < 400)
		return r;
	const char *reason = NULL;
	reason = json_string_value(json_object_get(r, "details"));
	char fallback[32];
	if (!reason) {
		snprintf(fallback, sizeof(fallback), "failed with status %d", code);
		reason = fallback;
	}
	if (json_object_set_new(r, "__status__", json_string("error")) < 0 ||
	    json_object_set_new(r, "__reason__", json_string(reason)) < 0) {
		json_decref(r);
		return NULL;
	}
	return r;
}

int api_upload_ids_check(const json_t *args, char *msg, size_t size)
{
	json_t *ids = json_object_get(args, "guest_ids"), *v;
	size_t i;
	if (!json_is_array(ids))
		return snprintf(msg, size, "guest_ids: missing or not an array"), -EINVAL;
	if (json_array_size(ids) > API_UPLOAD_IDS_MAX)
		return snprintf(msg, size, "guest_ids: more than %d guests", API_UPLOAD_IDS_MAX),
		       -EINVAL;
	json_array_foreach (ids, i, v)
		if (!json_is_string(v) || !id_is_valid(json_string_value(v), 64))
			return snprintf(msg, size, "guest_ids[%zu]: not a guest id", i), -EINVAL;
	return 0;
}

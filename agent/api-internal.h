/* The HTTP API's pure parts, shared by agent/api.c and the unit and fuzz tests: route table
 * and matching, id decoding and validation, request-body parsing, error bodies. Nothing here
 * touches the agent, MHD or the network. Pure: called on the loop thread and by the fuzzers. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "agent/ops.h"
#include "common/path.h"

#define API_URL_MAX   4096
#define API_ALLOW_MAX 32

enum api_route_id {
	API_ROUTE_PING,
	API_ROUTE_HEALTHZ,
	API_ROUTE_READYZ,
	API_ROUTE_METRICS,
	API_ROUTE_VERSION,
	API_ROUTE_SERVERS,
	API_ROUTE_SERVER_OP,	  /* POST /servers/<sid>/<op> */
	API_ROUTE_SERVER_STATUS,  /* GET /servers/<sid>/status */
	API_ROUTE_SERVER_DELETE,  /* DELETE /servers/<sid> */
	API_ROUTE_HOST_SYNC,	  /* POST /hosts/<hid>/sync */
	API_ROUTE_MODULES,	  /* GET /modules */
	API_ROUTE_MODULES_ENSURE, /* POST /modules/ensure */
	API_ROUTE_DISK_OP,	  /* POST /disks/<storage>/<op>/<disk> (agent/diskops.h) */
	API_ROUTE_DISK_STATUS,	  /* GET /disks/<storage>/<disk>/status */
	API_ROUTE_IMAGE_CACHE,	  /* POST /disks/image_cache (agent/imagecache.h) */
	API_ROUTE_IMAGE_UNCACHE,  /* DELETE /disks/image_cache */
	API_ROUTE_UPLOAD_STATUS,  /* POST /servers/upload-status */
	API_ROUTE_SERVER_QGA,	  /* POST /servers/<sid>/qga-* (agent/qga.h) */
	_API_ROUTE_MAX,
};

enum api_auth {
	API_AUTH_NONE,	  /* probes */
	API_AUTH_TOKEN,	  /* every other route */
	API_AUTH_METRICS, /* per metrics_require_token */
	API_AUTH_ADMIN,	  /* the local admin socket only (secrets: console passwords) */
};

struct api_route {
	enum api_route_id id;
	const char *method;
	const char *template; /* "/servers/:sid/status": the metrics label, never a raw id */
	enum api_auth auth;
	int op; /* enum guest_op for server routes, enum disk_op for disk routes, enum qga_op for
		 * the guest agent's, -1 otherwise */
};

/* The outcome of routing a request. On success route is set, id holds the decoded first path
 * parameter (<sid>, <hid>, <storage>; "" when the route has none) and id2 the second one
 * (<disk>; "" when none). On failure code is 400, 404 or 405, details
 * says why and, for 405, allow lists the accepted methods ("GET, HEAD"). */
struct api_match {
	const struct api_route *route;
	char id[REGION_ID_MAX + 1];
	char id2[REGION_ID_MAX + 1];
	int code;
	char allow[API_ALLOW_MAX];
	char details[160];
};

/* url is the raw request path as sent (still percent-encoded, no query string). Returns 0
 * on a match, else the HTTP status (400, 404, 405) with m filled in. */
int api_route_match(const char *method, const char *url, struct api_match *m);
const struct api_route *api_route_by_id(enum api_route_id id);

/* Decodes %XX escapes of one path segment into out (size bytes). -EINVAL on a malformed
 * escape, an encoded NUL or an overlong result. */
int api_percent_decode(const char *s, size_t len, char *out, size_t size);

/* Parses a request body: empty means {}; otherwise a JSON object. On failure returns
 * -EINVAL and sets *ret_error to an error body (400) naming line, column and position. */
int api_parse_body(const char *data, size_t len, json_t **ret, json_t **ret_error);

/* POST /servers/upload-status {"guest_ids": [...]}: 0 when guest_ids is an array of at most
 * API_UPLOAD_IDS_MAX guest ids, else -EINVAL with msg naming what is wrong. */
#define API_UPLOAD_IDS_MAX 4096
int api_upload_ids_check(const json_t *args, char *msg, size_t size);

/* Cloudpods' error body {"code": N, "class": "...", "details": "..."}; the class follows the
 * code when cls is NULL (api_error_class). */
json_t *op_error_body(int code, const char *cls, const char *fmt, ...) _printf_(3, 4);
/* Cloudpods' class name for an HTTP status (InputParameterError, NotFoundError, ...). */
const char *api_error_class(int code);
/* The one map from an operation's errno (the vocabulary of agent/ops.h) to the HTTP status,
 * and the class when it is not the status code's (*ret_cls NULL then). */
int api_errno_http(int error, const char **ret_cls);

/* The task-callback body for a finished asynchronous operation: the reply body, plus
 * "__status__": "error" and "__reason__" when code >= 400. New reference. */
json_t *api_task_result(int code, json_t *body);

#include "agent/serverpush.h"
#include "common/http-client.h"
#include "common/log.h"
#include "common/macros.h"

#define PUSH_TIMEOUT_MS (15 * 1000)

json_t *serverpush_metadata_body(const char *qemu_version, int vnc_port, const char *vnc_password)
{
	json_auto_t *meta = json_object();
	if (!meta)
		return NULL;
	if (qemu_version &&
	    json_object_set_new(meta, "__qemu_version", json_string(qemu_version)) < 0)
		return NULL;
	if (vnc_port >= 0 && json_object_set_new(meta, "__vnc_port", json_integer(vnc_port)) < 0)
		return NULL;
	if (vnc_password &&
	    json_object_set_new(meta, "__vnc_password", json_string(vnc_password)) < 0)
		return NULL;
	return json_pack("{s:O}", "server", meta);
}

static int post(struct region *r, const char *path, json_t *body, region_http_done_fn done,
		void *userdata)
{
	if (!r)
		return -ESHUTDOWN;
	const char *token = region_token(r), *base = region_compute_url(r);
	if (!token || !base)
		return -ENOTCONN;
	_cleanup_free_ char *url = NULL, *hdr = NULL, *data = json_dumps(body, JSON_COMPACT);
	if (!data || asprintf_safe(&url, "%s%s", base, path) < 0 ||
	    asprintf_safe(&hdr, "X-Auth-Token: %s", token) < 0)
		return -ENOMEM;
	char *headers[] = {hdr, NULL};
	int k = region_http_submit(r, "POST", url, headers, data, PUSH_TIMEOUT_MS, done, userdata,
				   NULL);
	explicit_bzero(hdr, strlen(hdr));
	explicit_bzero(data, strlen(data)); /* may hold the console password */
	return k;
}

static void on_metadata_done(int err, const struct http_response *resp, void *userdata)
{
	_cleanup_free_ char *sid = userdata;
	if (err < 0)
		log_kv(LOG_WARNING, "Guest metadata not posted to the region", "sid", sid, "error",
		       strerror(-err), NULL);
	else if (resp->status < 200 || resp->status >= 300) {
		char status[16];
		snprintf(status, sizeof(status), "%ld", resp->status);
		log_kv(LOG_WARNING, "Region refused the guest metadata", "sid", sid, "status",
		       status, NULL);
	} else
		log_kv(LOG_DEBUG, "Guest metadata posted", "sid", sid, NULL);
}

void serverpush_started(struct region *r, const char *sid, const char *qemu_version, int vnc_port,
			const char *vnc_password)
{
	if (!r)
		return;
	json_auto_t *body = serverpush_metadata_body(qemu_version, vnc_port, vnc_password);
	_cleanup_free_ char *path = NULL;
	char *ud = strdup(sid);
	int k = body && ud ? asprintf_safe(&path, "/servers/%s/metadata", sid) : -ENOMEM;
	if (k >= 0)
		k = post(r, path, body, on_metadata_done, ud);
	if (k < 0) {
		free(ud);
		log_kv(LOG_WARNING, "Guest metadata not posted to the region", "sid", sid, "error",
		       strerror(-k), NULL);
	}
}

int serverpush_upload_status(struct region *r, json_t *guests, region_http_done_fn done,
			     void *userdata)
{
	json_auto_t *body = json_pack("{s:{s:O}}", "servers", "guests", guests);
	if (!body)
		return -ENOMEM;
	return post(r, "/servers/upload-status", body, done, userdata);
}

#include <ctype.h>

#include "common/fs.h"
#include "common/http-client.h"
#include "common/macros.h"
#include "deploy/reconciler/kube.h"
#include "deploy/reconciler/render.h"

#define OCR_TIMEOUT_MS	   30000
#define OCR_MAX_RESPONSE   (16 * 1024 * 1024)
#define OCR_MAX_MESSAGE	   512
#define OCR_MAX_TOKEN_SIZE (64 * 1024)

void ocr_kube_done(struct ocr_kube *k)
{
	free(k->server);
	free(k->token_file);
	free(k->ca_file);
	free(k->token);
	*k = (struct ocr_kube){};
}

int ocr_kube_load_token(struct ocr_kube *k)
{
	if (!k->token_file)
		return 0;
	char *t = NULL;
	size_t len;
	int r = read_file(k->token_file, OCR_MAX_TOKEN_SIZE, &t, &len);
	if (r < 0)
		return r;
	while (len > 0 && isspace((unsigned char)t[len - 1]))
		t[--len] = 0;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)t[i] <= ' ') {
			free(t);
			return -EBADMSG;
		}
	free(k->token);
	k->token = t;
	return 0;
}

char *ocr_kube_path(const char *kind, const char *ns, const char *name)
{
	const struct ocr_kind *k = ocr_kind_find(kind);
	if (!k)
		return NULL;
	char *s = NULL;
	bool core = !strchr(k->api_version, '/');
	if (asprintf_safe(&s, "/%s/%s/namespaces/%s/%s%s%s", core ? "api" : "apis", k->api_version,
			  ns, k->plural, name ? "/" : "", strempty(name)) < 0)
		return NULL;
	return s;
}

void ocr_kube_reply_done(struct ocr_kube_reply *r)
{
	json_decref(r->body);
	free(r->message);
	*r = (struct ocr_kube_reply){};
}

static char *urlencode(const char *s)
{
	char *out = malloc(strlen(s) * 3 + 1), *o = out;
	if (!out)
		return NULL;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (isalnum(c) || strchr("-._~", c))
			*o++ = (char)c;
		else
			o += sprintf(o, "%%%02X", c);
	}
	*o = 0;
	return out;
}

static int request(const struct ocr_kube *k, const char *method, const char *path,
		   const char *query, const char *body, struct ocr_kube_reply *ret)
{
	_cleanup_free_ char *url = strjoin(k->server, path, query ? "?" : "", strempty(query));
	_cleanup_free_ char *auth = k->token ? strjoin("Authorization: Bearer ", k->token) : NULL;
	if (!url || (k->token && !auth))
		return -ENOMEM;
	char accept[] = "Accept: application/json";
	char *headers[] = {accept, auth, NULL};
	struct http_request req = {
	    .method = method,
	    .url = url,
	    .headers = headers,
	    .body = body,
	    .body_len = body ? strlen(body) : 0,
	    .content_type = body ? "application/apply-patch+yaml" : NULL,
	    .timeout_ms = OCR_TIMEOUT_MS,
	    .max_response = OCR_MAX_RESPONSE,
	    .ca_file = k->ca_file,
	    .insecure = k->insecure,
	};
	struct http_response resp = {};
	int r = http_request_run(&req, &resp);
	if (r < 0)
		return r;
	struct ocr_kube_reply rep = {.status = resp.status};
	rep.body = json_loadb(resp.body, resp.body_len, 0, NULL);
	if (rep.status >= 400) {
		json_t *m = json_object_get(rep.body, "message");
		if (json_is_string(m))
			rep.message = strdup(json_string_value(m));
		else
			rep.message = strndup(resp.body, MIN(resp.body_len, OCR_MAX_MESSAGE));
		if (!rep.message) {
			http_response_done(&resp);
			ocr_kube_reply_done(&rep);
			return -ENOMEM;
		}
		/* One line per event in the logs. */
		for (char *c = rep.message; *c; c++)
			if (*c == '\n' || *c == '\r')
				*c = ' ';
	}
	http_response_done(&resp);
	*ret = rep;
	return 0;
}

int ocr_kube_get(const struct ocr_kube *k, const char *path, struct ocr_kube_reply *ret)
{
	return request(k, "GET", path, NULL, NULL, ret);
}

int ocr_kube_list(const struct ocr_kube *k, const char *path, const char *selector,
		  struct ocr_kube_reply *ret)
{
	_cleanup_free_ char *sel = urlencode(selector);
	_cleanup_free_ char *q = sel ? strjoin("labelSelector=", sel) : NULL;
	if (!q)
		return -ENOMEM;
	return request(k, "GET", path, q, NULL, ret);
}

int ocr_kube_apply(const struct ocr_kube *k, const char *path, const json_t *obj,
		   struct ocr_kube_reply *ret)
{
	/* JSON is YAML: the apply-patch+yaml body is the object as JSON. */
	_cleanup_free_ char *body = json_dumps(obj, JSON_SORT_KEYS | JSON_COMPACT);
	if (!body)
		return -ENOMEM;
	return request(k, "PATCH", path, "fieldManager=" OCR_FIELD_MANAGER "&force=true", body,
		       ret);
}

int ocr_kube_delete(const struct ocr_kube *k, const char *path, struct ocr_kube_reply *ret)
{
	/* The Deployment's ReplicaSets and pods go with it. */
	return request(k, "DELETE", path, "propagationPolicy=Background", NULL, ret);
}

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "agent/diskreq.h"
#include "common/json-util.h"
#include "common/macros.h"
#include "common/path.h"

#define ID_MAX 128

/* An optional string field: absent, null and "" are NULL (the region sends empty strings for
 * unset ids). */
static int opt_string(struct ju_ctx *c, json_t *d, const char *key, const char **ret)
{
	int r = ju_get_string(c, d, "disk", key, false, ID_MAX, 0, ret);
	if (r > 0 && !**ret)
		*ret = NULL;
	return r < 0 ? r : 0;
}

static int opt_id(struct ju_ctx *c, json_t *d, const char *key, bool required, const char **ret)
{
	int r = opt_string(c, d, key, ret);
	if (r < 0)
		return r;
	if (!*ret)
		return required ? ju_fail(c, "disk.%s: missing", key) : 0;
	if (!id_is_valid(*ret, ID_MAX))
		return ju_fail(c, "disk.%s: invalid", key);
	return 0;
}

static int format_field(struct ju_ctx *c, json_t *d, bool cache, const char **ret)
{
	int r = opt_string(c, d, "format", ret);
	if (r < 0)
		return r;
	if (!*ret)
		*ret = "qcow2";
	else if (!streq(*ret, "qcow2") && !streq(*ret, "raw"))
		return ju_fail(c, "disk.format: %s is not %s (qcow2 or raw)", *ret,
			       cache ? "cached here" : "supported");
	return 0;
}

/* A size in MB: 1..DISK_MAX_MB. */
static int size_field(struct ju_ctx *c, json_t *d, const char *key, int64_t *ret)
{
	json_t *v = json_object_get(d, key);
	if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
	    json_integer_value(v) > DISK_MAX_MB)
		return ju_fail(c, "disk.%s: %s", key,
			       v ? "must be an integer between 1 and 67108864 (MB)" : "missing");
	*ret = json_integer_value(v);
	return 0;
}

static int parse(struct ju_ctx *c, enum disk_req_kind kind, json_t *body, struct disk_request *ret)
{
	json_t *d = json_object_get(body, "disk");
	if (!json_is_object(d))
		d = body;
	if (!json_is_object(d))
		return ju_fail(c, "body: expected a JSON object");
	int r;
	switch (kind) {
	case DISK_REQ_CREATE: {
		if ((r = opt_id(c, d, "image_id", false, &ret->image_id)) < 0 ||
		    (r = format_field(c, d, false, &ret->format)) < 0)
			return r;
		/* The region sends -1 for a system disk of the image's own size (no size asked
		 * for): the overlay gets the template's virtual size. */
		json_t *v = json_object_get(d, "disk_size_mb");
		if (ret->image_id && (!v || (json_is_integer(v) && json_integer_value(v) <= 0)))
			ret->size_mb = 0;
		else if ((r = size_field(c, d, "disk_size_mb", &ret->size_mb)) < 0)
			return r;
		if (ret->image_id)
			ret->format = "qcow2"; /* an overlay on a cached template */
		return 0;
	}
	case DISK_REQ_RESIZE:
		if ((r = size_field(c, d, "size", &ret->size_mb)) < 0)
			return r;
		return opt_id(c, d, "server_id", false, &ret->server_id);
	case DISK_REQ_CACHE:
		if ((r = opt_id(c, d, "image_id", true, &ret->image_id)) < 0 ||
		    (r = opt_id(c, d, "storagecache_id", true, &ret->storagecache_id)) < 0 ||
		    (r = format_field(c, d, true, &ret->format)) < 0)
			return r;
		return opt_id(c, d, "server_id", false, &ret->server_id);
	case DISK_REQ_UNCACHE:
		if ((r = opt_id(c, d, "image_id", true, &ret->image_id)) < 0)
			return r;
		return opt_id(c, d, "storagecache_id", true, &ret->storagecache_id);
	}
	return ju_fail(c, "unknown request");
}

int disk_request_parse(enum disk_req_kind kind, json_t *body, struct disk_request *ret,
		       char **ret_error)
{
	struct ju_ctx c = {};
	*ret = (struct disk_request){};
	*ret_error = NULL;
	return ju_finish(&c, parse(&c, kind, body, ret), ret_error);
}

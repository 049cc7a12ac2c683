#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "agent/diskreq.h"
#include "common/macros.h"
#include "common/path.h"

#define ID_MAX 128

/* An optional string field: absent or null is NULL, "" is NULL too (the region sends empty
 * strings for unset ids); any other type is refused. */
static int opt_string(json_t *d, const char *key, const char **ret, char **ret_error)
{
	json_t *v = json_object_get(d, key);
	*ret = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return error_set(ret_error, -EINVAL, "disk.%s: expected a string", key);
	if (json_string_length(v) > 0)
		*ret = json_string_value(v);
	return 0;
}

static int opt_id(json_t *d, const char *key, bool required, const char **ret, char **ret_error)
{
	int r = opt_string(d, key, ret, ret_error);
	if (r < 0)
		return r;
	if (!*ret)
		return required ? error_set(ret_error, -EINVAL, "disk.%s: missing", key) : 0;
	if (!id_is_valid(*ret, ID_MAX))
		return error_set(ret_error, -EINVAL, "disk.%s: invalid", key);
	return 0;
}

static int format_field(json_t *d, bool cache, const char **ret, char **ret_error)
{
	int r = opt_string(d, "format", ret, ret_error);
	if (r < 0)
		return r;
	if (!*ret)
		*ret = "qcow2";
	else if (!streq(*ret, "qcow2") && !streq(*ret, "raw"))
		return error_set(ret_error, -EINVAL, "disk.format: %s is not %s (qcow2 or raw)",
				 *ret, cache ? "cached here" : "supported");
	return 0;
}

/* A size in MB: 1..DISK_MAX_MB. */
static int size_field(json_t *d, const char *key, int64_t *ret, char **ret_error)
{
	json_t *v = json_object_get(d, key);
	if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
	    json_integer_value(v) > DISK_MAX_MB)
		return error_set(ret_error, -EINVAL, "disk.%s: %s", key,
				 v ? "must be an integer between 1 and 67108864 (MB)" : "missing");
	*ret = json_integer_value(v);
	return 0;
}

int disk_request_parse(enum disk_req_kind kind, json_t *body, struct disk_request *ret,
		       char **ret_error)
{
	*ret = (struct disk_request){};
	*ret_error = NULL;
	json_t *d = json_object_get(body, "disk");
	if (!json_is_object(d))
		d = body;
	if (!json_is_object(d))
		return error_set(ret_error, -EINVAL, "body: expected a JSON object");
	int r;
	switch (kind) {
	case DISK_REQ_CREATE: {
		if ((r = opt_id(d, "image_id", false, &ret->image_id, ret_error)) < 0 ||
		    (r = format_field(d, false, &ret->format, ret_error)) < 0)
			return r;
		/* The region sends -1 for a system disk of the image's own size (no size asked
		 * for): the overlay gets the template's virtual size. */
		json_t *v = json_object_get(d, "disk_size_mb");
		if (ret->image_id && (!v || (json_is_integer(v) && json_integer_value(v) <= 0)))
			ret->size_mb = 0;
		else if ((r = size_field(d, "disk_size_mb", &ret->size_mb, ret_error)) < 0)
			return r;
		if (ret->image_id)
			ret->format = "qcow2"; /* an overlay on a cached template */
		return 0;
	}
	case DISK_REQ_RESIZE:
		if ((r = size_field(d, "size", &ret->size_mb, ret_error)) < 0)
			return r;
		return opt_id(d, "server_id", false, &ret->server_id, ret_error);
	case DISK_REQ_CACHE:
		if ((r = opt_id(d, "image_id", true, &ret->image_id, ret_error)) < 0 ||
		    (r = opt_id(d, "storagecache_id", true, &ret->storagecache_id, ret_error)) <
			0 ||
		    (r = format_field(d, true, &ret->format, ret_error)) < 0)
			return r;
		return opt_id(d, "server_id", false, &ret->server_id, ret_error);
	case DISK_REQ_UNCACHE:
		if ((r = opt_id(d, "image_id", true, &ret->image_id, ret_error)) < 0)
			return r;
		return opt_id(d, "storagecache_id", true, &ret->storagecache_id, ret_error);
	}
	return error_set(ret_error, -EINVAL, "unknown request");
}

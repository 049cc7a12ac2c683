#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "agent/imagecheck.h"
#include "agent/qemuimg.h"
#include "common/macros.h"
#include "common/spawn.h"

int image_format_valid(const char *format)
{
	return format && (streq(format, "qcow2") || streq(format, "raw"));
}

/* A filename qemu would hand to a protocol driver or parse as options, not open as a file. */
static bool is_protocol_name(const char *s)
{
	if (strneq(s, "json:", 5))
		return true;
	const char *colon = strchr(s, ':');
	return colon && (colon == s || !strchr(s, '/') || strchr(s, '/') > colon);
}

int image_info_check(json_t *info, const char *path, const char *format, struct image_info *ret,
		     char **ret_error)
{
	if (!json_is_object(info))
		return -EBADMSG;
	const char *fmt = json_string_value(json_object_get(info, "format"));
	json_t *vs = json_object_get(info, "virtual-size");
	const char *filename = json_string_value(json_object_get(info, "filename"));
	if (!fmt || !json_is_integer(vs) || !filename)
		return -EBADMSG;
	if (!image_format_valid(format))
		return error_set(ret_error, -EMEDIUMTYPE, "unsupported image format %s",
				 strempty(format));
	if (!streq(fmt, format))
		return error_set(ret_error, -EMEDIUMTYPE, "image %s is %s, not the announced %s",
				 path, fmt, format);
	if (!streq(filename, path) || is_protocol_name(filename))
		return error_set(ret_error, -EMEDIUMTYPE, "image %s has the protocol filename %s",
				 path, filename);
	static const char *const backing_keys[] = {"full-backing-filename", "backing-filename",
						   "backing-filename-format"};
	for (size_t i = 0; i < ELEMENTSOF(backing_keys); i++) {
		json_t *b = json_object_get(info, backing_keys[i]);
		if (b)
			return error_set(
			    ret_error, -EMEDIUMTYPE,
			    "image %s names a backing file (%s); images must be leaves", path,
			    json_is_string(b) ? json_string_value(b) : "?");
	}
	json_t *data = json_object_get(json_object_get(info, "format-specific"), "data");
	json_t *df = json_object_get(data, "data-file");
	if (df || json_object_get(data, "data-file-raw"))
		return error_set(
		    ret_error, -EMEDIUMTYPE,
		    "image %s names an external data file %s; refused (it would give the "
		    "guest that file)",
		    path, json_is_string(df) ? json_string_value(df) : "(unnamed)");
	if (json_is_true(json_object_get(info, "encrypted")))
		return error_set(ret_error, -EMEDIUMTYPE, "image %s is encrypted", path);
	/* Newer qemu-img lists the image's children; a leaf file image has only "file". */
	json_t *children = json_object_get(info, "children"), *ch;
	size_t i;
	json_array_foreach (children, i, ch) {
		const char *name = json_string_value(json_object_get(ch, "name"));
		if (!name || !streq(name, "file"))
			return error_set(ret_error, -EMEDIUMTYPE, "image %s has a %s child", path,
					 name ? name : "unnamed");
	}
	json_int_t size = json_integer_value(vs);
	if (size <= 0)
		return error_set(ret_error, -EMEDIUMTYPE, "image %s has virtual size %lld", path,
				 (long long)size);
	struct image_info r = {.virtual_size = size};
	snprintf(r.format, sizeof(r.format), "%s", fmt);
	*ret = r;
	return 0;
}

int image_inspect(const char *path, const char *format, struct image_info *ret, char **ret_error)
{
	if (!image_format_valid(format))
		return error_set(ret_error, -EMEDIUMTYPE, "unsupported image format %s",
				 strempty(format));
	const char *argv[] = {"qemu-img",      "info", "-f", format, "-U",
			      "--output=json", "--",   path, NULL};
	_cleanup_free_ char *out = NULL, *err = NULL;
	int r = qemu_img_run(argv, &out, &err);
	if (r == -ETIMEDOUT)
		return error_set(ret_error, r, "qemu-img info of %s timed out", path);
	if (r == -EIO)
		return error_set(ret_error, r, "qemu-img cannot read %s as %s: %.300s", path,
				 format, qemu_img_first_line(err));
	if (r < 0)
		return error_set(ret_error, r, "cannot run qemu-img: %s", strerror(-r));
	json_auto_t *j = json_loads(out ? out : "", 0, NULL);
	r = image_info_check(j, path, format, ret, ret_error);
	if (r == -EBADMSG)
		return error_set(ret_error, r, "qemu-img info of %s gave unexpected output", path);
	return r;
}

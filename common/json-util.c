/* Typed reading of untrusted JSON with path-named refusals (see json-util.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/json-util.h"
#include "common/parse.h"

int ju_fail(struct ju_ctx *c, const char *fmt, ...)
{
	if (!c->error && !c->oom) {
		va_list ap;
		va_start(ap, fmt);
		if (vasprintf(&c->error, fmt, ap) < 0) {
			c->error = NULL;
			c->oom = true;
		}
		va_end(ap);
	}
	return -EINVAL;
}

int ju_oom(struct ju_ctx *c)
{
	c->oom = true;
	return -ENOMEM;
}

int ju_finish(struct ju_ctx *c, int r, char **ret_error)
{
	_cleanup_free_ char *error = TAKE_PTR(c->error);
	if (c->oom) {
		c->oom = false;
		return -ENOMEM;
	}
	if (r < 0 && ret_error)
		*ret_error = TAKE_PTR(error);
	return r;
}

struct ju_name ju_field(const char *prefix, const char *key)
{
	struct ju_name f;
	if (isempty(prefix))
		snprintf(f.s, sizeof(f.s), "%s", strempty(key));
	else if (isempty(key))
		snprintf(f.s, sizeof(f.s), "%s", prefix);
	else
		snprintf(f.s, sizeof(f.s), "%s.%s", prefix, key);
	return f;
}

struct ju_quoted ju_quote(const char *v)
{
	struct ju_quoted q;
	size_t o = 0;
	q.s[o++] = '"';
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (o + 8 >= sizeof(q.s)) {
			memcpy(q.s + o, "...", 3);
			o += 3;
			break;
		}
		if (*p == '"' || *p == '\\') {
			q.s[o++] = '\\';
			q.s[o++] = (char)*p;
		} else if (*p < 0x20 || *p >= 0x7f)
			o += snprintf(q.s + o, sizeof(q.s) - o, "\\x%02x", *p);
		else
			q.s[o++] = (char)*p;
	}
	q.s[o++] = '"';
	q.s[o] = 0;
	return q;
}

const char *ju_type_name(const json_t *v)
{
	if (!v)
		return "nothing";
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "object";
	case JSON_ARRAY:
		return "array";
	case JSON_STRING:
		return "string";
	case JSON_INTEGER:
		return "integer";
	case JSON_REAL:
		return "real";
	case JSON_TRUE:
	case JSON_FALSE:
		return "boolean";
	case JSON_NULL:
	default:
		return "null";
	}
}

/* Decodes one valid UTF-8 sequence (already validated) and returns its length. */
static size_t utf8_decode(const unsigned char *p, uint32_t *cp)
{
	if (p[0] < 0x80) {
		*cp = p[0];
		return 1;
	}
	if ((p[0] & 0xe0) == 0xc0) {
		*cp = ((uint32_t)(p[0] & 0x1f) << 6) | (p[1] & 0x3f);
		return 2;
	}
	if ((p[0] & 0xf0) == 0xe0) {
		*cp = ((uint32_t)(p[0] & 0x0f) << 12) | ((uint32_t)(p[1] & 0x3f) << 6) |
		      (p[2] & 0x3f);
		return 3;
	}
	*cp = ((uint32_t)(p[0] & 0x07) << 18) | ((uint32_t)(p[1] & 0x3f) << 12) |
	      ((uint32_t)(p[2] & 0x3f) << 6) | (p[3] & 0x3f);
	return 4;
}

int ju_check_text(struct ju_ctx *c, const char *name, const char *s, size_t len, size_t max,
		  unsigned flags)
{
	if (len > max)
		return ju_fail(c, "%s: too long (%zu bytes, max %zu)", name, len, max);
	if (strlen(s) != len)
		return ju_fail(c, "%s: NUL character not allowed", name);
	if (!utf8_is_valid(s, len))
		return ju_fail(c, "%s: invalid UTF-8", name);
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		i += utf8_decode((const unsigned char *)s + i, &cp);
		if (cp < 0x20 || cp == 0x7f) {
			if ((flags & JU_TEXT_MULTILINE) && (cp == '\t' || cp == '\n' || cp == '\r'))
				continue;
			return ju_fail(c, "%s: control character not allowed", name);
		}
		if (cp == 0xfffe || cp == 0xffff)
			return ju_fail(c, "%s: non-character U+%04X not allowed", name, cp);
	}
	return 0;
}

static int value(struct ju_ctx *c, const json_t *obj, const struct ju_name *f, const char *key,
		 bool required, json_t **ret)
{
	json_t *v = json_object_get(obj, key);
	*ret = v && !json_is_null(v) ? v : NULL;
	if (*ret)
		return 1;
	return required ? ju_fail(c, "%s: missing", f->s) : 0;
}

int ju_get_value(struct ju_ctx *c, const json_t *obj, const char *prefix, const char *key,
		 bool required, json_t **ret)
{
	struct ju_name f = ju_field(prefix, key);
	return value(c, obj, &f, key, required, ret);
}

int ju_get_string(struct ju_ctx *c, const json_t *obj, const char *prefix, const char *key,
		  bool required, size_t max, unsigned flags, const char **ret)
{
	struct ju_name f = ju_field(prefix, key);
	json_t *v;
	int r = value(c, obj, &f, key, required, &v);
	*ret = NULL;
	if (r <= 0)
		return r;
	if (!json_is_string(v))
		return ju_fail(c, "%s: expected string, got %s", f.s, ju_type_name(v));
	const char *s = json_string_value(v);
	r = ju_check_text(c, f.s, s, json_string_length(v), max, flags);
	if (r < 0)
		return r;
	if (required && !*s)
		return ju_fail(c, "%s: missing", f.s);
	*ret = s;
	return 1;
}

int ju_get_int(struct ju_ctx *c, const json_t *obj, const char *prefix, const char *key,
	       bool required, int64_t min, int64_t max, int64_t def, int64_t *ret)
{
	struct ju_name f = ju_field(prefix, key);
	json_t *v;
	int r = value(c, obj, &f, key, required, &v);
	*ret = def;
	if (r <= 0)
		return r;
	if (!json_is_integer(v))
		return ju_fail(c, "%s: expected integer, got %s", f.s, ju_type_name(v));
	json_int_t n = json_integer_value(v);
	if (min == 1 && n < 1)
		return ju_fail(c, "%s: must be a positive integer", f.s);
	if (min == 0 && n < 0)
		return ju_fail(c, "%s: must not be negative", f.s);
	if (n < min || n > max)
		return ju_fail(c,
			       "%s: out of range (%" JSON_INTEGER_FORMAT ", allowed %" PRId64
			       "..%" PRId64 ")",
			       f.s, n, min, max);
	*ret = n;
	return 1;
}

int ju_get_bool(struct ju_ctx *c, const json_t *obj, const char *prefix, const char *key, bool def,
		bool *ret)
{
	struct ju_name f = ju_field(prefix, key);
	json_t *v;
	int r = value(c, obj, &f, key, false, &v);
	*ret = def;
	if (r <= 0)
		return r;
	if (!json_is_boolean(v))
		return ju_fail(c, "%s: expected boolean, got %s", f.s, ju_type_name(v));
	*ret = json_is_true(v);
	return 1;
}

int ju_get_enum(struct ju_ctx *c, const json_t *obj, const char *prefix, const char *key,
		const char *const *names, size_t n, int def, int *ret)
{
	const char *s;
	int r = ju_get_string(c, obj, prefix, key, false, 64, 0, &s);
	if (r < 0)
		return r;
	if (r == 0 || !*s) {
		*ret = def;
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(s, names[i]) == 0) {
			*ret = (int)i;
			return 1;
		}
	return ju_fail(c, "%s: unsupported value %s", ju_field(prefix, key).s, ju_quote(s).s);
}

int ju_get_array(struct ju_ctx *c, const json_t *obj, const char *prefix, const char *key,
		 size_t max, json_t **ret)
{
	struct ju_name f = ju_field(prefix, key);
	json_t *v;
	int r = value(c, obj, &f, key, false, &v);
	*ret = NULL;
	if (r <= 0)
		return r;
	if (!json_is_array(v))
		return ju_fail(c, "%s: expected array, got %s", f.s, ju_type_name(v));
	if (json_array_size(v) > max)
		return ju_fail(c, "%s: too many entries (%zu, max %zu)", f.s, json_array_size(v),
			       max);
	*ret = v;
	return 1;
}

int ju_check_object(struct ju_ctx *c, const json_t *v, const char *name)
{
	if (!json_is_object(v))
		return ju_fail(c, "%s: expected object, got %s", name, ju_type_name(v));
	return 0;
}

int ju_dup_string(struct ju_ctx *c, const char *s, char **ret)
{
	char *d = NULL;
	if (s) {
		d = strdup(s);
		if (!d)
			return ju_oom(c);
	}
	*ret = d;
	return 0;
}

int ju_get_list(struct ju_ctx *c, const json_t *obj, const char *key, size_t max, size_t size,
		int (*cmp)(const void *, const void *), ju_item_fn item, void *userdata)
{
	json_t *arr;
	int r = ju_get_array(c, obj, NULL, key, max, &arr);
	if (r <= 0)
		return r;
	size_t n = json_array_size(arr);
	if (n == 0)
		return 0;
	void *items = calloc(n, size);
	if (!items)
		return ju_oom(c);
	for (size_t i = 0; i < n; i++) {
		char name[sizeof(struct ju_name) + 24];
		snprintf(name, sizeof(name), "%s[%zu]", key, i);
		const json_t *v = json_array_get(arr, i);
		if ((r = ju_check_object(c, v, name)) < 0) {
			if (i == 0)
				free(items); /* not handed to ITEM yet */
			return r;
		}
		if ((r = item(c, v, name, i, items, userdata)) < 0)
			return r;
	}
	if (cmp)
		qsort(items, n, size, cmp);
	return 0;
}

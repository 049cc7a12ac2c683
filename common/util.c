#include <stdarg.h>

#include "common/macros.h"

size_t strv_length(char *const *l)
{
	size_t n = 0;
	while (l && l[n])
		n++;
	return n;
}

char **strv_free(char **l)
{
	STRV_FOREACH (s, l)
		free(*s);
	free(l);
	return NULL;
}

int strv_push(char ***l, char *value)
{
	size_t n = strv_length(*l);
	char **c = realloc(*l, sizeof(char *) * (n + 2));
	if (!c)
		return -ENOMEM;
	c[n] = value;
	c[n + 1] = NULL;
	*l = c;
	return 0;
}

int strv_extend(char ***l, const char *value)
{
	char *v = strdup(value);
	if (!v)
		return -ENOMEM;
	int r = strv_push(l, v);
	if (r < 0)
		free(v);
	return r;
}

char **strv_copy(char *const *l)
{
	_cleanup_strv_free_ char **c = calloc(1, sizeof(char *));
	if (!c)
		return NULL;
	for (size_t i = 0; l && l[i]; i++)
		if (strv_extend(&c, l[i]) < 0)
			return NULL;
	return TAKE_PTR(c);
}

bool strv_contains(char *const *l, const char *s)
{
	STRV_FOREACH (i, (char **)l)
		if (streq(*i, s))
			return true;
	return false;
}

char *strjoin_real(const char *first, ...)
{
	va_list ap;
	size_t len = 0;
	va_start(ap, first);
	for (const char *s = first; s; s = va_arg(ap, const char *))
		len += strlen(s);
	va_end(ap);
	char *r = malloc(len + 1), *p = r;
	if (!r)
		return NULL;
	va_start(ap, first);
	for (const char *s = first; s; s = va_arg(ap, const char *))
		p = stpcpy(p, s);
	va_end(ap);
	*p = 0;
	return r;
}

char *vstrprintf(const char *fmt, va_list ap)
{
	char *s;
	return vasprintf(&s, fmt, ap) < 0 ? NULL : s;
}

char *strprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = vstrprintf(fmt, ap);
	va_end(ap);
	return s;
}

int asprintf_safe(char **ret, const char *fmt, ...)
{
	va_list ap;
	char *s;
	va_start(ap, fmt);
	int r = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	*ret = s;
	return 0;
}

static const char *key_at(const void *base, size_t size, size_t i)
{
	return *(char *const *)((const char *)base + i * size);
}

size_t keyed_find(const void *base, size_t n, size_t size, const char *key, bool *ret_found)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(key_at(base, size, mid), key);
		if (c == 0) {
			*ret_found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*ret_found = false;
	return lo;
}

void *keyed_insert(void *basep, size_t *n, size_t *alloc, size_t size, size_t i, const char *key)
{
	void *base;
	memcpy(&base, basep, sizeof(base)); /* basep points to the caller's typed pointer */
	if (*n == *alloc) {
		size_t a = MAX(*alloc * 2, (size_t)16);
		void *b = realloc(base, size * a);
		if (!b)
			return NULL;
		memcpy(basep, &b, sizeof(b));
		base = b;
		*alloc = a;
	}
	char *k = strdup(key);
	if (!k)
		return NULL;
	char *at = (char *)base + i * size;
	memmove(at + size, at, size * (*n - i));
	(*n)++;
	memset(at, 0, size);
	memcpy(at, &k, sizeof(k));
	return at;
}

int buf_append(char **buf, size_t *len, size_t *cap, size_t max, const void *data, size_t n)
{
	if (*len > max || n > max - *len)
		return -EFBIG;
	if (*len + n + 1 > *cap) {
		size_t c = MIN(MAX(*cap * 2, *len + n + 1), max + 1);
		char *b = realloc(*buf, c);
		if (!b)
			return -ENOMEM;
		*buf = b;
		*cap = c;
	}
	memcpy(*buf + *len, data, n);
	*len += n;
	(*buf)[*len] = 0;
	return 0;
}

int error_set(char **ret_error, int r, const char *fmt, ...)
{
	if (ret_error && !*ret_error) {
		va_list ap;
		va_start(ap, fmt);
		*ret_error = vstrprintf(fmt, ap);
		va_end(ap);
	}
	return r;
}

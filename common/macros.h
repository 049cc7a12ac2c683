/* Cleanup macros and small helpers shared by every directory. No project deps. */
#pragma once

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define _cleanup_(f)   __attribute__((cleanup(f)))
#define _unused_       __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _sentinel_     __attribute__((sentinel))
#define _likely_(x)    __builtin_expect(!!(x), 1)
#define _unlikely_(x)  __builtin_expect(!!(x), 0)

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
/* The record that embeds member ptr points at. */
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))
#define MIN(a, b)			((a) < (b) ? (a) : (b))
#define MAX(a, b)			((a) > (b) ? (a) : (b))

/* Time units (sd-event counts microseconds). */
#define USEC_PER_SEC  1000000ULL
#define USEC_PER_MSEC 1000ULL
#define NSEC_PER_USEC 1000ULL

/* Retry delay after the n-th failure in a row: min for the first, doubling, at most max. */
static inline uint64_t backoff_usec(unsigned failures, uint64_t min, uint64_t max)
{
	uint64_t d = min;
	for (unsigned i = 1; i < failures && d < max; i++)
		d *= 2;
	return MIN(d, max);
}

/* Microseconds on clock (CLOCK_MONOTONIC, CLOCK_REALTIME), as sd-event counts them. */
static inline uint64_t now_usec(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / NSEC_PER_USEC;
}

/* The deadline usec from now on clock, as pthread_cond_timedwait() takes it. */
static inline struct timespec timespec_after(clockid_t clock, uint64_t usec)
{
	uint64_t at = now_usec(clock) + usec;
	return (struct timespec){(time_t)(at / USEC_PER_SEC),
				 (long)(at % USEC_PER_SEC * NSEC_PER_USEC)};
}

#define streq(a, b)	(strcmp((a), (b)) == 0)
#define strneq(a, b, n) (strncmp((a), (b), (n)) == 0)

/* A string table: an array of names indexed by an enum (designated initializers; holes are
 * NULL). DEFINE_STRING_TABLE_TO defines NAME_to_string(value), which answers fallback outside
 * the table or in a hole; string_table_find() is the reverse (-EINVAL when unknown). */
#define DEFINE_STRING_TABLE_TO(name, type, table, fallback)                                        \
	const char *name##_to_string(type v)                                                       \
	{                                                                                          \
		return (size_t)v < ELEMENTSOF(table) && (table)[v] ? (table)[v] : (fallback);      \
	}
#define string_table_find(table, s) string_table_find_real((table), ELEMENTSOF(table), (s))
static inline int string_table_find_real(const char *const *table, size_t n, const char *s)
{
	for (size_t i = 0; s && i < n; i++)
		if (table[i] && strcmp(table[i], s) == 0)
			return (int)i;
	return -EINVAL;
}

static inline bool streq_ptr(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return streq(a, b);
}

static inline const char *strempty(const char *s)
{
	return s ? s : "";
}

/* Frees a secret after overwriting it; NULL-safe, returns NULL. */
static inline char *erase_and_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
	return NULL;
}

/* The length of S without its trailing '/'s: a base URL that paths are appended to with '/'. */
static inline size_t strlen_trim_slashes(const char *s)
{
	size_t l = strlen(s);
	while (l > 0 && s[l - 1] == '/')
		l--;
	return l;
}

static inline bool isempty(const char *s)
{
	return !s || !*s;
}

/* Hand ownership on: returns the value and clears the variable. */
#define TAKE_PTR(p)                                                                                \
	({                                                                                         \
		typeof(p) _p_ = (p);                                                               \
		(p) = NULL;                                                                        \
		_p_;                                                                               \
	})
#define TAKE_FD(fd)                                                                                \
	({                                                                                         \
		int _fd_ = (fd);                                                                   \
		(fd) = -1;                                                                         \
		_fd_;                                                                              \
	})

static inline void freep(void *p)
{
	free(*(void **)p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline int safe_close(int fd)
{
	if (fd >= 0) {
		int saved = errno;
		close(fd);
		errno = saved;
	}
	return -1;
}
static inline void closep(int *fd)
{
	safe_close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

static inline void fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}
#define _cleanup_fclose_ _cleanup_(fclosep)

/* Defines name##p() for a type whose destructor accepts NULL. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                                                    \
	static inline void func##p(type *p)                                                        \
	{                                                                                          \
		if (*p)                                                                            \
			func(*p);                                                                  \
	}

/* Negative errno from the current errno, never 0. */
static inline int negative_errno(void)
{
	return errno > 0 ? -errno : -EIO;
}

static inline int errno_or(int r)
{
	return r < 0 ? r : -r;
}

/* NULL-terminated string vectors. */
typedef char **strv_t;
#define STRV_FOREACH(s, l) for (char **s = (l); s && *s; s++)
size_t strv_length(char *const *l);
char **strv_free(char **l);
int strv_push(char ***l, char *value); /* takes ownership of value */
int strv_extend(char ***l, const char *value);
char **strv_copy(char *const *l);
bool strv_contains(char *const *l, const char *s);
static inline void strv_freep(char ***l)
{
	strv_free(*l);
}
#define _cleanup_strv_free_ _cleanup_(strv_freep)

/* Arrays of structs kept sorted by their first member, a `char *` key they own (a guest id):
 * the index of key, or where it would go (*ret_found false); and the insertion there of a zeroed
 * element holding a copy of key, growing the array basep points to (NULL on OOM). */
size_t keyed_find(const void *base, size_t n, size_t size, const char *key, bool *ret_found);
void *keyed_insert(void *basep, size_t *n, size_t *alloc, size_t size, size_t i, const char *key);

/* A growing NUL-terminated byte buffer: appends n bytes of data to *buf (*len bytes, *cap
 * allocated), doubling the allocation as needed but never past max + 1 bytes. -EFBIG when the
 * result would exceed max bytes, -ENOMEM; the buffer is unchanged then. */
int buf_append(char **buf, size_t *len, size_t *cap, size_t max, const void *data, size_t n);

/* An error message for a caller that asked for one: formats it into *ret_error when ret_error is
 * not NULL and holds no message yet (the first error is the one reported); returns r. */
int error_set(char **ret_error, int r, const char *fmt, ...) _printf_(3, 4);

char *strjoin_real(const char *first, ...) _sentinel_;
#define strjoin(a, ...) strjoin_real((a), __VA_ARGS__, NULL)
int asprintf_safe(char **ret, const char *fmt, ...) _printf_(2, 3);
/* A formatted message in a new string, never truncated; NULL when out of memory. */
char *vstrprintf(const char *fmt, va_list ap) _printf_(1, 0);
char *strprintf(const char *fmt, ...) _printf_(1, 2);

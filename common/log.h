/* Logging: one line per event, key=value text or JSON lines, stderr or the journal.
 * The only mutable global state of the project lives here. */
#pragma once

#include <stdarg.h>
#include <syslog.h>

#include "common/macros.h"

enum log_format {
	LOG_FORMAT_TEXT,
	LOG_FORMAT_JSON,
};

void log_set_max_level(int level); /* LOG_DEBUG .. LOG_ERR */
int log_get_max_level(void);
void log_set_format(enum log_format f);
/* Where lines go: stderr (default), or the journal when stderr is connected to it. */
void log_open(void);
/* Tests capture output: lines are written to this stream instead of stderr. */
void log_set_stream(FILE *f);
int log_level_from_string(const char *s);
const char *log_level_to_string(int level);

/* Emits one event. error is a positive errno or 0; "%m" in fmt expands to strerror(error).
 * Returns -error (or 0 when error is 0), so callers write
 * return log_error_errno(r, "..."); */
int log_internal(int level, int error, const char *file, int line, const char *func,
		 const char *fmt, ...) _printf_(6, 7);
int log_internalv(int level, int error, const char *file, int line, const char *func,
		  const char *fmt, va_list ap) _printf_(6, 0);
/* Emits an event with extra key/value fields: pairs of const char*, NULL-terminated. */
void log_kv(int level, const char *msg, ...) _sentinel_;

#define log_full_errno(level, error, ...)                                                          \
	({                                                                                         \
		int _l_ = (level), _e_ = (error);                                                  \
		_e_ = _e_ < 0 ? -_e_ : _e_;                                                        \
		(log_get_max_level() >= _l_)                                                       \
		    ? log_internal(_l_, _e_, __FILE__, __LINE__, __func__, __VA_ARGS__)            \
		    : -_e_;                                                                        \
	})
#define log_full(level, ...) (void)log_full_errno((level), 0, __VA_ARGS__)

#define log_debug(...)	 log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)	 log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...)	 log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...)	 log_full(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(e, ...)	  log_full_errno(LOG_DEBUG, e, __VA_ARGS__)
#define log_info_errno(e, ...)	  log_full_errno(LOG_INFO, e, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...)	  log_full_errno(LOG_ERR, e, __VA_ARGS__)
#define log_oom()		  log_error_errno(ENOMEM, "Out of memory")

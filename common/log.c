#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>
#include <pthread.h>
#include <systemd/sd-journal.h>

#include "common/log.h"

static atomic_int max_level = LOG_INFO;
static enum log_format format = LOG_FORMAT_TEXT;
static bool use_journal;
static FILE *stream;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {
    [LOG_EMERG] = "emerg",     [LOG_ALERT] = "alert",	[LOG_CRIT] = "crit", [LOG_ERR] = "error",
    [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice", [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

void log_set_max_level(int level)
{
	max_level = level;
}

int log_get_max_level(void)
{
	return max_level;
}

void log_set_format(enum log_format f)
{
	format = f;
}

void log_set_stream(FILE *f)
{
	stream = f;
}

DEFINE_STRING_TABLE_TO(log_level, int, level_names, "unknown")

int log_level_from_string(const char *s)
{
	int r = string_table_find(level_names, s);
	if (r >= 0)
		return r;
	if (streq(s, "warn"))
		return LOG_WARNING;
	if (streq(s, "err"))
		return LOG_ERR;
	return -EINVAL;
}

void log_open(void)
{
	/* JOURNAL_STREAM names the device:inode of the journal stream systemd connected to our
	 * stderr; only then do structured journal entries beat plain lines. */
	const char *e = getenv("JOURNAL_STREAM");
	struct stat st;
	unsigned long long dev, ino;
	use_journal = false;
	if (e && sscanf(e, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
	    (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino)
		use_journal = true;
}

/* Appends s to f escaped for a double-quoted value (text) or a JSON string. */
static void put_escaped(FILE *f, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		default:
			if (*p < 0x20 || *p == 0x7f)
				fprintf(f, "\\u%04x", *p);
			else
				fputc(*p, f);
		}
	}
}

static bool needs_quotes(const char *s)
{
	if (!*s)
		return true;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p >= 0x7f)
			return true;
	return false;
}

static void put_field(FILE *f, bool first, const char *key, const char *value)
{
	if (format == LOG_FORMAT_JSON) {
		fprintf(f, "%s\"", first ? "{" : ",");
		put_escaped(f, key);
		fputs("\":\"", f);
		put_escaped(f, value);
		fputc('"', f);
	} else {
		fprintf(f, "%s%s=", first ? "" : " ", key);
		if (needs_quotes(value)) {
			fputc('"', f);
			put_escaped(f, value);
			fputc('"', f);
		} else
			fputs(value, f);
	}
}

static void emit(int level, const char *msg, const char *file, int line, const char *func,
		 const char *const *kv)
{
	if (use_journal && !stream) {
		sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", level, "CODE_FILE=%s",
				file ? file : "?", "CODE_LINE=%d", line, "CODE_FUNC=%s",
				func ? func : "?", NULL);
		return;
	}
	char ts[64];
	struct timespec now;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", now.tv_nsec / 1000000);

	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return;
	put_field(f, true, "ts", ts);
	put_field(f, false, "level", log_level_to_string(level));
	put_field(f, false, "msg", msg);
	for (; kv && kv[0] && kv[1]; kv += 2)
		put_field(f, false, kv[0], kv[1]);
	if (file && max_level >= LOG_DEBUG) {
		char src[256];
		snprintf(src, sizeof(src), "%s:%d", file, line);
		put_field(f, false, "src", src);
	}
	if (format == LOG_FORMAT_JSON)
		fputc('}', f);
	fputc('\n', f);
	fclose(f);
	pthread_mutex_lock(&lock);
	FILE *out = stream ? stream : stderr;
	fwrite(buf, 1, len, out);
	fflush(out);
	pthread_mutex_unlock(&lock);
	free(buf);
}

int log_internalv(int level, int error, const char *file, int line, const char *func,
		  const char *fmt, va_list ap)
{
	char msg[2048];
	errno = error;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	emit(level, msg, file, line, func, NULL);
	return -error;
}

int log_internal(int level, int error, const char *file, int line, const char *func,
		 const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = log_internalv(level, error, file, line, func, fmt, ap);
	va_end(ap);
	return r;
}

void log_kv(int level, const char *msg, ...)
{
	if (level > max_level)
		return;
	const char *kv[64];
	size_t n = 0;
	va_list ap;
	va_start(ap, msg);
	for (const char *s = va_arg(ap, const char *); s && n < ELEMENTSOF(kv) - 2;
	     s = va_arg(ap, const char *)) {
		const char *v = va_arg(ap, const char *);
		kv[n++] = s;
		kv[n++] = v ? v : "";
	}
	va_end(ap);
	kv[n] = NULL;
	kv[n + 1] = NULL;
	if (use_journal && !stream) {
		/* The journal keeps fields too, but one line is good enough here. */
		char *line = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&line, &len);
		if (f) {
			fputs(msg, f);
			for (size_t i = 0; i + 1 < n; i += 2)
				fprintf(f, " %s=%s", kv[i], kv[i + 1]);
			fclose(f);
			sd_journal_send("MESSAGE=%s", line, "PRIORITY=%d", level, NULL);
			free(line);
		}
		return;
	}
	emit(level, msg, NULL, 0, NULL, kv);
}

#include <math.h>
#include <pthread.h>

#include "agent/metrics.h"

enum metric_type {
	METRIC_COUNTER,
	METRIC_GAUGE,
	METRIC_HISTOGRAM,
};

static const char *const type_names[] = {
    [METRIC_COUNTER] = "counter",
    [METRIC_GAUGE] = "gauge",
    [METRIC_HISTOGRAM] = "histogram",
};

static const double bucket_bounds[] = METRICS_HISTOGRAM_BUCKETS;
#define N_BUCKETS ELEMENTSOF(bucket_bounds)

struct series {
	struct series *next;
	char *labels; /* "" when none */
	double value; /* counter, gauge; histogram: sum */
	unsigned long long count;
	unsigned long long buckets[N_BUCKETS]; /* non-cumulative */
};

struct family {
	struct family *next;
	char *name;
	char *help;
	enum metric_type type;
	struct series *series, *series_tail;
};

struct collector {
	struct collector *next;
	metrics_collector_fn fn;
	void *userdata;
};

struct metrics {
	pthread_mutex_t lock;
	struct family *families, *families_tail;
	struct collector *collectors, *collectors_tail;
};

int metrics_new(struct metrics **ret)
{
	struct metrics *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	int r = pthread_mutex_init(&m->lock, NULL);
	if (r != 0) {
		free(m);
		return -r;
	}
	*ret = m;
	return 0;
}

struct metrics *metrics_free(struct metrics *m)
{
	if (!m)
		return NULL;
	for (struct family *f = m->families, *fn; f; f = fn) {
		fn = f->next;
		for (struct series *s = f->series, *sn; s; s = sn) {
			sn = s->next;
			free(s->labels);
			free(s);
		}
		free(f->name);
		free(f->help);
		free(f);
	}
	for (struct collector *c = m->collectors, *cn; c; c = cn) {
		cn = c->next;
		free(c);
	}
	pthread_mutex_destroy(&m->lock);
	free(m);
	return NULL;
}

static bool name_is_valid(const char *name)
{
	if (isempty(name))
		return false;
	for (const char *p = name; *p; p++) {
		bool alpha =
		    (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' || *p == ':';
		bool digit = *p >= '0' && *p <= '9';
		if (!alpha && !(digit && p != name))
			return false;
	}
	return true;
}

/* Called with the lock held. NULL on OOM or type clash. */
static struct series *series_get(struct metrics *m, const char *name, const char *help,
				 enum metric_type type, const char *labels)
{
	struct family *f;
	if (!name_is_valid(name))
		return NULL;
	for (f = m->families; f; f = f->next)
		if (streq(f->name, name))
			break;
	if (f && f->type != type)
		return NULL;
	if (!f) {
		f = calloc(1, sizeof(*f));
		if (!f)
			return NULL;
		f->name = strdup(name);
		f->help = strdup(strempty(help));
		if (!f->name || !f->help) {
			free(f->name);
			free(f->help);
			free(f);
			return NULL;
		}
		f->type = type;
		if (m->families_tail)
			m->families_tail->next = f;
		else
			m->families = f;
		m->families_tail = f;
	}
	labels = strempty(labels);
	for (struct series *s = f->series; s; s = s->next)
		if (streq(s->labels, labels))
			return s;
	struct series *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->labels = strdup(labels);
	if (!s->labels) {
		free(s);
		return NULL;
	}
	if (f->series_tail)
		f->series_tail->next = s;
	else
		f->series = s;
	f->series_tail = s;
	return s;
}

void metrics_counter_add(struct metrics *m, const char *name, const char *help, const char *labels,
			 double v)
{
	if (!m || !(v >= 0))
		return;
	pthread_mutex_lock(&m->lock);
	struct series *s = series_get(m, name, help, METRIC_COUNTER, labels);
	if (s)
		s->value += v;
	pthread_mutex_unlock(&m->lock);
}

void metrics_gauge_set(struct metrics *m, const char *name, const char *help, const char *labels,
		       double v)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	struct series *s = series_get(m, name, help, METRIC_GAUGE, labels);
	if (s)
		s->value = v;
	pthread_mutex_unlock(&m->lock);
}

void metrics_histogram_observe(struct metrics *m, const char *name, const char *help,
			       const char *labels, double v)
{
	if (!m || isnan(v))
		return;
	pthread_mutex_lock(&m->lock);
	struct series *s = series_get(m, name, help, METRIC_HISTOGRAM, labels);
	if (s) {
		s->value += v;
		s->count++;
		for (size_t i = 0; i < N_BUCKETS; i++)
			if (v <= bucket_bounds[i]) {
				s->buckets[i]++;
				break;
			}
	}
	pthread_mutex_unlock(&m->lock);
}

int metrics_add_collector(struct metrics *m, metrics_collector_fn fn, void *userdata)
{
	struct collector *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fn = fn;
	c->userdata = userdata;
	pthread_mutex_lock(&m->lock);
	if (m->collectors_tail)
		m->collectors_tail->next = c;
	else
		m->collectors = c;
	m->collectors_tail = c;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

void metrics_format_value(double v, char *buf, size_t size)
{
	if (isnan(v))
		snprintf(buf, size, "NaN");
	else if (isinf(v))
		snprintf(buf, size, v > 0 ? "+Inf" : "-Inf");
	else if (v > -1e15 && v < 1e15 && v == (double)(long long)v)
		snprintf(buf, size, "%lld", (long long)v);
	else {
		/* The shortest form that reads back as the same double, as Prometheus prints. */
		for (int prec = 15; prec <= 17; prec++) {
			snprintf(buf, size, "%.*g", prec, v);
			if (strtod(buf, NULL) == v)
				break;
		}
	}
}

static void write_help_text(FILE *f, const char *help)
{
	for (const char *p = help; *p; p++) {
		if (*p == '\\')
			fputs("\\\\", f);
		else if (*p == '\n')
			fputs("\\n", f);
		else
			fputc(*p, f);
	}
}

void metrics_write_family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s ", name);
	write_help_text(f, strempty(help));
	fprintf(f, "\n# TYPE %s %s\n", name, type);
}

void metrics_write_sample(FILE *f, const char *name, const char *labels, double v)
{
	char buf[64];
	metrics_format_value(v, buf, sizeof(buf));
	if (isempty(labels))
		fprintf(f, "%s %s\n", name, buf);
	else
		fprintf(f, "%s{%s} %s\n", name, labels, buf);
}

static void write_bucket(FILE *f, const char *name, const char *labels, const char *le,
			 unsigned long long n)
{
	fprintf(f, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, labels, *labels ? "," : "", le, n);
}

static void write_histogram(FILE *f, const char *name, const struct series *s)
{
	unsigned long long cum = 0;
	char le[64], sname[256];
	for (size_t i = 0; i < N_BUCKETS; i++) {
		cum += s->buckets[i];
		metrics_format_value(bucket_bounds[i], le, sizeof(le));
		write_bucket(f, name, s->labels, le, cum);
	}
	write_bucket(f, name, s->labels, "+Inf", s->count);
	snprintf(sname, sizeof(sname), "%s_sum", name);
	metrics_write_sample(f, sname, s->labels, s->value);
	snprintf(sname, sizeof(sname), "%s_count", name);
	metrics_write_sample(f, sname, s->labels, (double)s->count);
}

int metrics_render(struct metrics *m, FILE *f)
{
	pthread_mutex_lock(&m->lock);
	for (struct family *fam = m->families; fam; fam = fam->next) {
		metrics_write_family(f, fam->name, type_names[fam->type], fam->help);
		for (struct series *s = fam->series; s; s = s->next) {
			if (fam->type == METRIC_HISTOGRAM)
				write_histogram(f, fam->name, s);
			else
				metrics_write_sample(f, fam->name, s->labels, s->value);
		}
	}
	struct collector *first = m->collectors, *last = m->collectors_tail;
	pthread_mutex_unlock(&m->lock);
	/* Collectors are only ever appended: the links up to the tail seen under the lock are
	 * stable, so they run without the lock (they may take their own). */
	for (struct collector *c = first; c; c = c == last ? NULL : c->next)
		c->fn(f, c->userdata);
	if (fflush(f) != 0 || ferror(f))
		return -EIO;
	return 0;
}

char *metrics_escape_label_value(const char *s)
{
	size_t n = 1;
	for (const char *p = s; *p; p++)
		n += (*p == '\\' || *p == '"' || *p == '\n') ? 2 : 1;
	char *out = malloc(n), *o = out;
	if (!out)
		return NULL;
	for (const char *p = s; *p; p++) {
		if (*p == '\\' || *p == '"') {
			*o++ = '\\';
			*o++ = *p;
		} else if (*p == '\n') {
			*o++ = '\\';
			*o++ = 'n';
		} else
			*o++ = *p;
	}
	*o = 0;
	return out;
}

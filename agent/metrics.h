/* A small thread-safe Prometheus registry: counters, gauges and histograms keyed by metric
 * name and a preformatted label set, rendered in the text exposition format (0.0.4).
 * Values computed at scrape time come from collectors, which write their own lines. */
#pragma once

#include <stdio.h>

#include "common/macros.h"

struct metrics;

/* Upper bounds (seconds) of the histogram buckets; +Inf is implicit. */
#define METRICS_HISTOGRAM_BUCKETS                                                                  \
	{                                                                                          \
		0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30                 \
	}

int metrics_new(struct metrics **ret);
struct metrics *metrics_free(struct metrics *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct metrics *, metrics_free)

/* name must match [a-zA-Z_:][a-zA-Z0-9_:]*; labels is preformatted without braces, e.g.
 * route="/servers/:sid/status",code="200", or NULL. help is kept from the first call.
 * A name used before with another type, or an invalid name, is ignored (the registry never
 * fails a caller: metrics must not break the code they observe). NULL m is a no-op. */
void metrics_counter_add(struct metrics *m, const char *name, const char *help, const char *labels,
			 double v);
void metrics_gauge_set(struct metrics *m, const char *name, const char *help, const char *labels,
		       double v);
void metrics_histogram_observe(struct metrics *m, const char *name, const char *help,
			       const char *labels, double v);

/* fn runs during metrics_render() (on the rendering thread, with no registry lock held) and
 * writes complete exposition lines, e.g. with metrics_write_family(). */
typedef void (*metrics_collector_fn)(FILE *f, void *userdata);
int metrics_add_collector(struct metrics *m, metrics_collector_fn fn, void *userdata);

/* Writes every family, then the collectors' output. Negative errno on a write error. */
int metrics_render(struct metrics *m, FILE *f);

/* Helpers for collectors. */
void metrics_write_family(FILE *f, const char *name, const char *type, const char *help);
void metrics_write_sample(FILE *f, const char *name, const char *labels, double v);
void metrics_format_value(double v, char *buf, size_t size);
/* Escapes a label value (backslash, double quote, newline). Returns NULL on OOM. */
char *metrics_escape_label_value(const char *s);

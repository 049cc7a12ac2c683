/* The Prometheus registry: exposition format against golden output, types, thread safety. */
#include <pthread.h>

#include "agent/metrics.h"
#include "tests/unit/test-common.h"

static int write_metrics(FILE *f, void *m)
{
	return metrics_render(m, f);
}

static char *render(struct metrics *m)
{
	return test_memstream(write_metrics, m);
}

static void collector(FILE *f, void *userdata)
{
	int *calls = userdata;
	(*calls)++;
	metrics_write_family(f, "test_scrape_value", "gauge", "Computed at scrape time.");
	metrics_write_sample(f, "test_scrape_value", "domain=\"a\\\"b\"", 1.5);
}

static const char golden[] = "# HELP test_requests_total Requests by route and code.\n"
			     "# TYPE test_requests_total counter\n"
			     "test_requests_total{route=\"/ping\",code=\"200\"} 3\n"
			     "test_requests_total{route=\"/servers/:sid\",code=\"404\"} 1\n"
			     "# HELP test_queue Queued jobs.\n"
			     "# TYPE test_queue gauge\n"
			     "test_queue 7\n"
			     "# HELP test_latency_seconds Latency\\nwith a \\\\ newline.\n"
			     "# TYPE test_latency_seconds histogram\n"
			     "test_latency_seconds_bucket{route=\"/ping\",le=\"0.001\"} 0\n"
			     "test_latency_seconds_bucket{route=\"/ping\",le=\"0.005\"} 1\n"
			     "test_latency_seconds_bucket{route=\"/ping\",le=\"0.01\"} 1\n"
			     "test_latency_seconds_bucket{route=\"/ping\",le=\"0.025\"} 1\n"
			     "test_latency_seconds_bucket{route=\"/ping\",le=\"0.05\"} 1\n"
			     "test_latency_seconds_bucket{route=\"/ping\",le=\"0.1\"} 2\n"
			     "test_latency_seconds_bucket{route=\"/ping\",le=\"0.25\"} 2\n"
			     "test_latency_seconds_bucket{route=\"/ping\",le=\"0.5\"} 2\n"
			     "test_latency_seconds_bucket{route=\"/ping\",le=\"1\"} 2\n"
			     "test_latency_seconds_bucket{route=\"/ping\",le=\"2.5\"} 2\n"
			     "test_latency_seconds_bucket{route=\"/ping\",le=\"5\"} 2\n"
			     "test_latency_seconds_bucket{route=\"/ping\",le=\"10\"} 2\n"
			     "test_latency_seconds_bucket{route=\"/ping\",le=\"30\"} 2\n"
			     "test_latency_seconds_bucket{route=\"/ping\",le=\"+Inf\"} 3\n"
			     "test_latency_seconds_sum{route=\"/ping\"} 60.1025\n"
			     "test_latency_seconds_count{route=\"/ping\"} 3\n"
			     "# HELP test_scrape_value Computed at scrape time.\n"
			     "# TYPE test_scrape_value gauge\n"
			     "test_scrape_value{domain=\"a\\\"b\"} 1.5\n";

static void test_golden(void **state)
{
	_cleanup_(metrics_freep) struct metrics *m = NULL;
	int calls = 0;
	assert_int_equal(metrics_new(&m), 0);
	metrics_counter_add(m, "test_requests_total", "Requests by route and code.",
			    "route=\"/ping\",code=\"200\"", 1);
	metrics_counter_add(m, "test_requests_total", "ignored later help",
			    "route=\"/servers/:sid\",code=\"404\"", 1);
	metrics_counter_add(m, "test_requests_total", NULL, "route=\"/ping\",code=\"200\"", 2);
	metrics_gauge_set(m, "test_queue", "Queued jobs.", NULL, 3);
	metrics_gauge_set(m, "test_queue", "Queued jobs.", "", 7);
	metrics_histogram_observe(m, "test_latency_seconds", "Latency\nwith a \\ newline.",
				  "route=\"/ping\"", 0.0025);
	metrics_histogram_observe(m, "test_latency_seconds", NULL, "route=\"/ping\"", 0.1);
	metrics_histogram_observe(m, "test_latency_seconds", NULL, "route=\"/ping\"", 60);
	assert_int_equal(metrics_add_collector(m, collector, &calls), 0);
	_cleanup_free_ char *out = render(m);
	assert_string_equal(out, golden);
	assert_int_equal(calls, 1);
}

static void test_refusals(void **state)
{
	_cleanup_(metrics_freep) struct metrics *m = NULL;
	assert_int_equal(metrics_new(&m), 0);
	metrics_counter_add(m, "x_total", "X.", NULL, 1);
	/* Same name, other type: ignored. Bad names and negative increments: ignored. */
	metrics_gauge_set(m, "x_total", "X.", NULL, 5);
	metrics_counter_add(m, "x_total", "X.", NULL, -1);
	metrics_counter_add(m, "1bad", "B.", NULL, 1);
	metrics_counter_add(m, "bad-name", "B.", NULL, 1);
	metrics_counter_add(m, "", "B.", NULL, 1);
	metrics_counter_add(NULL, "y", "Y.", NULL, 1);
	_cleanup_free_ char *out = render(m);
	assert_string_equal(out, "# HELP x_total X.\n# TYPE x_total counter\nx_total 1\n");
}

static void test_values(void **state)
{
	char buf[64];
	metrics_format_value(0, buf, sizeof(buf));
	assert_string_equal(buf, "0");
	metrics_format_value(-12, buf, sizeof(buf));
	assert_string_equal(buf, "-12");
	metrics_format_value(1e20, buf, sizeof(buf));
	assert_string_equal(buf, "1e+20");
	metrics_format_value(0.5, buf, sizeof(buf));
	assert_string_equal(buf, "0.5");
	metrics_format_value(1.0 / 0.0, buf, sizeof(buf));
	assert_string_equal(buf, "+Inf");
	metrics_format_value(-1.0 / 0.0, buf, sizeof(buf));
	assert_string_equal(buf, "-Inf");
	metrics_format_value(0.0 / 0.0, buf, sizeof(buf));
	assert_string_equal(buf, "NaN");
	_cleanup_free_ char *e = metrics_escape_label_value("a\"b\\c\nd");
	assert_string_equal(e, "a\\\"b\\\\c\\nd");
}

static void *hammer(void *userdata)
{
	struct metrics *m = userdata;
	for (int i = 0; i < 10000; i++) {
		metrics_counter_add(m, "t_total", "T.", i % 2 ? "k=\"a\"" : "k=\"b\"", 1);
		metrics_histogram_observe(m, "t_seconds", "T.", NULL, 0.01);
	}
	return NULL;
}

static void test_threads(void **state)
{
	_cleanup_(metrics_freep) struct metrics *m = NULL;
	pthread_t th[4];
	assert_int_equal(metrics_new(&m), 0);
	for (size_t i = 0; i < ELEMENTSOF(th); i++)
		assert_int_equal(pthread_create(&th[i], NULL, hammer, m), 0);
	for (size_t i = 0; i < ELEMENTSOF(th); i++)
		pthread_join(th[i], NULL);
	_cleanup_free_ char *out = render(m);
	assert_non_null(strstr(out, "t_total{k=\"a\"} 20000\n"));
	assert_non_null(strstr(out, "t_total{k=\"b\"} 20000\n"));
	assert_non_null(strstr(out, "t_seconds_count 40000\n"));
	assert_non_null(strstr(out, "t_seconds_bucket{le=\"0.01\"} 40000\n"));
}

TEST_MAIN(cmocka_unit_test(test_golden), cmocka_unit_test(test_refusals),
	  cmocka_unit_test(test_values), cmocka_unit_test(test_threads))

/* The guest status outbox (agent/outbox.c) and the region report's pure helpers
 * (agent/report.c): latest wins, replay order across reopen, atomic files, the host body. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "agent/hostinfo.h"
#include "agent/outbox.h"
#include "agent/report.h"
#include "agent/serverpush.h"
#include "common/config.h"
#include "common/fs.h"
#include "tests/unit/test-common.h"

static char *read_entry(const char *dir, const char *sid)
{
	_cleanup_free_ char *p = NULL;
	assert_int_equal(asprintf_safe(&p, "%s/%s.json", dir, sid), 0);
	char *buf = NULL;
	if (read_file(p, 4096, &buf, NULL) < 0)
		return NULL;
	return buf;
}

static void test_put_next_ack(void **state)
{
	_cleanup_free_ char *tmp = test_tmpdir(), *dir = strjoin(tmp, "/outbox");
	_cleanup_(outbox_freep) struct outbox *o = NULL;
	assert_int_equal(outbox_open(dir, &o), 0); /* creates the directory */
	assert_null(outbox_next(o, NULL));
	assert_int_equal(outbox_put(o, "s1", "running", "on"), 0);
	assert_int_equal(outbox_put(o, "s2", "ready", "off"), 0);
	assert_int_equal(outbox_size(o), 2);
	outbox_flush(o); /* the files are written by the outbox's writer thread */
	assert_int_equal(test_count_entries(dir), 2);
	const struct outbox_entry *e = outbox_next(o, NULL);
	assert_string_equal(e->sid, "s1");
	assert_string_equal(outbox_next(o, "s1")->sid, "s2");
	json_auto_t *body = outbox_entry_body(e);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(body, "server"), "status")),
	    "running");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(body, "server"), "power_states")),
	    "on");
	assert_int_equal(outbox_ack(o, "s1", e->seq), 0);
	assert_int_equal(outbox_size(o), 1);
	outbox_flush(o);
	assert_int_equal(test_count_entries(dir), 1);
	_cleanup_free_ char *gone = read_entry(dir, "s1");
	assert_null(gone);
	/* Acking what is not there is harmless. */
	assert_int_equal(outbox_ack(o, "nope", 1), 0);
	/* A deleted guest's entry is dropped whatever its seq, file included. */
	assert_int_equal(outbox_drop(o, "s2"), 1);
	assert_int_equal(outbox_drop(o, "s2"), 0);
	assert_int_equal(outbox_size(o), 0);
	assert_null(outbox_next(o, NULL));
	outbox_flush(o);
	assert_int_equal(test_count_entries(dir), 0);
	rm_rf(tmp);
}

static void test_latest_wins(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir();
	_cleanup_(outbox_freep) struct outbox *o = NULL;
	assert_int_equal(outbox_open(dir, &o), 0);
	assert_int_equal(outbox_put(o, "a", "running", "on"), 0);
	assert_int_equal(outbox_put(o, "b", "running", "on"), 0);
	/* A delivery of a's first status is in flight when a changes again. */
	uint64_t inflight = outbox_next(o, NULL)->seq;
	assert_int_equal(outbox_put(o, "a", "suspend", "on"), 0);
	assert_int_equal(outbox_put(o, "a", "ready", "off"), 0);
	assert_int_equal(outbox_size(o), 2);
	outbox_flush(o);
	assert_int_equal(test_count_entries(dir), 2);
	/* The old delivery's ack does not remove the newer status. */
	assert_int_equal(outbox_ack(o, "a", inflight), 0);
	assert_int_equal(outbox_size(o), 2);
	/* The replaced entry moved behind b. */
	const struct outbox_entry *e = outbox_next(o, NULL);
	assert_string_equal(e->sid, "b");
	e = outbox_next(o, "b");
	assert_string_equal(e->sid, "a");
	assert_string_equal(e->status, "ready");
	assert_string_equal(e->power_states, "off");
	_cleanup_free_ char *text = read_entry(dir, "a");
	assert_non_null(strstr(text, "\"status\":\"ready\""));
	assert_int_equal(outbox_ack(o, "a", e->seq), 0);
	outbox_flush(o);
	assert_int_equal(test_count_entries(dir), 1);
	assert_int_equal(outbox_write_failures(o), 0);
	rm_rf(dir);
}

static void test_replay_order_after_reopen(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir();
	struct outbox *o = NULL;
	assert_int_equal(outbox_open(dir, &o), 0);
	/* Names sort differently from the order of the changes. */
	assert_int_equal(outbox_put(o, "zz", "running", "on"), 0);
	assert_int_equal(outbox_put(o, "aa", "running", "on"), 0);
	assert_int_equal(outbox_put(o, "mm", "crashed", "off"), 0);
	assert_int_equal(outbox_put(o, "zz", "ready", "off"), 0);
	o = outbox_free(o);

	assert_int_equal(outbox_open(dir, &o), 0);
	assert_int_equal(outbox_size(o), 3);
	const char *want[] = {"aa", "mm", "zz"};
	uint64_t last = 0;
	for (size_t i = 0; i < ELEMENTSOF(want); i++) {
		const struct outbox_entry *e = outbox_next(o, NULL);
		assert_non_null(e);
		assert_string_equal(e->sid, want[i]);
		assert_true(e->seq > last);
		last = e->seq;
		if (streq(e->sid, "zz"))
			assert_string_equal(e->status, "ready");
		assert_int_equal(outbox_ack(o, e->sid, e->seq), 0);
	}
	/* New puts continue after the highest persisted seq. */
	assert_int_equal(outbox_put(o, "aa", "suspend", "on"), 0);
	assert_true(outbox_next(o, NULL)->seq > last);
	o = outbox_free(o);
	rm_rf(dir);
}

static int fail_hook(const char *tmp_path)
{
	return -EIO;
}

static void test_atomic_files(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir();
	_cleanup_(outbox_freep) struct outbox *o = NULL;
	assert_int_equal(outbox_open(dir, &o), 0);
	assert_int_equal(outbox_put(o, "g1", "running", "on"), 0);
	outbox_flush(o);
	/* A write that fails before the rename keeps the old file; the status itself is not lost:
	 * it stays in memory for delivery, and the failure is counted. */
	fs_atomic_hook = fail_hook;
	assert_int_equal(outbox_put(o, "g1", "ready", "off"), 0);
	outbox_flush(o);
	fs_atomic_hook = NULL;
	assert_int_equal(outbox_write_failures(o), 1);
	assert_int_equal(test_count_entries(dir), 1);
	_cleanup_free_ char *text = read_entry(dir, "g1");
	assert_non_null(strstr(text, "\"status\":\"running\""));
	assert_string_equal(outbox_next(o, NULL)->status, "ready");
	/* The next change is written again. */
	assert_int_equal(outbox_put(o, "g1", "suspend", "on"), 0);
	o = outbox_free(o); /* free carries out what is queued */
	_cleanup_free_ char *text2 = read_entry(dir, "g1");
	assert_non_null(strstr(text2, "\"status\":\"suspend\""));

	/* Leftovers of an interrupted write and damaged entries are removed at open; a valid
	 * entry stays. */
	free(test_write(dir, "g1.json.tmp.123.abcdef", "{\"sid\":"));
	free(test_write(dir, "g2.json", "not json"));
	free(test_write(dir, "g3.json",
			"{\"sid\":\"other\",\"status\":\"ready\","
			"\"power_states\":\"off\",\"seq\":4}"));
	free(test_write(dir, "bad name.json", "{}"));
	assert_int_equal(outbox_open(dir, &o), 0);
	assert_int_equal(outbox_size(o), 1);
	assert_int_equal(outbox_removed(o), 4);
	assert_string_equal(outbox_next(o, NULL)->sid, "g1");
	assert_string_equal(outbox_next(o, NULL)->status, "suspend");
	assert_int_equal(test_count_entries(dir), 1);
	rm_rf(dir);
}

/* The writer carries out the file operations of one guest in order, however they are
 * interleaved and coalesced: the files end as the entries in memory are. */
static void test_writer_order(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir();
	_cleanup_(outbox_freep) struct outbox *o = NULL;
	assert_int_equal(outbox_open(dir, &o), 0);
	char sid[16];
	uint64_t seq = 0; /* puts number their entries 1, 2, ... in an empty outbox */
	for (int round = 0; round < 50; round++)
		for (int g = 0; g < 20; g++) {
			snprintf(sid, sizeof(sid), "g%d", g);
			assert_int_equal(outbox_put(o, sid, round % 2 ? "ready" : "running", "on"),
					 0);
			seq++;
			/* Odd guests are acked right after their last put: no entry, no file. */
			if (g % 2 && round == 49)
				assert_int_equal(outbox_ack(o, sid, seq), 0);
		}
	assert_int_equal(outbox_size(o), 10);
	outbox_flush(o);
	assert_int_equal(test_count_entries(dir), 10);
	for (int g = 0; g < 20; g += 2) {
		snprintf(sid, sizeof(sid), "g%d", g);
		_cleanup_free_ char *text = read_entry(dir, sid);
		assert_non_null(text);
		assert_non_null(strstr(text, "\"status\":\"ready\""));
	}
	assert_int_equal(outbox_write_failures(o), 0);
	rm_rf(dir);
}

/* L11: one entry per guest whatever the guest count: 5,000 guests' statuses all kept (the old
 * cap of 4,096 dropped the rest), and still one file each after a reopen. */
static void test_no_cap(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir();
	_cleanup_(outbox_freep) struct outbox *o = NULL;
	assert_int_equal(outbox_open(dir, &o), 0);
	enum { N = 5000 };
	for (int i = 0; i < N; i++) {
		char sid[32];
		snprintf(sid, sizeof(sid), "guest-%05d", i);
		assert_int_equal(outbox_put(o, sid, "running", "on"), 0);
	}
	assert_int_equal(outbox_put(o, "guest-00000", "ready", "off"), 0);
	assert_int_equal(outbox_size(o), N);
	outbox_flush(o);
	o = outbox_free(o);
	assert_int_equal(outbox_open(dir, &o), 0);
	assert_int_equal(outbox_size(o), N);
	o = outbox_free(o);
	rm_rf(dir);
}

static void test_invalid_ids(void **state)
{
	_cleanup_free_ char *dir = test_tmpdir();
	_cleanup_(outbox_freep) struct outbox *o = NULL;
	assert_int_equal(outbox_open(dir, &o), 0);
	assert_int_equal(outbox_put(o, "../x", "running", "on"), -EINVAL);
	assert_int_equal(outbox_put(o, "..", "running", "on"), -EINVAL);
	assert_int_equal(outbox_put(o, "", "running", "on"), -EINVAL);
	assert_int_equal(outbox_put(o, "a b", "running", "on"), -EINVAL);
	assert_int_equal(outbox_put(o, "ok", "", "on"), -EINVAL);
	assert_int_equal(outbox_put(o, ".hidden", "running", "on"), -EINVAL);
	assert_int_equal(outbox_put(o, "-x", "running", "on"), -EINVAL);
	assert_int_equal(test_count_entries(dir), 0); /* nothing refused was written */
	assert_int_equal(outbox_put(o, "2f6a-9c_1.x", "running", "on"), 0);
	outbox_flush(o);
	assert_int_equal(test_count_entries(dir), 1);
	rm_rf(dir);
}

static struct host_info *sample_hostinfo(void)
{
	struct host_info *h = calloc(1, sizeof(*h));
	assert_non_null(h);
	*h = (struct host_info){.name = strdup("node1"),
				.access_ip = strdup("10.0.0.5"),
				.access_mac = strdup("52:54:00:12:34:56"),
				.cpu_count = 8,
				.node_count = 2,
				.cpu_desc = strdup("Some CPU"),
				.cpu_mhz = 2400,
				.mem_size_mb = 16000,
				.mem_reserved_mb = 2000,
				.storage_size_mb = 500000,
				.storage_free_mb = 400000,
				.libvirt_uri = strdup("qemu:///system"),
				.sys = {.os = strdup("Debian")},
				.kvm = true,
				.cpu_architecture = strdup("x86_64"),
				.kvm_cap_max_vcpu = 288,
				.page_size_kb = 4};
	return h;
}

static void test_host_body(void **state)
{
	struct config cfg;
	assert_int_equal(config_init(&cfg), 0);
	cfg.port = 8885;
	free(cfg.zone);
	cfg.zone = strdup("zone1");
	_cleanup_(host_info_freep) struct host_info *info = sample_hostinfo();
	json_auto_t *body = NULL;
	assert_int_equal(report_host_body(info, &cfg, true, &body), 0);
	/* All the region sees, keys and types included. */
	json_auto_t *whole = json_pack(
	    "{s:{s:s,s:s,s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:s,s:i,s:i,s:s,s:s,s:s,s:s,s:{s:s,s:s,s:b}}}",
	    "host", "cpu_desc", "Some CPU", "version", PACKAGE_VERSION, "cpu_architecture",
	    "x86_64", "cpu_count", 8, "cpu_mhz", 2400, "mem_size", 16000, "storage_size", 500000,
	    "kvm_cap_max_vcpu", 288, "page_size_kb", 4, "generate_name", "node1", "mem_reserved",
	    2000, "node_count", 2, "access_ip", "10.0.0.5", "access_mac", "52:54:00:12:34:56",
	    "manager_uri", "http://10.0.0.5:8885", "host_type", "hypervisor", "sys_info", "os",
	    "Debian", "libvirt_uri", "qemu:///system", "kvm", 1);
	assert_non_null(whole);
	assert_true(json_equal(body, whole));
	json_t *h = json_object_get(body, "host");
	assert_true(json_is_object(h));
	/* Create only: generate_name and mem_reserved; never name or zone. */
	assert_string_equal(json_string_value(json_object_get(h, "generate_name")), "node1");
	assert_null(json_object_get(h, "name"));
	assert_int_equal(json_object_size(body), 1);
	assert_string_equal(json_string_value(json_object_get(h, "access_ip")), "10.0.0.5");
	assert_string_equal(json_string_value(json_object_get(h, "access_mac")),
			    "52:54:00:12:34:56");
	assert_string_equal(json_string_value(json_object_get(h, "manager_uri")),
			    "http://10.0.0.5:8885");
	assert_string_equal(json_string_value(json_object_get(h, "host_type")), "hypervisor");
	assert_null(json_object_get(h, "zone"));
	assert_string_equal(json_string_value(json_object_get(h, "cpu_architecture")), "x86_64");
	assert_int_equal(json_integer_value(json_object_get(h, "kvm_cap_max_vcpu")), 288);
	assert_int_equal(json_integer_value(json_object_get(h, "page_size_kb")), 4);
	assert_string_equal(json_string_value(json_object_get(h, "cpu_desc")), "Some CPU");
	assert_string_equal(json_string_value(json_object_get(h, "version")), "0.1.0");
	static const char *const ints[] = {"cpu_count", "node_count",	"cpu_mhz",
					   "mem_size",	"mem_reserved", "storage_size"};
	static const json_int_t want[] = {8, 2, 2400, 16000, 2000, 500000};
	for (size_t i = 0; i < ELEMENTSOF(ints); i++)
		assert_int_equal(json_integer_value(json_object_get(h, ints[i])), want[i]);
	json_t *sys = json_object_get(h, "sys_info");
	assert_string_equal(json_string_value(json_object_get(sys, "os")), "Debian");
	assert_string_equal(json_string_value(json_object_get(sys, "libvirt_uri")),
			    "qemu:///system");

	/* TLS: https; no node_count from libvirt: 1; missing numbers: 0. */
	free(cfg.tls_cert_file);
	cfg.tls_cert_file = strdup("/etc/cert.pem");
	info->node_count = -1;
	info->cpu_mhz = -1;
	info->kvm_cap_max_vcpu = -1;
	json_decref(body);
	body = NULL;
	assert_int_equal(report_host_body(info, &cfg, false, &body), 0);
	h = json_object_get(body, "host");
	/* Update: an admin's name and reserved memory survive. */
	assert_null(json_object_get(h, "generate_name"));
	assert_null(json_object_get(h, "name"));
	assert_null(json_object_get(h, "mem_reserved"));
	assert_string_equal(json_string_value(json_object_get(h, "manager_uri")),
			    "https://10.0.0.5:8885");
	assert_int_equal(json_integer_value(json_object_get(h, "node_count")), 1);
	assert_true(json_is_integer(json_object_get(h, "cpu_mhz")));
	assert_int_equal(json_integer_value(json_object_get(h, "cpu_mhz")), 0);
	/* Optional numbers that are unknown are left out. */
	assert_null(json_object_get(h, "kvm_cap_max_vcpu"));
	assert_int_equal(json_integer_value(json_object_get(h, "page_size_kb")), 4);

	/* No access address: nothing to register with. */
	free(info->access_mac);
	info->access_mac = NULL;
	json_t *none = NULL;
	assert_int_equal(report_host_body(info, &cfg, true, &none), -ENODATA);
	assert_null(none);
	config_done(&cfg);
}

static void test_power_state(void **state)
{
	assert_string_equal(report_power_state("running"), "on");
	assert_string_equal(report_power_state("suspend"), "on");
	assert_string_equal(report_power_state("stopping"), "on");
	assert_string_equal(report_power_state("ready"), "off");
	assert_string_equal(report_power_state("crashed"), "off");
	assert_string_equal(report_power_state("unknown"), "off");
	assert_string_equal(report_power_state(NULL), "off");
}

/* Status pushes carry only Cloudpods states and the host id: a crashed guest is ready with a
 * reason, a stopping one still running (report.c does not push stopping at all). */
static void test_status_body(void **state)
{
	struct outbox_entry e = {.sid = "s1", .status = "crashed", .power_states = "off"};
	json_auto_t *b = report_status_body(&e, "host-1");
	json_auto_t *want =
	    json_pack("{s:{s:s,s:s,s:s,s:s}}", "server", "status", "ready", "power_states", "off",
		      "host_id", "host-1", "reason", "crashed");
	assert_true(json_equal(b, want));
	static const char *const same[] = {"running", "ready", "suspend", "unknown"};
	for (size_t i = 0; i < ELEMENTSOF(same); i++) {
		e.status = (char *)same[i];
		json_auto_t *x = report_status_body(&e, NULL);
		json_t *srv = json_object_get(x, "server");
		assert_string_equal(json_string_value(json_object_get(srv, "status")), same[i]);
		assert_null(json_object_get(srv, "host_id"));
		assert_null(json_object_get(srv, "reason"));
	}
	e.status = "stopping";
	json_auto_t *st = report_status_body(&e, NULL);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(st, "server"), "status")), "running");
	e.status = "weird";
	json_auto_t *w = report_status_body(&e, NULL);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(w, "server"), "status")), "unknown");
}

/* The metadata the region's VNC parsing needs after a start (GetGuestVncInfo). */
static void test_metadata_body(void **state)
{
	json_auto_t *b = serverpush_metadata_body("8.2.2", 5901, NULL);
	json_auto_t *want =
	    json_pack("{s:{s:s,s:i}}", "server", "__qemu_version", "8.2.2", "__vnc_port", 5901);
	assert_true(json_equal(b, want));
	json_auto_t *p = serverpush_metadata_body("8.2.2", -1, "pw");
	json_auto_t *want2 =
	    json_pack("{s:{s:s,s:s}}", "server", "__qemu_version", "8.2.2", "__vnc_password", "pw");
	assert_true(json_equal(p, want2));
}

TEST_MAIN(cmocka_unit_test(test_put_next_ack), cmocka_unit_test(test_latest_wins),
	  cmocka_unit_test(test_replay_order_after_reopen), cmocka_unit_test(test_atomic_files),
	  cmocka_unit_test(test_writer_order), cmocka_unit_test(test_no_cap),
	  cmocka_unit_test(test_invalid_ids), cmocka_unit_test(test_host_body),
	  cmocka_unit_test(test_power_state), cmocka_unit_test(test_status_body),
	  cmocka_unit_test(test_metadata_body))

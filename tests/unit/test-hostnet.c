/* Host networks (agent/hostnet.c): the networks entries, their completion from fixture links
 * (as hostnet_links_read() gives them) and the access address; the registration bodies built
 * from them (agent/report.c). */
#include <stdlib.h>
#include <string.h>

#include "agent/hostinfo.h"
#include "agent/hostnet.h"
#include "agent/report.h"
#include "agent/storage.h"
#include "common/config.h"
#include "tests/unit/test-common.h"

static struct hostnet_addr br0_addrs[] = {{"10.0.0.5", 24}, {"10.0.1.5", 16}};
static struct hostnet_addr lo_addrs[] = {{"127.0.0.1", 8}};
static struct hostnet_addr br2_addrs[] = {{"10.7.7.7", 24}};
static struct hostnet_link fixture_v[] = {
    {"lo", "00:00:00:00:00:00", true, lo_addrs, 1},
    {"eth0", "52:54:00:00:00:01", true, NULL, 0},
    {"br0", "52:54:00:00:00:02", true, br0_addrs, 2},
    {"br1", "52:54:00:00:00:03", false, NULL, 0},
    {"eth1", "52:54:00:00:00:04", false, NULL, 0},
    /* A bridge whose ports all left: the kernel shows a zero MAC. */
    {"br2", "00:00:00:00:00:00", true, br2_addrs, 1},
};
static const struct hostnet_links fixture = {fixture_v, ELEMENTSOF(fixture_v)};

static int complete(const char *entry, const char *listen, bool need, char **err,
		    struct hostnets **ret)
{
	char *entries[] = {(char *)entry, NULL};
	struct hostnets *h = NULL;
	int r = hostnets_new(entry ? entries : NULL, &h, err);
	if (r < 0)
		return r;
	r = hostnets_complete(h, &fixture, listen, need, err);
	*ret = h;
	return r;
}

static void test_parse(void **state)
{
	char *bad[][2] = {{"eth0", NULL},
			  {"eth0/", NULL},
			  {"/br0", NULL},
			  {"eth0/br0/10.0.0.5/33", NULL},
			  {"eth0/a-very-long-bridge-name", NULL}};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		struct hostnets *h = NULL;
		_cleanup_free_ char *err = NULL;
		assert_int_equal(hostnets_new(bad[i], &h, &err), -EINVAL);
		assert_non_null(strstr(err, bad[i][0]));
		assert_null(h);
	}
	char *two[] = {"eth0/br0", "eth1/br0", NULL};
	struct hostnets *h = NULL;
	_cleanup_free_ char *err = NULL;
	assert_int_equal(hostnets_new(two, &h, &err), -EINVAL);
	assert_non_null(strstr(err, "twice"));
}

static void test_complete(void **state)
{
	struct hostnets *h = NULL;
	char *err = NULL;
	/* IP given and on the bridge: mask from the host, MAC of the bridge. */
	assert_int_equal(complete("eth0/br0/10.0.1.5", "0.0.0.0", true, &err, &h), 0);
	const struct hostnet *hn = hostnets_get(h, 0);
	assert_string_equal(hn->ip, "10.0.1.5");
	assert_int_equal(hn->masklen, 16);
	assert_string_equal(hn->mac, "52:54:00:00:00:02");
	assert_string_equal(hostnets_access_ip(h), "10.0.1.5");
	assert_string_equal(hostnets_access_mac(h), "52:54:00:00:00:02");
	assert_ptr_equal(hostnets_find_bridge(h, "br0"), hn);
	assert_int_equal(hostnets_set_wire(h, 0, "w-1", "bcast0"), 0);
	assert_ptr_equal(hostnets_find_wire(h, "w-1"), hn);
	assert_null(hostnets_find_wire(h, "w-2"));
	h = hostnets_free(h);
	/* IP omitted: the bridge's first. */
	assert_int_equal(complete("eth0/br0", "0.0.0.0", true, &err, &h), 0);
	assert_string_equal(hostnets_get(h, 0)->ip, "10.0.0.5");
	assert_int_equal(hostnets_get(h, 0)->masklen, 24);
	h = hostnets_free(h);

	struct {
		const char *entry, *want;
		int r;
	} bad[] = {
	    {"eth0/br9", "bridge br9 does not exist", -ENODEV},
	    {"eth9/br0", "interface eth9 does not exist", -ENODEV},
	    {"eth0/br0/10.0.0.9", "address 10.0.0.9 is not on bridge br0", -EINVAL},
	    {"eth0/br0/10.0.0.5/16", "not /16", -EINVAL},
	    {"eth0/br1", "bridge br1 has no IPv4 address", -EINVAL},
	    {"eth0/br2/10.7.7.7", "bridge br2 has no MAC address (00:00:00:00:00:00", -EINVAL},
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		assert_int_equal(complete(bad[i].entry, "0.0.0.0", true, &err, &h), bad[i].r);
		assert_non_null(strstr(err, bad[i].want));
		assert_non_null(strstr(err, bad[i].entry));
		free(err);
		err = NULL;
		h = hostnets_free(h);
	}
}

static void test_access(void **state)
{
	struct hostnets *h = NULL;
	char *err = NULL;
	/* No networks: a concrete listen_address, never "the first interface". */
	assert_int_equal(complete(NULL, "10.0.0.5", true, &err, &h), 0);
	assert_string_equal(hostnets_access_ip(h), "10.0.0.5");
	assert_string_equal(hostnets_access_mac(h), "52:54:00:00:00:02");
	h = hostnets_free(h);
	assert_int_equal(complete(NULL, "0.0.0.0", true, &err, &h), -EINVAL);
	assert_non_null(strstr(err, "networks"));
	free(err);
	err = NULL;
	h = hostnets_free(h);
	assert_int_equal(complete(NULL, "10.9.9.9", true, &err, &h), -EINVAL);
	assert_non_null(strstr(err, "10.9.9.9"));
	free(err);
	err = NULL;
	h = hostnets_free(h);
	/* Standalone: no access address needed. */
	assert_int_equal(complete(NULL, "0.0.0.0", false, &err, &h), 0);
	assert_null(hostnets_access_ip(h));
	h = hostnets_free(h);
}

static void test_netif_body(void **state)
{
	struct hostnets *h = NULL;
	char *err = NULL;
	assert_int_equal(complete("eth0/br0", "0.0.0.0", true, &err, &h), 0);
	json_t *b = NULL;
	/* No wire yet: nothing to send (the region would attach it to no network). */
	assert_int_equal(report_netif_body(hostnets_get(h, 0), true, &b), -ENODATA);
	assert_int_equal(hostnets_set_wire(h, 0, "w-1", "bcast0"), 0);
	assert_int_equal(report_netif_body(hostnets_get(h, 0), true, &b), 0);
	json_auto_t *want = json_pack(
	    "{s:{s:s,s:i,s:s,s:s,s:s,s:b,s:s,s:b,s:b,s:s}}", "host", "mac", "52:54:00:00:00:02",
	    "vlan_id", 1, "wire", "bcast0", "bridge", "br0", "interface", "eth0", "link_up", 1,
	    "ip_addr", "10.0.0.5", "reserve", 1, "require_designated_ip", 1, "nic_type", "admin");
	assert_true(json_equal(b, want));
	json_decref(b);
	assert_int_equal(report_netif_body(hostnets_get(h, 0), false, &b), 0);
	assert_null(json_object_get(json_object_get(b, "host"), "nic_type"));
	json_decref(b);
	hostnets_free(h);
	/* link_up is the interface's state. */
	assert_int_equal(complete("eth1/br0", "0.0.0.0", true, &err, &h), 0);
	assert_int_equal(hostnets_set_wire(h, 0, "w-1", "bcast0"), 0);
	assert_int_equal(report_netif_body(hostnets_get(h, 0), true, &b), 0);
	assert_true(json_is_false(json_object_get(json_object_get(b, "host"), "link_up")));
	json_decref(b);
	hostnets_free(h);
}

static void test_storage_and_ping_bodies(void **state)
{
	struct config cfg;
	assert_int_equal(config_init(&cfg), 0);
	strv_free(cfg.local_image_path);
	cfg.local_image_path = calloc(2, sizeof(char *));
	cfg.local_image_path[0] = strdup("/srv/disks");
	struct storages *s = NULL;
	assert_int_equal(storages_new(&cfg, &s), 0);
	assert_int_equal(storages_set_names(s, "10.0.0.5"), 0);
	const struct storage *st = storages_get(s, 0);
	assert_string_equal(st->name, "host_10.0.0.5_local_storage_0");
	assert_string_equal(st->cache_dir, "/srv/disks/image_cache");
	struct host_storage unknown = {0}, facts = {.known = true,
						    .capacity_mb = 1000,
						    .used_mb = 300,
						    .free_mb = 700,
						    .rotational = true};
	json_t *b = NULL;
	assert_int_equal(report_storage_body(st, &facts, "zone1", true, &b), -ENODATA);
	assert_int_equal(storages_set_ids(s, 0, NULL, "sc-1"), 0);
	assert_int_equal(report_storage_body(st, &unknown, "zone1", true, &b), -ENODATA);
	assert_int_equal(report_storage_body(st, NULL, "zone1", true, &b), -ENODATA);
	assert_int_equal(report_storage_body(st, &facts, "zone1", true, &b), 0);
	json_auto_t *want = json_pack(
	    "{s:{s:s,s:i,s:i,s:s,s:s,s:s,s:s}}", "storage", "name", "host_10.0.0.5_local_storage_0",
	    "capacity", 1000, "actual_capacity_used", 300, "storage_type", "local", "medium_type",
	    "rotate", "zone", "zone1", "storagecache_id", "sc-1");
	assert_true(json_equal(b, want));
	json_decref(b);
	facts.rotational = false;
	assert_int_equal(report_storage_body(st, &facts, "zone1", false, &b), 0);
	json_auto_t *uwant = json_pack("{s:{s:i,s:i,s:s,s:s,s:s}}", "storage", "capacity", 1000,
				       "actual_capacity_used", 300, "storage_type", "local",
				       "medium_type", "ssd", "storagecache_id", "sc-1");
	assert_true(json_equal(b, uwant));
	json_decref(b);
	assert_int_equal(storages_set_ids(s, 0, "st-1", NULL), 0);
	assert_ptr_equal(storages_find(s, "st-1"), st);
	assert_ptr_equal(storages_find_cache(s, "sc-1"), st);

	struct host_stats stats = {.memory_used_mb = 512, .cpu_usage_percent = -1};
	json_auto_t *ss = json_pack("[{s:s,s:i,s:i}]", "storage_id", "st-1", "capacity_mb", 1000,
				    "actual_capacity_used_mb", 300);
	assert_int_equal(report_ping_body(&stats, ss, &b), 0);
	json_auto_t *pwant = json_pack("{s:{s:i,s:O,s:[],s:b}}", "host", "memory_used_mb", 512,
				       "storage_stats", ss, "qga_running_guests", "with_data", 1);
	assert_true(json_equal(b, pwant));
	json_decref(b);
	/* A CPU share is a real; nothing known: only the lists. */
	stats = (struct host_stats){.memory_used_mb = -1, .cpu_usage_percent = 12.5};
	assert_int_equal(report_ping_body(&stats, ss, &b), 0);
	json_auto_t *cwant = json_pack("{s:{s:f,s:O,s:[],s:b}}", "host", "cpu_usage_percent", 12.5,
				       "storage_stats", ss, "qga_running_guests", "with_data", 1);
	assert_true(json_equal(b, cwant));
	json_decref(b);
	storages_free(s);
	config_done(&cfg);
}

TEST_MAIN(cmocka_unit_test(test_parse), cmocka_unit_test(test_complete),
	  cmocka_unit_test(test_access), cmocka_unit_test(test_netif_body),
	  cmocka_unit_test(test_storage_and_ping_bodies))

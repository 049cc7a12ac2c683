/* The guest DHCP's dnsmasq files and command line from descriptors (agent/dhcp-conf.c). */
#include <jansson.h>

#include "agent/dhcp-conf.h"
#include "common/fs.h"
#include "tests/unit/test-common.h"

static char *roots[] = {"/tmp", NULL};

static struct guest_desc *parse(const char *text)
{
	json_error_t jerr;
	json_auto_t *j = json_loads(text, 0, &jerr);
	assert_non_null(j);
	struct guest_desc *d = NULL;
	_cleanup_free_ char *err = NULL;
	int r = guest_desc_parse(j, roots, &d, &err);
	if (r < 0)
		fail_msg("%s", err);
	return d;
}

#define UUID "\"uuid\": \"0c4ce5a8-7f3e-4d57-8a0e-5b4f1b2d9e01\""

/* Two NICs with the region's IPAM, one without ip, one tagged, one IPv6: the first two lease. */
static const char *desc_a =
    "{" UUID ", \"name\": \"Web 1\", \"hostname\": \"web-1.corp\", \"mem\": 64, \"nics\": ["
    "{\"index\": 0, \"mac\": \"52:54:00:aa:00:01\", \"bridge\": \"br0\", \"ip\": \"10.1.2.7\","
    " \"masklen\": 24, \"gateway\": \"10.1.2.1\", \"dns\": \"10.1.2.53,2001:db8::53,8.8.8.8\","
    " \"domain\": \"corp.example\", \"mtu\": 1450, \"is_default\": true,"
    " \"routes\": [[\"172.16.0.0/12\", \"10.1.2.254\"], [\"2001:db8:9::/48\", \"2001:db8::1\"]]},"
    "{\"index\": 1, \"mac\": \"52:54:00:aa:00:02\", \"bridge\": \"br1\", \"ip\": \"192.168.5.9\","
    " \"masklen\": 16, \"gateway\": \"192.168.0.1\"},"
    "{\"index\": 2, \"mac\": \"52:54:00:aa:00:03\", \"bridge\": \"br0\"},"
    "{\"index\": 3, \"mac\": \"52:54:00:aa:00:04\", \"bridge\": \"br0\", \"ip\": \"10.1.3.3\","
    " \"masklen\": 24, \"vlan\": 7},"
    "{\"index\": 4, \"mac\": \"52:54:00:aa:00:05\", \"bridge\": \"br0\", \"ip\": \"2001:db8::5\","
    " \"masklen\": 64}]}";

static void test_hosts_from_desc(void **state)
{
	_cleanup_(guest_desc_freep) struct guest_desc *d = parse(desc_a);
	struct dhcp_host *h = NULL;
	size_t n = 0;
	assert_int_equal(dhcp_hosts_from_desc("sid-a", d, &h, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(h[0].sid, "sid-a");
	assert_string_equal(h[0].bridge, "br0");
	assert_string_equal(h[0].mac, "52:54:00:aa:00:01");
	assert_string_equal(h[0].ip, "10.1.2.7");
	assert_string_equal(h[0].hostname, "web-1");
	assert_true(h[0].is_default);
	/* DNS and routes: IPv4 only in DHCPv4. */
	assert_int_equal(strv_length(h[0].dns), 2);
	assert_int_equal(strv_length(h[0].routes), 1);
	assert_string_equal(h[0].routes[0], "172.16.0.0/12,10.1.2.254");
	assert_string_equal(h[1].bridge, "br1");
	/* One NIC says is_default: the other's gateway is not a default route. */
	assert_false(h[1].is_default);
	dhcp_hosts_free(h, n);

	/* A guest without ip on any NIC gets nothing. */
	_cleanup_(guest_desc_freep) struct guest_desc *e = parse(
	    "{" UUID ", \"name\": \"x\", \"mem\": 64, \"nics\": [{\"mac\": \"52:54:00:aa:00:09\","
	    " \"bridge\": \"br0\"}, {\"mac\": \"52:54:00:aa:00:0a\", \"bridge\": \"br0\","
	    " \"ip\": \"10.0.0.3\"}]}");
	assert_int_equal(dhcp_hosts_from_desc("sid-e", e, &h, &n), 0);
	assert_int_equal(n, 0); /* the second has no masklen: no subnet to serve */
	assert_null(h);

	/* No NIC marked is_default (older descriptors): a gateway is a default route; the guest's
	 * name is its host name when it is one. */
	_cleanup_(guest_desc_freep) struct guest_desc *f = parse(
	    "{" UUID ", \"name\": \"Plain\", \"mem\": 64, \"nics\": [{\"mac\": "
	    "\"52:54:00:aa:00:0b\", \"bridge\": \"br0\", \"ip\": \"10.0.0.3\", \"masklen\": 8,"
	    " \"gateway\": \"10.0.0.1\"}]}");
	assert_int_equal(dhcp_hosts_from_desc("sid-f", f, &h, &n), 0);
	assert_int_equal(n, 1);
	assert_true(h[0].is_default);
	assert_string_equal(h[0].hostname, "plain");
	dhcp_hosts_free(h, n);

	/* Names dnsmasq would read as something else in a host entry are left out. */
	static const char *const not_names[] = {"600", "45m", "Ignore", "infinite", "_x"};
	for (size_t i = 0; i < ELEMENTSOF(not_names); i++) {
		_cleanup_free_ char *t = NULL;
		assert_true(asprintf(&t,
				     "{" UUID
				     ", \"name\": \"%s\", \"mem\": 64, \"nics\": [{\"mac\": "
				     "\"52:54:00:aa:00:0b\", \"bridge\": \"br0\", \"ip\": "
				     "\"10.0.0.3\", \"masklen\": 8}]}",
				     not_names[i]) > 0);
		_cleanup_(guest_desc_freep) struct guest_desc *g = parse(t);
		assert_int_equal(dhcp_hosts_from_desc("sid-g", g, &h, &n), 0);
		assert_int_equal(n, 1);
		assert_null(h[0].hostname);
		dhcp_hosts_free(h, n);
	}
}

static void test_render(void **state)
{
	_cleanup_(guest_desc_freep) struct guest_desc *d = parse(desc_a);
	struct dhcp_host *h = NULL;
	size_t n = 0;
	assert_int_equal(dhcp_hosts_from_desc("sid-a", d, &h, &n), 0);
	const struct dhcp_host *one[] = {&h[0]};
	struct dhcp_conf c = {0};
	assert_int_equal(dhcp_conf_render(one, 1, &c), 0);
	assert_string_equal(c.hosts,
			    "52:54:00:aa:00:01,set:h525400aa0001,10.1.2.7,web-1,infinite\n");
	assert_string_equal(c.opts,
			    "tag:h525400aa0001,1,255.255.255.0\n"
			    "tag:h525400aa0001,28,10.1.2.255\n"
			    "tag:h525400aa0001,3,10.1.2.1\n"
			    "tag:h525400aa0001,6,10.1.2.53,8.8.8.8\n"
			    "tag:h525400aa0001,15,corp.example\n"
			    "tag:h525400aa0001,26,1450\n"
			    "tag:h525400aa0001,121,172.16.0.0/12,10.1.2.254,0.0.0.0/0,10.1.2.1\n");
	assert_int_equal(strv_length(c.subnets), 1);
	assert_string_equal(c.subnets[0], "10.1.2.0/24");
	assert_int_equal(c.skipped, 0);
	dhcp_conf_done(&c);

	/* Not the default NIC: no router (dnsmasq would offer itself), no default route. */
	const struct dhcp_host *other[] = {&h[1]};
	assert_int_equal(dhcp_conf_render(other, 1, &c), 0);
	assert_string_equal(c.hosts,
			    "52:54:00:aa:00:02,set:h525400aa0002,192.168.5.9,web-1,infinite\n");
	assert_string_equal(c.opts, "tag:h525400aa0002,1,255.255.0.0\n"
				    "tag:h525400aa0002,28,192.168.255.255\n"
				    "tag:h525400aa0002,3\n");
	assert_string_equal(c.subnets[0], "192.168.0.0/16");
	dhcp_conf_done(&c);
	dhcp_hosts_free(h, n);
}

/* Two guests on one bridge: each keeps its own; a second NIC claiming a MAC or an IP already
 * served is left out and counted; subnets are listed once. */
static void test_render_conflicts(void **state)
{
	_cleanup_(guest_desc_freep) struct guest_desc *a = parse(
	    "{" UUID ", \"name\": \"a\", \"mem\": 64, \"nics\": [{\"mac\": \"52:54:00:00:00:01\","
	    " \"bridge\": \"br0\", \"ip\": \"10.0.0.2\", \"masklen\": 24}]}");
	_cleanup_(guest_desc_freep) struct guest_desc *b = parse(
	    "{" UUID ", \"name\": \"b\", \"mem\": 64, \"nics\": [{\"mac\": \"52:54:00:00:00:02\","
	    " \"bridge\": \"br0\", \"ip\": \"10.0.0.3\", \"masklen\": 24}, {\"mac\": "
	    "\"52:54:00:00:00:03\", \"bridge\": \"br0\", \"ip\": \"10.0.0.2\", \"masklen\": 24},"
	    " {\"mac\": \"52:54:00:00:00:01\", \"bridge\": \"br0\", \"ip\": \"10.9.0.2\","
	    " \"masklen\": 16}]}");
	struct dhcp_host *ha, *hb;
	size_t na, nb;
	assert_int_equal(dhcp_hosts_from_desc("a", a, &ha, &na), 0);
	assert_int_equal(dhcp_hosts_from_desc("b", b, &hb, &nb), 0);
	assert_int_equal(nb, 3);
	const struct dhcp_host *all[] = {&ha[0], &hb[0], &hb[1], &hb[2]};
	struct dhcp_conf c = {0};
	assert_int_equal(dhcp_conf_render(all, 4, &c), 0);
	assert_string_equal(c.hosts, "52:54:00:00:00:01,set:h525400000001,10.0.0.2,a,infinite\n"
				     "52:54:00:00:00:02,set:h525400000002,10.0.0.3,b,infinite\n");
	assert_int_equal(c.skipped, 2);
	assert_int_equal(strv_length(c.subnets), 1);
	assert_string_equal(c.subnets[0], "10.0.0.0/24");
	dhcp_conf_done(&c);

	/* Nothing on the bridge: empty files, no subnet. */
	assert_int_equal(dhcp_conf_render(NULL, 0, &c), 0);
	assert_string_equal(c.hosts, "");
	assert_string_equal(c.opts, "");
	assert_null(c.subnets);
	dhcp_conf_done(&c);
	dhcp_hosts_free(ha, na);
	dhcp_hosts_free(hb, nb);
}

static void test_argv(void **state)
{
	char *subnets[] = {"10.0.0.0/24", "192.168.0.0/16", NULL};
	_cleanup_strv_free_ char **a = NULL;
	assert_int_equal(dhcp_conf_argv("dnsmasq", "br0", "/st/dhcp/br0", subnets, &a), 0);
	assert_string_equal(a[0], "dnsmasq");
	assert_true(strv_contains(a, "--port=0"));
	assert_true(strv_contains(a, "--keep-in-foreground"));
	assert_true(strv_contains(a, "--conf-file=/dev/null"));
	assert_true(strv_contains(a, "--interface=br0"));
	assert_true(strv_contains(a, "--dhcp-hostsfile=/st/dhcp/br0/hosts"));
	assert_true(strv_contains(a, "--dhcp-optsfile=/st/dhcp/br0/opts"));
	assert_true(strv_contains(a, "--dhcp-leasefile=/st/dhcp/br0/leases"));
	assert_true(strv_contains(a, "--dhcp-ignore=tag:!known"));
	assert_true(strv_contains(a, "--dhcp-range=10.0.0.0,static,255.255.255.0,infinite"));
	assert_true(strv_contains(a, "--shared-network=br0,10.0.0.0"));
	assert_true(strv_contains(a, "--dhcp-range=192.168.0.0,static,255.255.0.0,infinite"));
	assert_true(strv_contains(a, "--shared-network=br0,192.168.0.0"));
	char *bad[] = {"10.0.0.0", NULL};
	_cleanup_strv_free_ char **b = NULL;
	assert_int_equal(dhcp_conf_argv("dnsmasq", "br0", "/d", bad, &b), -EINVAL);
}

static void test_version(void **state)
{
	assert_int_equal(dhcp_dnsmasq_version("Dnsmasq version 2.90  Copyright (c) 2000-2024"),
			 2090);
	assert_int_equal(dhcp_dnsmasq_version("Dnsmasq version 2.91test3  Copyright"), 2091);
	assert_true(dhcp_dnsmasq_version("Dnsmasq version 2.91 x") >= DHCP_DNSMASQ_SIGHUP_SAFE);
	assert_int_equal(dhcp_dnsmasq_version("Dnsmasq version x"), -EINVAL);
	assert_int_equal(dhcp_dnsmasq_version(""), -EINVAL);
	assert_int_equal(dhcp_dnsmasq_version(NULL), -EINVAL);
}

TEST_MAIN(cmocka_unit_test(test_hosts_from_desc), cmocka_unit_test(test_render),
	  cmocka_unit_test(test_render_conflicts), cmocka_unit_test(test_argv),
	  cmocka_unit_test(test_version))

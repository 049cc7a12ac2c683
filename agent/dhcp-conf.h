/* What the guest DHCP (agent/dhcp.h) tells dnsmasq: the host entries of the NICs of every guest
 * on one bridge (--dhcp-hostsfile), their options (--dhcp-optsfile) and the command line.
 * Pure: no I/O, any thread, unit-tested (tests/unit/test-dhcp.c). */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

#include "agent/desc.h"
#include "common/macros.h"

/* One guest NIC that gets a lease: an IPv4 ip with a mask length, untagged. */
struct dhcp_host {
	char *sid;
	int index; /* NIC index in the guest */
	char *bridge;
	char mac[18];
	char ip[INET_ADDRSTRLEN];
	int masklen;	 /* 1..32 */
	char *hostname;	 /* one DNS label, lower case, or NULL */
	char *gateway;	 /* or NULL */
	bool is_default; /* gets the router option and the default route */
	char **dns;	 /* IPv4 addresses only, or NULL */
	char *domain;
	char **routes; /* "10.0.0.0/8,192.168.1.1" pairs (IPv4), or NULL */
	int mtu;       /* 0: none */
};

/* The hosts of sid's NICs (those with an IPv4 ip and masklen, vlan 0 or 1), sorted by index.
 * When no NIC of the guest says is_default, every NIC with a gateway counts as default (older
 * descriptors). *ret is NULL when there is none. -ENOMEM. */
int dhcp_hosts_from_desc(const char *sid, const struct guest_desc *d, struct dhcp_host **ret,
			 size_t *ret_n);
void dhcp_hosts_free(struct dhcp_host *h, size_t n);

struct dhcp_conf {
	char *hosts;	/* --dhcp-hostsfile: "MAC,set:TAG,IP[,HOSTNAME],infinite" per line */
	char *opts;	/* --dhcp-optsfile: "tag:TAG,CODE[,VALUE...]" per line */
	char **subnets; /* "NETWORK/MASKLEN" of every host, sorted, unique */
	size_t skipped; /* hosts left out: their MAC or IP is already another host's */
};
/* Renders the hosts of one bridge, in the order given (the first of two with one MAC or one IP
 * keeps it). -ENOMEM. */
int dhcp_conf_render(const struct dhcp_host *const *hosts, size_t n, struct dhcp_conf *ret);
void dhcp_conf_done(struct dhcp_conf *c);

/* dnsmasq's command line for bridge, its files in dir, serving subnets (a dhcp-range and a
 * shared-network each, so the bridge's own address may be in any subnet). -ENOMEM. */
int dhcp_conf_argv(const char *dnsmasq, const char *bridge, const char *dir, char *const *subnets,
		   char ***ret);

/* "Dnsmasq version 2.90 ..." -> 2090; -EINVAL when not recognized. */
int dhcp_dnsmasq_version(const char *version_output);
/* dnsmasq 2.91 rereads its files on SIGHUP safely; 2.90 aborts after a change. */
#define DHCP_DNSMASQ_SIGHUP_SAFE 2091

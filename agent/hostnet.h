/* The host networks the agent manages: the `networks` configuration (Cloudpods host.conf
 * form IFNAME/BRIDGE[/IP], the access network first), completed with facts read from the
 * host (bridge MAC, address) and, once registered, the region's wire of each. Owned by the
 * loop thread; workers get copies. */
#pragma once

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/macros.h"

struct hostnet {
	char *ifname;  /* physical interface ("eth0"); may equal the bridge */
	char *bridge;  /* Linux bridge guests' taps join ("br0") */
	char *ip;      /* IPv4 address; NULL until read from the bridge */
	int masklen;   /* 0 when unknown */
	char *mac;     /* MAC of the bridge; NULL until read */
	char *wire_id; /* region wire id; NULL until registered */
	char *wire;    /* region wire name */
	bool link_up;  /* the interface is up (IFF_UP) when read */
};

struct hostnets;

/* Facts about the host's links, read by hostnet_links_read() (agent/hostnet-nl.c, libnl-route)
 * or given by a unit test. */
struct hostnet_addr {
	char ip[INET_ADDRSTRLEN];
	int masklen;
};
struct hostnet_link {
	char name[IFNAMSIZ];
	char mac[18];		    /* "aa:bb:cc:dd:ee:ff"; empty when the link has none */
	bool up;		    /* IFF_UP */
	struct hostnet_addr *addrs; /* IPv4 only */
	size_t n_addrs;
};
struct hostnet_links {
	struct hostnet_link *v;
	size_t n;
};
void hostnet_links_done(struct hostnet_links *l);
/* Every link of the calling thread's network namespace with its IPv4 addresses. */
int hostnet_links_read(struct hostnet_links *ret);

/* Parses the entries (NULL or empty: no networks). -EINVAL with *ret_error naming the entry
 * when one is malformed. Host facts are not read here. */
int hostnets_new(char *const *entries, struct hostnets **ret, char **ret_error);
struct hostnets *hostnets_free(struct hostnets *h);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct hostnets *, hostnets_free)
size_t hostnets_count(const struct hostnets *h);
struct hostnet *hostnets_get(struct hostnets *h, size_t i);
/* Completes every network from the host's links: the bridge and the interface must exist, the
 * MAC is the bridge's, the configured IP must be on the bridge (the mask length is taken from
 * the host), an omitted one is the bridge's first IPv4 address. Then the access address: the
 * first network's, or without networks listen_address when it is a concrete address (the MAC
 * of the link holding it); with need_access (region mode) having none is an error. -EINVAL
 * (or -ENODEV for a missing link) with *ret_error naming the entry. */
int hostnets_complete(struct hostnets *h, const struct hostnet_links *links,
		      const char *listen_address, bool need_access, char **ret_error);
/* Access address and MAC for the region (host access_ip/access_mac); NULL when none. */
const char *hostnets_access_ip(const struct hostnets *h);
const char *hostnets_access_mac(const struct hostnets *h);
/* Records the region wire of network i. */
int hostnets_set_wire(struct hostnets *h, size_t i, const char *wire_id, const char *wire);
/* The network whose region wire is wire_id; NULL when none. */
const struct hostnet *hostnets_find_wire(const struct hostnets *h, const char *wire_id);
/* The network whose bridge is bridge; NULL when none. */
const struct hostnet *hostnets_find_bridge(const struct hostnets *h, const char *bridge);

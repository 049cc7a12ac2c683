/* The host networks the agent manages: the `networks` configuration (Cloudpods host.conf
 * form IFNAME/BRIDGE[/IP], the access network first), completed with facts read from the
 * host (bridge MAC, address) and, once registered, the region's wire of each. Owned by the
 * loop thread; workers get copies. */
#pragma once

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
};

struct hostnets;

/* Parses the entries (NULL or empty: no networks). -EINVAL with *ret_error naming the entry
 * when one is malformed. Host facts are not read here. */
int hostnets_new(char *const *entries, struct hostnets **ret, char **ret_error);
struct hostnets *hostnets_free(struct hostnets *h);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct hostnets *, hostnets_free)
size_t hostnets_count(const struct hostnets *h);
struct hostnet *hostnets_get(struct hostnets *h, size_t i);
/* The network whose region wire is wire_id; NULL when none. */
const struct hostnet *hostnets_find_wire(const struct hostnets *h, const char *wire_id);
/* The network whose bridge is bridge; NULL when none. */
const struct hostnet *hostnets_find_bridge(const struct hostnets *h, const char *bridge);

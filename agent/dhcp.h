/* The guest DHCP: on every bridge a guest NIC with an IPv4 address uses, one dnsmasq started
 * and supervised by the agent answers each NIC (by MAC) with the address, mask, gateway, DNS,
 * domain, routes and MTU of the stored descriptor (agent/dhcp-conf.h renders what it reads).
 * Files: <state_dir>/dhcp/<bridge>/{hosts,opts,leases,pid}. Loop thread only. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <systemd/sd-event.h>

#include "agent/dhcp-conf.h"

struct dhcp;
struct metrics;
struct readiness;

struct dhcp_config {
	sd_event *event;
	const char *state_dir;
	const char *dnsmasq; /* program name or path */
	bool enable;	     /* false: nothing runs, every call is a no-op */
	struct metrics *metrics;
	struct readiness *readiness; /* gets a wanted dnsmasq that does not run; NULL: none */
};

/* The NICs of one guest that get a lease (dhcp_hosts_from_desc()). */
struct dhcp_guest {
	char *sid;
	struct dhcp_host *hosts;
	size_t n;
};
void dhcp_guests_free(struct dhcp_guest *g, size_t n);

int dhcp_new(const struct dhcp_config *cfg, struct dhcp **ret);
/* Stops every dnsmasq of this agent (SIGTERM, SIGKILL after a second). NULL-safe. */
struct dhcp *dhcp_free(struct dhcp *d);
/* Finds dnsmasq and its version, stops instances an earlier agent left running. A missing
 * dnsmasq is logged (and a readiness reason once a guest needs a lease), not fatal. */
int dhcp_start(struct dhcp *d);
/* sid's NICs are now hosts (ownership taken, also on error; n 0: none). The files of the
 * bridges concerned are rewritten and their dnsmasq reloaded, soon after (coalesced). */
int dhcp_guest_set(struct dhcp *d, const char *sid, struct dhcp_host *hosts, size_t n);
void dhcp_guest_remove(struct dhcp *d, const char *sid);
/* Every guest at once (the startup listing and every libvirt reconnection); ownership taken. */
void dhcp_guests_replace(struct dhcp *d, struct dhcp_guest *guests, size_t n);

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/hostnet.h"
#include "common/macros.h"

struct hostnets {
	struct hostnet *v;
	size_t n;
	char *access_ip;
	char *access_mac;
};

static bool ifname_valid(const char *s, size_t len)
{
	if (len == 0 || len > 15)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return false;
	}
	return true;
}

static int fail(char **ret_error, const char *entry, const char *why)
{
	if (ret_error && asprintf(ret_error, "networks entry '%s': %s", entry, why) < 0)
		*ret_error = NULL;
	return -EINVAL;
}

int hostnets_new(char *const *entries, struct hostnets **ret, char **ret_error)
{
	_cleanup_(hostnets_freep) struct hostnets *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	size_t n = strv_length(entries);
	h->v = calloc(n ? n : 1, sizeof(*h->v));
	if (!h->v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const char *e = entries[i];
		const char *s1 = strchr(e, '/');
		if (!s1)
			return fail(ret_error, e, "expected IFNAME/BRIDGE[/IP]");
		const char *s2 = strchr(s1 + 1, '/');
		size_t blen = s2 ? (size_t)(s2 - s1 - 1) : strlen(s1 + 1);
		if (!ifname_valid(e, (size_t)(s1 - e)))
			return fail(ret_error, e, "interface name is not a valid interface name");
		if (!ifname_valid(s1 + 1, blen))
			return fail(ret_error, e, "bridge name is not a valid interface name");
		struct hostnet *hn = &h->v[h->n++];
		hn->ifname = strndup(e, (size_t)(s1 - e));
		hn->bridge = strndup(s1 + 1, blen);
		if (!hn->ifname || !hn->bridge)
			return -ENOMEM;
		if (s2 && s2[1]) {
			const char *ip = s2 + 1;
			const char *slash = strchr(ip, '/');
			hn->ip = slash ? strndup(ip, (size_t)(slash - ip)) : strdup(ip);
			if (!hn->ip)
				return -ENOMEM;
			if (slash) {
				char *end;
				long m = strtol(slash + 1, &end, 10);
				if (*end || m < 1 || m > 32)
					return fail(ret_error, e, "mask length must be 1-32");
				hn->masklen = (int)m;
			}
		}
		for (size_t j = 0; j + 1 < h->n; j++)
			if (streq(h->v[j].bridge, hn->bridge))
				return fail(ret_error, e, "bridge listed twice");
	}
	*ret = TAKE_PTR(h);
	return 0;
}

struct hostnets *hostnets_free(struct hostnets *h)
{
	if (!h)
		return NULL;
	for (size_t i = 0; i < h->n; i++) {
		struct hostnet *hn = &h->v[i];
		free(hn->ifname);
		free(hn->bridge);
		free(hn->ip);
		free(hn->mac);
		free(hn->wire_id);
		free(hn->wire);
	}
	free(h->v);
	free(h->access_ip);
	free(h->access_mac);
	free(h);
	return NULL;
}

size_t hostnets_count(const struct hostnets *h)
{
	return h ? h->n : 0;
}

struct hostnet *hostnets_get(struct hostnets *h, size_t i)
{
	return h && i < h->n ? &h->v[i] : NULL;
}

const struct hostnet *hostnets_find_wire(const struct hostnets *h, const char *wire_id)
{
	for (size_t i = 0; h && !isempty(wire_id) && i < h->n; i++)
		if (streq_ptr(h->v[i].wire_id, wire_id))
			return &h->v[i];
	return NULL;
}

const struct hostnet *hostnets_find_bridge(const struct hostnets *h, const char *bridge)
{
	for (size_t i = 0; h && !isempty(bridge) && i < h->n; i++)
		if (streq(h->v[i].bridge, bridge))
			return &h->v[i];
	return NULL;
}

void hostnet_links_done(struct hostnet_links *l)
{
	for (size_t i = 0; l && i < l->n; i++)
		free(l->v[i].addrs);
	if (l) {
		free(l->v);
		*l = (struct hostnet_links){0};
	}
}

static const struct hostnet_link *link_find(const struct hostnet_links *l, const char *name)
{
	for (size_t i = 0; l && i < l->n; i++)
		if (streq(l->v[i].name, name))
			return &l->v[i];
	return NULL;
}

static int setstr(char **p, const char *v)
{
	char *c = v ? strdup(v) : NULL;
	if (v && !c)
		return -ENOMEM;
	free(*p);
	*p = c;
	return 0;
}

static int failf(char **ret_error, const struct hostnet *hn, int r, const char *fmt, ...)
    _printf_(4, 5);
static int failf(char **ret_error, const struct hostnet *hn, int r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *why = vstrprintf(fmt, ap);
	va_end(ap);
	char mask[16] = "";
	if (hn->ip && hn->masklen > 0)
		snprintf(mask, sizeof(mask), "/%d", hn->masklen);
	if (ret_error &&
	    asprintf(ret_error, "networks entry '%s/%s%s%s%s': %s", hn->ifname, hn->bridge,
		     hn->ip ? "/" : "", hn->ip ? hn->ip : "", mask, why) < 0)
		*ret_error = NULL;
	return r;
}

static bool ipv4_concrete(const char *s)
{
	struct in_addr a;
	return !isempty(s) && inet_pton(AF_INET, s, &a) == 1 && a.s_addr != htonl(INADDR_ANY);
}

int hostnets_complete(struct hostnets *h, const struct hostnet_links *links,
		      const char *listen_address, bool need_access, char **ret_error)
{
	for (size_t i = 0; i < h->n; i++) {
		struct hostnet *hn = &h->v[i];
		const struct hostnet_link *br = link_find(links, hn->bridge);
		if (!br)
			return failf(ret_error, hn, -ENODEV, "bridge %s does not exist",
				     hn->bridge);
		const struct hostnet_link *nic = link_find(links, hn->ifname);
		if (!nic)
			return failf(ret_error, hn, -ENODEV, "interface %s does not exist",
				     hn->ifname);
		hn->link_up = nic->up;
		if (isempty(br->mac))
			return failf(ret_error, hn, -EINVAL, "bridge %s has no MAC address",
				     hn->bridge);
		/* A bridge that took its MAC from ports falls back to all zeros when the last
		 * one leaves; the region would take it as the host's access_mac (and make a new
		 * admin netif of it). */
		if (streq(br->mac, "00:00:00:00:00:00"))
			return failf(
			    ret_error, hn, -EINVAL,
			    "bridge %s has no MAC address (00:00:00:00:00:00, as a bridge "
			    "whose ports all left has): give it one (ip link set %s address "
			    "...)",
			    hn->bridge, hn->bridge);
		const struct hostnet_addr *found = NULL;
		if (hn->ip) {
			struct in_addr a;
			if (inet_pton(AF_INET, hn->ip, &a) != 1)
				return failf(ret_error, hn, -EINVAL, "%s is not an IPv4 address",
					     hn->ip);
			for (size_t k = 0; k < br->n_addrs && !found; k++)
				if (streq(br->addrs[k].ip, hn->ip))
					found = &br->addrs[k];
			if (!found)
				return failf(ret_error, hn, -EINVAL,
					     "address %s is not on bridge %s", hn->ip, hn->bridge);
			if (hn->masklen && hn->masklen != found->masklen)
				return failf(ret_error, hn, -EINVAL, "bridge %s has %s/%d, not /%d",
					     hn->bridge, hn->ip, found->masklen, hn->masklen);
		} else {
			if (br->n_addrs == 0)
				return failf(
				    ret_error, hn, -EINVAL,
				    "bridge %s has no IPv4 address (give one in the entry)",
				    hn->bridge);
			found = &br->addrs[0];
		}
		if (setstr(&hn->ip, found->ip) < 0 || setstr(&hn->mac, br->mac) < 0)
			return -ENOMEM;
		hn->masklen = found->masklen;
	}
	const char *ip = NULL, *mac = NULL;
	if (h->n > 0) {
		ip = h->v[0].ip;
		mac = h->v[0].mac;
	} else if (ipv4_concrete(listen_address)) {
		for (size_t i = 0; links && i < links->n && !mac; i++)
			for (size_t k = 0; k < links->v[i].n_addrs; k++)
				if (streq(links->v[i].addrs[k].ip, listen_address)) {
					ip = listen_address;
					mac = links->v[i].mac;
					break;
				}
		if (!mac && need_access) {
			if (ret_error &&
			    asprintf(ret_error, "listen_address %s is on no interface of this host",
				     listen_address) < 0)
				*ret_error = NULL;
			return -EINVAL;
		}
	} else if (need_access) {
		if (ret_error &&
		    asprintf(ret_error, "no access address for the region: set networks "
					"(IFNAME/BRIDGE[/IP], the access network first) or a "
					"concrete listen_address") < 0)
			*ret_error = NULL;
		return -EINVAL;
	}
	if (setstr(&h->access_ip, ip) < 0 || setstr(&h->access_mac, mac) < 0)
		return -ENOMEM;
	return 0;
}

const char *hostnets_access_ip(const struct hostnets *h)
{
	return h ? h->access_ip : NULL;
}

const char *hostnets_access_mac(const struct hostnets *h)
{
	return h ? h->access_mac : NULL;
}

int hostnets_set_wire(struct hostnets *h, size_t i, const char *wire_id, const char *wire)
{
	if (!h || i >= h->n)
		return -ENOENT;
	int r = setstr(&h->v[i].wire_id, wire_id);
	return r < 0 ? r : setstr(&h->v[i].wire, wire);
}

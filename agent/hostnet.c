#include <stdio.h>
#include <stdlib.h>

#include "agent/hostnet.h"
#include "common/macros.h"

struct hostnets {
	struct hostnet *v;
	size_t n;
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

/* System boundary of agent/hostnet.c: the host's links and IPv4 addresses from rtnetlink
 * (libnl-route), so the rest is pure logic that unit tests feed with fixtures. */
#include <arpa/inet.h>
#include <net/if.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/socket.h>
#include <string.h>

#include "agent/hostnet.h"
#include "common/macros.h"

static int nl_errno(int e)
{
	return e == -NLE_NOMEM ? -ENOMEM : -EIO;
}

static int fill(struct nl_cache *links, struct nl_cache *addrs, struct hostnet_links *out)
{
	int n = nl_cache_nitems(links);
	out->v = calloc(n > 0 ? (size_t)n : 1, sizeof(*out->v));
	if (!out->v)
		return -ENOMEM;
	for (struct nl_object *o = nl_cache_get_first(links); o; o = nl_cache_get_next(o)) {
		struct rtnl_link *l = (struct rtnl_link *)o;
		const char *name = rtnl_link_get_name(l);
		if (!name || out->n >= (size_t)n)
			continue;
		struct hostnet_link *hl = &out->v[out->n++];
		snprintf(hl->name, sizeof(hl->name), "%s", name);
		struct nl_addr *mac = rtnl_link_get_addr(l);
		if (mac && nl_addr_get_family(mac) == AF_LLC && nl_addr_get_len(mac) == 6) {
			const unsigned char *b = nl_addr_get_binary_addr(mac);
			snprintf(hl->mac, sizeof(hl->mac), "%02x:%02x:%02x:%02x:%02x:%02x", b[0],
				 b[1], b[2], b[3], b[4], b[5]);
		}
		hl->up = (rtnl_link_get_flags(l) & IFF_UP) != 0;
		int ifindex = rtnl_link_get_ifindex(l);
		for (struct nl_object *p = nl_cache_get_first(addrs); p; p = nl_cache_get_next(p)) {
			struct rtnl_addr *a = (struct rtnl_addr *)p;
			struct nl_addr *local = rtnl_addr_get_local(a);
			if (rtnl_addr_get_family(a) != AF_INET ||
			    rtnl_addr_get_ifindex(a) != ifindex || !local ||
			    nl_addr_get_len(local) != 4)
				continue;
			struct hostnet_addr *v =
			    realloc(hl->addrs, (hl->n_addrs + 1) * sizeof(*hl->addrs));
			if (!v)
				return -ENOMEM;
			hl->addrs = v;
			struct hostnet_addr *ha = &v[hl->n_addrs++];
			if (!inet_ntop(AF_INET, nl_addr_get_binary_addr(local), ha->ip,
				       sizeof(ha->ip)))
				return -EINVAL;
			ha->masklen = rtnl_addr_get_prefixlen(a);
		}
	}
	return 0;
}

int hostnet_links_read(struct hostnet_links *ret)
{
	struct nl_sock *sk = nl_socket_alloc();
	if (!sk)
		return -ENOMEM;
	struct nl_cache *links = NULL, *addrs = NULL;
	struct hostnet_links out = {0};
	int r = nl_connect(sk, NETLINK_ROUTE);
	if (r >= 0)
		r = rtnl_link_alloc_cache(sk, AF_UNSPEC, &links);
	if (r >= 0)
		r = rtnl_addr_alloc_cache(sk, &addrs);
	r = r < 0 ? nl_errno(r) : fill(links, addrs, &out);
	if (addrs)
		nl_cache_free(addrs);
	if (links)
		nl_cache_free(links);
	nl_socket_free(sk);
	if (r < 0) {
		hostnet_links_done(&out);
		return r;
	}
	*ret = out;
	return 0;
}

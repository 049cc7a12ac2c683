/* dnsmasq host entries, options and command line from the guests' NICs (no I/O). */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "agent/dhcp-conf.h"
#include "common/parse.h"

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void dhcp_hosts_free(struct dhcp_host *h, size_t n)
{
	for (size_t i = 0; h && i < n; i++) {
		free(h[i].sid);
		free(h[i].bridge);
		free(h[i].hostname);
		free(h[i].gateway);
		strv_free(h[i].dns);
		free(h[i].domain);
		strv_free(h[i].routes);
	}
	free(h);
}

/* One DNS label for option 12: the first label of the descriptor's hostname, else the guest's
 * name when that is a host name (as Cloudpods' DHCP does), lower-cased; NULL when neither. */
static int host_label(const struct guest_desc *d, char **ret)
{
	const char *src = d->hostname;
	if (!src && hostname_is_valid(d->name))
		src = d->name;
	*ret = NULL;
	if (!src)
		return 0;
	size_t len = strcspn(src, ".");
	if (len == 0 || len > 63 || !isalnum((unsigned char)src[0]))
		return 0;
	/* dnsmasq reads a host entry's fields by their form: a lease time ("600", "45m") or a
	 * keyword there would not be a name. */
	size_t digits = strspn(src, "0123456789");
	if (digits == len || (digits == len - 1 && strchr("smhdwSMHDW", src[digits])) ||
	    (len == 6 && strncasecmp(src, "ignore", 6) == 0) ||
	    (len == 8 && strncasecmp(src, "infinite", 8) == 0))
		return 0;
	char *l = strndup(src, len);
	if (!l)
		return -ENOMEM;
	for (char *p = l; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	*ret = l;
	return 0;
}

static bool is_ipv4(const char *s)
{
	struct in_addr a;
	return s && inet_pton(AF_INET, s, &a) == 1;
}

static int fill_host(const char *sid, const struct guest_desc *d, const struct guest_nic *k,
		     bool is_default, struct dhcp_host *h)
{
	h->index = k->index;
	memcpy(h->mac, k->mac, sizeof(h->mac));
	snprintf(h->ip, sizeof(h->ip), "%s", k->ip);
	h->masklen = k->masklen;
	h->mtu = k->mtu;
	h->is_default = is_default;
	if (!(h->sid = strdup(sid)) || !(h->bridge = strdup(k->bridge)))
		return -ENOMEM;
	if (host_label(d, &h->hostname) < 0)
		return -ENOMEM;
	if (k->gateway && !(h->gateway = strdup(k->gateway)))
		return -ENOMEM;
	if (k->domain && !(h->domain = strdup(k->domain)))
		return -ENOMEM;
	STRV_FOREACH (a, k->dns)
		if (is_ipv4(*a) && strv_extend(&h->dns, *a) < 0)
			return -ENOMEM;
	for (size_t i = 0; i < k->n_routes; i++) {
		const struct guest_route *rt = &k->routes[i];
		char *pair = NULL;
		if (!is_ipv4(rt->prefix))
			continue;
		if (asprintf(&pair, "%s/%d,%s", rt->prefix, rt->len, rt->gateway) < 0)
			return -ENOMEM;
		if (strv_push(&h->routes, pair) < 0)
			return -ENOMEM;
	}
	return 0;
}

static bool nic_leases(const struct guest_nic *k)
{
	return is_ipv4(k->ip) && k->masklen >= 1 && k->masklen <= 32 && k->vlan <= 1;
}

int dhcp_hosts_from_desc(const char *sid, const struct guest_desc *d, struct dhcp_host **ret,
			 size_t *ret_n)
{
	size_t n = 0;
	bool any_default = false;
	for (size_t i = 0; i < d->n_nics; i++)
		if (nic_leases(&d->nics[i])) {
			n++;
			any_default |= d->nics[i].is_default;
		}
	*ret = NULL;
	*ret_n = 0;
	if (n == 0)
		return 0;
	struct dhcp_host *h = calloc(n, sizeof(*h));
	if (!h)
		return -ENOMEM;
	size_t k = 0;
	for (size_t i = 0; i < d->n_nics; i++) {
		const struct guest_nic *nic = &d->nics[i];
		if (!nic_leases(nic))
			continue;
		bool def = any_default ? nic->is_default : nic->gateway != NULL;
		if (fill_host(sid, d, nic, def, &h[k++]) < 0) {
			dhcp_hosts_free(h, k);
			return -ENOMEM;
		}
	}
	*ret = h;
	*ret_n = n;
	return 0;
}

static void subnet_of(const struct dhcp_host *h, char *buf, size_t size, char *mask,
		      size_t mask_size)
{
	struct in_addr a, m;
	inet_pton(AF_INET, h->ip, &a);
	uint32_t bits = h->masklen >= 32 ? 0xffffffffu : ~(0xffffffffu >> h->masklen);
	m.s_addr = htonl(bits);
	a.s_addr &= m.s_addr;
	char net[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &a, net, sizeof(net));
	snprintf(buf, size, "%s/%d", net, h->masklen);
	if (mask)
		inet_ntop(AF_INET, &m, mask, (socklen_t)mask_size);
}

static void broadcast_of(const struct dhcp_host *h, char *buf, size_t size)
{
	struct in_addr a;
	inet_pton(AF_INET, h->ip, &a);
	uint32_t host = h->masklen >= 32 ? 0 : 0xffffffffu >> h->masklen;
	a.s_addr |= htonl(host);
	inet_ntop(AF_INET, &a, buf, (socklen_t)size);
}

/* The tag that scopes a host's options: "h" and the MAC's hex digits. */
static void host_tag(const struct dhcp_host *h, char tag[14])
{
	size_t o = 0;
	tag[o++] = 'h';
	for (const char *p = h->mac; *p && o < 13; p++)
		if (*p != ':')
			tag[o++] = *p;
	tag[o] = 0;
}

static void write_list(FILE *f, char *const *l)
{
	for (size_t i = 0; l && l[i]; i++)
		fprintf(f, ",%s", l[i]);
}

static void render_one(FILE *hf, FILE *of, const struct dhcp_host *h)
{
	char tag[14], mask[INET_ADDRSTRLEN], bcast[INET_ADDRSTRLEN], net[32];
	host_tag(h, tag);
	subnet_of(h, net, sizeof(net), mask, sizeof(mask));
	broadcast_of(h, bcast, sizeof(bcast));
	fprintf(hf, "%s,set:%s,%s%s%s,infinite\n", h->mac, tag, h->ip, h->hostname ? "," : "",
		h->hostname ? h->hostname : "");
	fprintf(of, "tag:%s,1,%s\n", tag, mask);
	fprintf(of, "tag:%s,28,%s\n", tag, bcast);
	/* Without a router option of its own dnsmasq would offer its own address. */
	if (h->gateway && h->is_default)
		fprintf(of, "tag:%s,3,%s\n", tag, h->gateway);
	else
		fprintf(of, "tag:%s,3\n", tag);
	if (h->dns) {
		fprintf(of, "tag:%s,6", tag);
		write_list(of, h->dns);
		fputc('\n', of);
	}
	if (h->domain)
		fprintf(of, "tag:%s,15,%s\n", tag, h->domain);
	if (h->mtu > 0)
		fprintf(of, "tag:%s,26,%d\n", tag, h->mtu);
	/* A client that gets classless routes ignores the router option (RFC 3442): the default
	 * route goes with them. */
	if (h->routes) {
		fprintf(of, "tag:%s,121", tag);
		write_list(of, h->routes);
		if (h->gateway && h->is_default)
			fprintf(of, ",0.0.0.0/0,%s", h->gateway);
		fputc('\n', of);
	}
}

void dhcp_conf_done(struct dhcp_conf *c)
{
	if (!c)
		return;
	free(c->hosts);
	free(c->opts);
	strv_free(c->subnets);
	*c = (struct dhcp_conf){0};
}

int dhcp_conf_render(const struct dhcp_host *const *hosts, size_t n, struct dhcp_conf *ret)
{
	struct dhcp_conf c = {0};
	size_t hlen = 0, olen = 0;
	FILE *hf = open_memstream(&c.hosts, &hlen);
	FILE *of = open_memstream(&c.opts, &olen);
	int r = 0;
	if (!hf || !of) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const struct dhcp_host *h = hosts[i];
		bool dup = false;
		for (size_t k = 0; k < i && !dup; k++)
			dup = streq(hosts[k]->mac, h->mac) || streq(hosts[k]->ip, h->ip);
		if (dup) {
			c.skipped++;
			continue;
		}
		render_one(hf, of, h);
		char net[32];
		subnet_of(h, net, sizeof(net), NULL, 0);
		if (!strv_contains(c.subnets, net) && strv_extend(&c.subnets, net) < 0) {
			r = -ENOMEM;
			goto out;
		}
	}
out:
	if (hf && fclose(hf) != 0 && r == 0)
		r = -ENOMEM;
	if (of && fclose(of) != 0 && r == 0)
		r = -ENOMEM;
	if (r == 0 && (!c.hosts || !c.opts))
		r = -ENOMEM;
	if (r < 0) {
		dhcp_conf_done(&c);
		return r;
	}
	if (c.subnets)
		qsort(c.subnets, strv_length(c.subnets), sizeof(char *), cmp_str);
	*ret = c;
	return 0;
}

int dhcp_conf_argv(const char *dnsmasq, const char *bridge, const char *dir, char *const *subnets,
		   char ***ret)
{
	_cleanup_strv_free_ char **a = NULL;
	char *s = NULL;
#define ADD(...)                                                                                   \
	do {                                                                                       \
		if (asprintf(&s, __VA_ARGS__) < 0 || strv_push(&a, s) < 0)                         \
			return -ENOMEM;                                                            \
	} while (0)
	ADD("%s", dnsmasq);
	ADD("--keep-in-foreground");
	ADD("--conf-file=/dev/null");
	ADD("--port=0"); /* DHCP only: no DNS */
	ADD("--log-facility=-");
	ADD("--user=root");
	ADD("--interface=%s", bridge);
	ADD("--except-interface=lo");
	/* Binds to the bridge's addresses as they come and go: the bridge may get its address
	 * after dnsmasq started. */
	ADD("--bind-dynamic");
	ADD("--pid-file=%s/pid", dir);
	ADD("--dhcp-hostsfile=%s/hosts", dir);
	ADD("--dhcp-optsfile=%s/opts", dir);
	ADD("--dhcp-leasefile=%s/leases", dir);
	ADD("--dhcp-ignore=tag:!known");
	ADD("--dhcp-authoritative");
	ADD("--dhcp-no-override");
	for (size_t i = 0; subnets && subnets[i]; i++) {
		const char *const *sub = (const char *const *)&subnets[i];
		const char *slash = strchr(*sub, '/');
		if (!slash)
			return -EINVAL;
		char *end = NULL;
		long len = strtol(slash + 1, &end, 10);
		if (!end || *end || len < 1 || len > 32)
			return -EINVAL;
		struct in_addr m = {.s_addr =
					htonl(len >= 32 ? 0xffffffffu : ~(0xffffffffu >> len))};
		char mask[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &m, mask, sizeof(mask));
		ADD("--dhcp-range=%.*s,static,%s,infinite", (int)(slash - *sub), *sub, mask);
		ADD("--shared-network=%s,%.*s", bridge, (int)(slash - *sub), *sub);
	}
#undef ADD
	*ret = TAKE_PTR(a);
	return 0;
}

int dhcp_dnsmasq_version(const char *out)
{
	const char *p = out ? strstr(out, "version ") : NULL;
	if (!p)
		return -EINVAL;
	p += 8;
	char *end;
	errno = 0;
	long major = strtol(p, &end, 10);
	if (errno || end == p || *end != '.' || major < 0 || major > 100)
		return -EINVAL;
	p = end + 1;
	long minor = strtol(p, &end, 10);
	if (errno || end == p || minor < 0 || minor > 999)
		return -EINVAL;
	return (int)(major * 1000 + minor);
}

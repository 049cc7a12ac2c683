#include <arpa/inet.h>
#include <ctype.h>
#include <inttypes.h>

#include "agent/desc.h"
#include "agent/hostnet.h"
#include "common/json-util.h"
#include "common/parse.h"
#include "common/path.h"

/* Parse context: the JSON reader, the disk roots paths must stay below, and the descriptor
 * being filled (for the list parsers). */
struct ctx {
	struct ju_ctx ju;
	char *const *roots;
	struct guest_desc *desc;
};

bool guest_uuid_is_valid(const char *s)
{
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!isxdigit((unsigned char)s[i]))
			return false;
	}
	return true;
}

bool guest_ifname_is_valid(const char *s)
{
	return id_is_valid(s, GUEST_IFNAME_MAX);
}

static const char *const disk_format_names[] = {"qcow2", "raw"};
static const char *const disk_bus_names[] = {"virtio", "scsi", "sata", "ide"};

DEFINE_STRING_TABLE_TO(disk_format, enum disk_format, disk_format_names, NULL)
DEFINE_STRING_TABLE_TO(disk_bus, enum disk_bus, disk_bus_names, NULL)

static void lower(char *s)
{
	for (; s && *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* Resolves an untrusted path below the roots. */
static int confine(struct ctx *c, const char *fname, const char *path, char **ret)
{
	_cleanup_free_ char *resolved = NULL;
	int r = path_confine(c->roots, path, &resolved);
	if (r == -ENOMEM)
		return ju_oom(&c->ju);
	if (r == -EPERM)
		return ju_fail(&c->ju, "%s: %s is outside the disk roots", fname, ju_quote(path).s);
	if (r == -ENAMETOOLONG)
		return ju_fail(&c->ju, "%s: path too long", fname);
	if (r < 0)
		return ju_fail(&c->ju, "%s: invalid path %s (%s)", fname, ju_quote(path).s,
			       strerror(-r));
	*ret = TAKE_PTR(resolved);
	return 0;
}

static int get_path(struct ctx *c, const json_t *obj, const char *prefix, const char *key,
		    char **ret)
{
	const char *s;
	int r = ju_get_string(&c->ju, obj, prefix, key, false, 4095, 0, &s);
	if (r < 0)
		return r;
	if (r == 0 || !*s) {
		*ret = NULL;
		return 0;
	}
	return confine(c, ju_field(prefix, key).s, s, ret);
}

/* Target device name: prefix + a..z. */
static void make_dev(char dev[8], const char *prefix, int index)
{
	snprintf(dev, 8, "%s%c", prefix, 'a' + index);
}

static const char *bus_prefix(enum disk_bus b)
{
	switch (b) {
	case DISK_BUS_VIRTIO:
		return "vd";
	case DISK_BUS_IDE:
		return "hd";
	case DISK_BUS_SCSI:
	case DISK_BUS_SATA:
	default:
		return "sd";
	}
}

static const char *const cache_modes[] = {"none",	"writeback", "writethrough",
					  "directsync", "unsafe",    "default"};

/* Entry I of the disks against those before it. */
static int check_disk(struct ctx *c, const struct guest_desc *d, size_t i)
{
	const struct guest_disk *disk = &d->disks[i];
	for (size_t k = 0; k < i; k++) {
		const struct guest_disk *o = &d->disks[k];
		if (o->index == disk->index)
			return ju_fail(&c->ju, "disks[%zu].index: duplicate index %d", i,
				       disk->index);
		if (streq(o->disk_id, disk->disk_id))
			return ju_fail(&c->ju, "disks[%zu].disk_id: duplicate id %s", i,
				       ju_quote(disk->disk_id).s);
		if (streq(o->path, disk->path) || streq_ptr(o->image_path, disk->path))
			return ju_fail(&c->ju, "disks[%zu].path: used by disks[%zu]", i, k);
		if (disk->boot_index >= 0 && o->boot_index == disk->boot_index)
			return ju_fail(&c->ju, "disks[%zu].boot_index: duplicate %d", i,
				       disk->boot_index);
		if (streq_ptr(disk->image_path, o->path))
			return ju_fail(&c->ju, "disks[%zu].image_path: is the disk of disks[%zu]",
				       i, k);
	}
	if (streq_ptr(disk->image_path, disk->path))
		return ju_fail(&c->ju, "disks[%zu].image_path: is the disk itself", i);
	return 0;
}

static int parse_disk(struct ju_ctx *j, const json_t *v, const char *prefix, size_t i, void *items,
		      void *userdata)
{
	struct ctx *c = userdata;
	struct guest_desc *desc = c->desc;
	desc->disks = items;
	desc->n_disks = i + 1;
	struct guest_disk *d = &desc->disks[i];
	const char *s;
	int r = ju_get_string(&c->ju, v, prefix, "disk_id", true, GUEST_ID_MAX, 0, &s);
	if (r < 0)
		return r;
	if (!id_is_valid(s, GUEST_ID_MAX))
		return ju_fail(&c->ju, "%s.disk_id: invalid id %s", prefix, ju_quote(s).s);
	if ((r = ju_dup_string(&c->ju, s, &d->disk_id)) < 0)
		return r;

	int64_t n;
	if ((r = ju_get_int(&c->ju, v, prefix, "index", false, 0, GUEST_DISK_INDEX_MAX, (int64_t)i,
			    &n)) < 0)
		return r;
	d->index = (int)n;

	int e;
	if ((r = ju_get_enum(&c->ju, v, prefix, "format", disk_format_names,
			     ELEMENTSOF(disk_format_names), DISK_FORMAT_QCOW2, &e)) < 0)
		return r;
	d->format = (enum disk_format)e;
	if ((r = ju_get_enum(&c->ju, v, prefix, "driver", disk_bus_names,
			     ELEMENTSOF(disk_bus_names), DISK_BUS_VIRTIO, &e)) < 0)
		return r;
	d->bus = (enum disk_bus)e;
	if ((r = ju_get_enum(&c->ju, v, prefix, "cache_mode", cache_modes, ELEMENTSOF(cache_modes),
			     0, &e)) < 0)
		return r;
	if ((r = ju_dup_string(&c->ju, cache_modes[e], &d->cache_mode)) < 0)
		return r;

	if ((r = ju_get_int(&c->ju, v, prefix, "size", false, 1, GUEST_DISK_SIZE_MAX, 0, &n)) < 0)
		return r;
	d->size_mb = n;

	if ((r = ju_get_int(&c->ju, v, prefix, "boot_index", false, -1, GUEST_BOOT_INDEX_MAX, -1,
			    &n)) < 0)
		return r;
	d->boot_index = (int)n;

	if ((r = get_path(c, v, prefix, "image_path", &d->image_path)) < 0)
		return r;
	if ((r = get_path(c, v, prefix, "path", &d->path)) < 0)
		return r;
	if (!d->path) {
		_cleanup_free_ char *p = strjoin(c->roots[0], "/", d->disk_id);
		if (!p)
			return ju_oom(&c->ju);
		struct ju_name f = ju_field(prefix, "path");
		if ((r = confine(c, f.s, p, &d->path)) < 0)
			return r;
	}
	/* A region that never heard the cached image's path (the PUT of the image cache) sends
	 * only template_id: the image is then in the image cache of the disk's storage,
	 * <root>/image_cache/<template_id> (Cloudpods' image_cache_path). */
	if (!d->image_path &&
	    (r = ju_get_string(&c->ju, v, prefix, "template_id", false, GUEST_ID_MAX, 0, &s)) > 0 &&
	    *s) {
		if (!id_is_valid(s, GUEST_ID_MAX))
			return ju_fail(&c->ju, "%s.template_id: invalid id %s", prefix,
				       ju_quote(s).s);
		const char *root = c->roots[0];
		for (char *const *rt = c->roots; *rt; rt++) {
			size_t l = strlen(*rt);
			if (strneq(d->path, *rt, l) && d->path[l] == '/')
				root = *rt;
		}
		_cleanup_free_ char *p = strjoin(root, "/image_cache/", s);
		if (!p)
			return ju_oom(&c->ju);
		struct ju_name f = ju_field(prefix, "template_id");
		if ((r = confine(c, f.s, p, &d->image_path)) < 0)
			return r;
	} else if (r < 0)
		return r;
	if (d->image_path && d->format != DISK_FORMAT_QCOW2)
		return ju_fail(&c->ju, "%s.image_path: a backing image needs format \"qcow2\"",
			       prefix);
	if (d->size_mb == 0 && !d->image_path)
		return ju_fail(&c->ju, "%s.size: missing (required without image_path)", prefix);
	make_dev(d->dev, bus_prefix(d->bus), d->index);
	return check_disk(c, desc, i);
}

static const char *const nic_drivers[] = {"virtio", "e1000", "rtl8139", "vmxnet3"};

/* An IP address field: 1 with *ret_family AF_INET or AF_INET6, 0 when absent or empty. */
static int get_ip(struct ctx *c, const json_t *obj, const char *prefix, const char *key,
		  bool v4_only, const char **ret, int *ret_family)
{
	const char *s;
	int r = ju_get_string(&c->ju, obj, prefix, key, false, 64, 0, &s);
	if (r <= 0 || !*s)
		return r < 0 ? r : 0;
	unsigned char buf[sizeof(struct in6_addr)];
	if (inet_pton(AF_INET, s, buf) == 1)
		*ret_family = AF_INET;
	else if (!v4_only && inet_pton(AF_INET6, s, buf) == 1)
		*ret_family = AF_INET6;
	else
		return ju_fail(&c->ju, "%s: invalid %s address %s", ju_field(prefix, key).s,
			       v4_only ? "IPv4" : "IP", ju_quote(s).s);
	*ret = s;
	return 1;
}

static int ip_family(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];
	if (inet_pton(AF_INET, s, buf) == 1)
		return AF_INET;
	if (inet_pton(AF_INET6, s, buf) == 1)
		return AF_INET6;
	return 0;
}

static int add_dns(struct ctx *c, struct guest_nic *nic, const char *fname, const char *s,
		   size_t len)
{
	char ip[64];
	while (len > 0 && (*s == ' ' || *s == '\t'))
		s++, len--;
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len == 0)
		return 0;
	if (len >= sizeof(ip))
		return ju_fail(&c->ju, "%s: invalid IP address (too long)", fname);
	memcpy(ip, s, len);
	ip[len] = 0;
	if (!ip_family(ip))
		return ju_fail(&c->ju, "%s: invalid IP address %s", fname, ju_quote(ip).s);
	if (strv_length(nic->dns) >= GUEST_NIC_DNS_MAX)
		return ju_fail(&c->ju, "%s: too many DNS servers (max %d)", fname,
			       GUEST_NIC_DNS_MAX);
	if (strv_extend(&nic->dns, ip) < 0)
		return ju_oom(&c->ju);
	return 0;
}

/* "dns": the region sends one string of comma-separated addresses; a list of strings too. */
static int parse_nic_dns(struct ctx *c, const json_t *v, const char *prefix, struct guest_nic *nic)
{
	struct ju_name f = ju_field(prefix, "dns");
	json_t *d = json_object_get(v, "dns");
	int r;
	if (!d || json_is_null(d))
		return 0;
	if (json_is_string(d)) {
		const char *s = json_string_value(d);
		if ((r = ju_check_text(&c->ju, f.s, s, json_string_length(d), 1024, 0)) < 0)
			return r;
		for (const char *p = s;;) {
			const char *end = strchr(p, ',');
			size_t len = end ? (size_t)(end - p) : strlen(p);
			if ((r = add_dns(c, nic, f.s, p, len)) < 0)
				return r;
			if (!end)
				break;
			p = end + 1;
		}
		return 0;
	}
	if (!json_is_array(d))
		return ju_fail(&c->ju, "%s: expected string or array, got %s", f.s,
			       ju_type_name(d));
	size_t i;
	json_t *e;
	json_array_foreach (d, i, e) {
		char fi[sizeof(f.s) + 24];
		snprintf(fi, sizeof(fi), "%s[%zu]", f.s, i);
		if (!json_is_string(e))
			return ju_fail(&c->ju, "%s: expected string, got %s", fi, ju_type_name(e));
		if ((r = ju_check_text(&c->ju, fi, json_string_value(e), json_string_length(e), 64,
				       0)) < 0)
			return r;
		if ((r = add_dns(c, nic, fi, json_string_value(e), json_string_length(e))) < 0)
			return r;
	}
	return 0;
}

/* "routes": [["10.0.0.0/8", "192.168.1.1"], ...] (Cloudpods SRoute). The prefix is stored as
 * its network address. */
static int parse_nic_routes(struct ctx *c, const json_t *v, const char *prefix,
			    struct guest_nic *nic)
{
	struct ju_name f = ju_field(prefix, "routes");
	json_t *rs = json_object_get(v, "routes");
	if (!rs || json_is_null(rs))
		return 0;
	if (!json_is_array(rs))
		return ju_fail(&c->ju, "%s: expected array, got %s", f.s, ju_type_name(rs));
	if (json_array_size(rs) > GUEST_NIC_ROUTES_MAX)
		return ju_fail(&c->ju, "%s: too many routes (%zu, max %d)", f.s,
			       json_array_size(rs), GUEST_NIC_ROUTES_MAX);
	nic->routes = calloc(json_array_size(rs) + 1, sizeof(*nic->routes));
	if (!nic->routes)
		return ju_oom(&c->ju);
	size_t i;
	json_t *e;
	json_array_foreach (rs, i, e) {
		char fi[sizeof(f.s) + 24];
		snprintf(fi, sizeof(fi), "%s[%zu]", f.s, i);
		json_t *jp = json_array_get(e, 0), *jg = json_array_get(e, 1);
		if (!json_is_array(e) || json_array_size(e) != 2 || !json_is_string(jp) ||
		    !json_is_string(jg))
			return ju_fail(&c->ju, "%s: expected [\"PREFIX/LEN\", \"GATEWAY\"]", fi);
		const char *ps = json_string_value(jp), *gs = json_string_value(jg);
		char addr[64];
		const char *slash = strchr(ps, '/');
		size_t alen = slash ? (size_t)(slash - ps) : 0;
		unsigned char buf[sizeof(struct in6_addr)] = {0};
		int fam = 0;
		if (slash && alen < sizeof(addr)) {
			memcpy(addr, ps, alen);
			addr[alen] = 0;
			fam = ip_family(addr);
		}
		if (!fam || inet_pton(fam, addr, buf) != 1)
			return ju_fail(&c->ju, "%s: invalid prefix %s (ADDRESS/LEN)", fi,
				       ju_quote(ps).s);
		int maxlen = fam == AF_INET ? 32 : 128;
		char *end = NULL;
		errno = 0;
		long len = strtol(slash + 1, &end, 10);
		if (errno || end == slash + 1 || *end || len < 0 || len > maxlen)
			return ju_fail(&c->ju, "%s: invalid prefix length in %s", fi,
				       ju_quote(ps).s);
		if (ip_family(gs) != fam)
			return ju_fail(&c->ju, "%s: invalid gateway %s", fi, ju_quote(gs).s);
		for (int b = (int)len; b < maxlen; b++)
			buf[b / 8] &= (unsigned char)~(0x80u >> (b % 8));
		char net[INET6_ADDRSTRLEN];
		if (!inet_ntop(fam, buf, net, sizeof(net)))
			return ju_fail(&c->ju, "%s: invalid prefix %s", fi, ju_quote(ps).s);
		struct guest_route *rt = &nic->routes[i];
		nic->n_routes = i + 1;
		rt->len = (int)len;
		int r;
		if ((r = ju_dup_string(&c->ju, net, &rt->prefix)) < 0 ||
		    (r = ju_dup_string(&c->ju, gs, &rt->gateway)) < 0)
			return r;
	}
	return 0;
}

/* The rest of the region's IPAM for the NIC (DHCP): mask length, gateway, DNS, domain, routes. */
static int parse_nic_ipam(struct ctx *c, const json_t *v, const char *prefix, int family,
			  struct guest_nic *nic)
{
	int64_t n;
	int r, fam;
	const char *s;
	if ((r = ju_get_int(&c->ju, v, prefix, "masklen", false, 0, family == AF_INET6 ? 128 : 32,
			    0, &n)) < 0)
		return r;
	nic->masklen = (int)n;
	if ((r = get_ip(c, v, prefix, "gateway", true, &s, &fam)) < 0)
		return r;
	if (r > 0 && (r = ju_dup_string(&c->ju, s, &nic->gateway)) < 0)
		return r;
	if ((r = parse_nic_dns(c, v, prefix, nic)) < 0)
		return r;
	if ((r = ju_get_string(&c->ju, v, prefix, "domain", false, HOSTNAME_MAX, 0, &s)) < 0)
		return r;
	if (r > 0 && *s) {
		if (!hostname_is_valid(s))
			return ju_fail(&c->ju, "%s.domain: invalid domain name %s", prefix,
				       ju_quote(s).s);
		if ((r = ju_dup_string(&c->ju, s, &nic->domain)) < 0)
			return r;
	}
	if ((r = parse_nic_routes(c, v, prefix, nic)) < 0)
		return r;
	r = ju_get_bool(&c->ju, v, prefix, "is_default", false, &nic->is_default);
	return r < 0 ? r : 0;
}

/* Entry I of the NICs against those before it. */
static int check_nic(struct ctx *c, const struct guest_desc *d, size_t i)
{
	const struct guest_nic *nic = &d->nics[i];
	for (size_t k = 0; k < i; k++) {
		if (d->nics[k].index == nic->index)
			return ju_fail(&c->ju, "nics[%zu].index: duplicate index %d", i,
				       nic->index);
		if (streq(d->nics[k].mac, nic->mac))
			return ju_fail(&c->ju, "nics[%zu].mac: duplicate MAC %s", i, nic->mac);
		if (nic->ifname && streq_ptr(d->nics[k].ifname, nic->ifname))
			return ju_fail(&c->ju, "nics[%zu].ifname: duplicate name %s", i,
				       ju_quote(nic->ifname).s);
	}
	return 0;
}

static int parse_nic(struct ju_ctx *j, const json_t *v, const char *prefix, size_t i, void *items,
		     void *userdata)
{
	struct ctx *c = userdata;
	struct guest_desc *d = c->desc;
	d->nics = items;
	d->n_nics = i + 1;
	struct guest_nic *nic = &d->nics[i];
	int64_t n;
	int r;
	if ((r = ju_get_int(&c->ju, v, prefix, "index", false, 0, GUEST_NIC_INDEX_MAX, (int64_t)i,
			    &n)) < 0)
		return r;
	nic->index = (int)n;

	const char *s;
	if ((r = ju_get_string(&c->ju, v, prefix, "mac", true, 64, 0, &s)) < 0)
		return r;
	if (!mac_is_valid(s))
		return ju_fail(&c->ju, "%s.mac: invalid MAC %s", prefix, ju_quote(s).s);
	memcpy(nic->mac, s, 18);
	lower(nic->mac);
	unsigned first = (unsigned)strtoul(nic->mac, NULL, 16);
	if (first & 1)
		return ju_fail(&c->ju, "%s.mac: multicast MAC %s not allowed", prefix,
			       ju_quote(s).s);
	if (streq(nic->mac, "00:00:00:00:00:00"))
		return ju_fail(&c->ju, "%s.mac: all-zero MAC not allowed", prefix);

	int family = 0;
	if ((r = get_ip(c, v, prefix, "ip", false, &s, &family)) < 0)
		return r;
	if (r > 0 && (r = ju_dup_string(&c->ju, s, &nic->ip)) < 0)
		return r;
	if ((r = parse_nic_ipam(c, v, prefix, family, nic)) < 0)
		return r;

	if ((r = ju_get_string(&c->ju, v, prefix, "ifname", false, 64, 0, &s)) < 0)
		return r;
	if (r > 0 && *s) {
		if (!guest_ifname_is_valid(s))
			return ju_fail(&c->ju, "%s.ifname: invalid interface name %s", prefix,
				       ju_quote(s).s);
		if ((r = ju_dup_string(&c->ju, s, &nic->ifname)) < 0)
			return r;
	}

	if ((r = ju_get_string(&c->ju, v, prefix, "bridge", true, 64, 0, &s)) < 0)
		return r;
	if (!guest_ifname_is_valid(s))
		return ju_fail(&c->ju, "%s.bridge: invalid bridge name %s", prefix, ju_quote(s).s);
	if ((r = ju_dup_string(&c->ju, s, &nic->bridge)) < 0)
		return r;

	if ((r = ju_get_int(&c->ju, v, prefix, "vlan", false, 0, 4094, 1, &n)) < 0)
		return r;
	nic->vlan = (int)n;
	if ((r = ju_get_int(&c->ju, v, prefix, "bw", false, 0, GUEST_NIC_BW_MAX, 0, &n)) < 0)
		return r;
	nic->bw_mbps = n;
	if ((r = ju_get_int(&c->ju, v, prefix, "mtu", false, 0, 65535, 0, &n)) < 0)
		return r;
	if (n != 0 && n < 68)
		return ju_fail(&c->ju, "%s.mtu: out of range (%" PRId64 ", allowed 68..65535)",
			       prefix, n);
	nic->mtu = (int)n;

	int e;
	if ((r = ju_get_enum(&c->ju, v, prefix, "driver", nic_drivers, ELEMENTSOF(nic_drivers), 0,
			     &e)) < 0)
		return r;
	if ((r = ju_dup_string(&c->ju, nic_drivers[e], &nic->driver)) < 0)
		return r;
	return check_nic(c, d, i);
}

static int cmp_disk(const void *a, const void *b)
{
	const struct guest_disk *x = a, *y = b;
	return (x->index > y->index) - (x->index < y->index);
}

static int cmp_nic(const void *a, const void *b)
{
	const struct guest_nic *x = a, *y = b;
	return (x->index > y->index) - (x->index < y->index);
}

static int cmp_meta(const void *a, const void *b)
{
	const struct guest_meta *x = a, *y = b;
	return strcmp(x->key, y->key);
}

static bool dev_used(const struct guest_desc *d, const char *dev, size_t n_cdroms)
{
	for (size_t i = 0; i < d->n_disks; i++)
		if (streq(d->disks[i].dev, dev))
			return true;
	for (size_t i = 0; i < n_cdroms; i++)
		if (streq(d->cdroms[i].dev, dev))
			return true;
	return false;
}

static bool machine_is_q35(const char *m)
{
	return streq(m, "q35") || strneq(m, "pc-q35", 6);
}

/* CD-ROMs sit on IDE (i440fx) or SATA (q35, which has no IDE), on the first free unit from
 * hdc / sda so they never collide with a disk's target. */
static int parse_cdrom(struct ju_ctx *j, const json_t *v, const char *prefix, size_t i, void *items,
		       void *userdata)
{
	struct ctx *c = userdata;
	struct guest_desc *d = c->desc;
	d->cdroms = items;
	d->n_cdroms = i + 1;
	struct guest_cdrom *cd = &d->cdroms[i];
	int64_t n;
	int r =
	    ju_get_int(&c->ju, v, prefix, "boot_index", false, -1, GUEST_BOOT_INDEX_MAX, -1, &n);
	if (r < 0)
		return r;
	cd->boot_index = (int)n;
	if ((r = get_path(c, v, prefix, "path", &cd->path)) < 0)
		return r;
	if (cd->boot_index >= 0) {
		for (size_t k = 0; k < d->n_disks; k++)
			if (d->disks[k].boot_index == cd->boot_index)
				return ju_fail(&c->ju, "cdroms[%zu].boot_index: duplicate %d", i,
					       cd->boot_index);
		for (size_t k = 0; k < i; k++)
			if (d->cdroms[k].boot_index == cd->boot_index)
				return ju_fail(&c->ju, "cdroms[%zu].boot_index: duplicate %d", i,
					       cd->boot_index);
	}
	bool q35 = machine_is_q35(d->machine);
	int slot = q35 ? 0 : 2, last = q35 ? GUEST_DISK_INDEX_MAX : 3;
	for (; slot <= last; slot++) {
		make_dev(cd->dev, q35 ? "sd" : "hd", slot);
		if (!dev_used(d, cd->dev, i))
			break;
	}
	if (slot > last)
		return ju_fail(&c->ju, "cdroms[%zu]: no free %s unit", i, q35 ? "SATA" : "IDE");
	return 0;
}

static int parse_metadata(struct ctx *c, const json_t *j, struct guest_desc *d)
{
	json_t *m = json_object_get(j, "metadata");
	if (!m || json_is_null(m))
		return 0;
	if (!json_is_object(m))
		return ju_fail(&c->ju, "metadata: expected object, got %s", ju_type_name(m));
	size_t n = json_object_size(m);
	if (n > GUEST_META_MAX)
		return ju_fail(&c->ju, "metadata: too many entries (%zu, max %d)", n,
			       GUEST_META_MAX);
	d->metadata = calloc(n ? n : 1, sizeof(*d->metadata));
	if (!d->metadata)
		return ju_oom(&c->ju);
	const char *key;
	json_t *v;
	size_t i = 0, total = 0;
	json_object_foreach (m, key, v) {
		char fname[160];
		if (id_is_valid(key, GUEST_META_KEY_MAX))
			snprintf(fname, sizeof(fname), "metadata.%s", key);
		else
			snprintf(fname, sizeof(fname), "metadata key #%zu", i);
		int r = ju_check_text(&c->ju, fname, key, strlen(key), GUEST_META_KEY_MAX, 0);
		if (r < 0)
			return r;
		if (!*key)
			return ju_fail(&c->ju, "%s: empty key", fname);
		if (!json_is_string(v))
			return ju_fail(&c->ju, "%s: expected string, got %s", fname,
				       ju_type_name(v));
		r = ju_check_text(&c->ju, fname, json_string_value(v), json_string_length(v),
				  GUEST_META_VALUE_MAX, JU_TEXT_MULTILINE);
		if (r < 0)
			return r;
		total += strlen(key) + json_string_length(v);
		if (total > GUEST_META_TOTAL_MAX)
			return ju_fail(&c->ju,
				       "%s: metadata too large in all (over %d bytes of keys and "
				       "values)",
				       fname, GUEST_META_TOTAL_MAX);
		struct guest_meta *e = &d->metadata[i++];
		d->n_metadata = i;
		if ((r = ju_dup_string(&c->ju, key, &e->key)) < 0 ||
		    (r = ju_dup_string(&c->ju, json_string_value(v), &e->value)) < 0)
			return r;
	}
	qsort(d->metadata, d->n_metadata, sizeof(*d->metadata), cmp_meta);
	return 0;
}

static const char *const bios_names[] = {"BIOS", "UEFI"};
static const char *const vdi_names[] = {"vnc", "spice"};
/* Cloudpods names -> libvirt video models. */
static const char *const vga_names[] = {"std", "cirrus", "vmware", "qxl", "virtio", "none"};
static const char *const vga_models[] = {"vga", "cirrus", "vmvga", "qxl", "virtio", "none"};

static int parse_desc(struct ctx *c, json_t *j, struct guest_desc *d)
{
	if (!json_is_object(j))
		return ju_fail(&c->ju, "desc: expected object, got %s", ju_type_name(j));

	const char *s;
	int r = ju_get_string(&c->ju, j, NULL, "uuid", true, GUEST_ID_MAX, 0, &s);
	if (r < 0)
		return r;
	if (!guest_uuid_is_valid(s))
		return ju_fail(&c->ju, "uuid: invalid UUID %s", ju_quote(s).s);
	if ((r = ju_dup_string(&c->ju, s, &d->uuid)) < 0)
		return r;
	lower(d->uuid);

	if ((r = ju_get_string(&c->ju, j, NULL, "name", true, GUEST_NAME_MAX, 0, &s)) < 0)
		return r;
	if ((r = ju_dup_string(&c->ju, s, &d->name)) < 0)
		return r;

	if ((r = ju_get_string(&c->ju, j, NULL, "hostname", false, HOSTNAME_MAX, 0, &s)) < 0)
		return r;
	if (r > 0 && *s) {
		if (!hostname_is_valid(s))
			return ju_fail(&c->ju, "hostname: invalid host name %s", ju_quote(s).s);
		if ((r = ju_dup_string(&c->ju, s, &d->hostname)) < 0)
			return r;
	}

	int64_t n;
	if ((r = ju_get_int(&c->ju, j, NULL, "cpu", false, 1, GUEST_CPU_MAX, 1, &n)) < 0)
		return r;
	d->cpu = (int)n;
	if ((r = ju_get_int(&c->ju, j, NULL, "cpu_sockets", false, 1, GUEST_CPU_MAX, 1, &n)) < 0)
		return r;
	if (d->cpu % n != 0)
		return ju_fail(&c->ju, "cpu_sockets: %" PRId64 " does not divide cpu (%d)", n,
			       d->cpu);
	d->cpu_sockets = (int)n;
	if ((r = ju_get_int(&c->ju, j, NULL, "mem", true, 1, GUEST_MEM_MAX, 0, &n)) < 0)
		return r;
	d->mem_mb = n;

	if ((r = ju_get_string(&c->ju, j, NULL, "machine", false, GUEST_MACHINE_MAX, 0, &s)) < 0)
		return r;
	if (r > 0 && *s) {
		if (!id_is_valid(s, GUEST_MACHINE_MAX))
			return ju_fail(&c->ju, "machine: invalid machine type %s", ju_quote(s).s);
	} else
		s = "pc";
	if ((r = ju_dup_string(&c->ju, s, &d->machine)) < 0)
		return r;

	int e;
	if ((r = ju_get_enum(&c->ju, j, NULL, "bios", bios_names, ELEMENTSOF(bios_names), 0, &e)) <
	    0)
		return r;
	d->bios = (enum guest_bios)e;
	if ((r = ju_get_enum(&c->ju, j, NULL, "vdi", vdi_names, ELEMENTSOF(vdi_names), 0, &e)) < 0)
		return r;
	d->vdi = (enum guest_vdi)e;
	if ((r = ju_get_enum(&c->ju, j, NULL, "vga", vga_names, ELEMENTSOF(vga_names), 0, &e)) < 0)
		return r;
	if ((r = ju_dup_string(&c->ju, vga_models[e], &d->vga)) < 0)
		return r;

	if ((r = ju_get_string(&c->ju, j, NULL, "boot_order", false, 8, 0, &s)) < 0)
		return r;
	if (r == 0 || !*s)
		s = "cdn";
	for (const char *p = s; *p; p++)
		if (!strchr("cdn", *p) || strchr(p + 1, *p))
			return ju_fail(
			    &c->ju, "boot_order: unsupported value %s (letters c, d, n once each)",
			    ju_quote(s).s);
	if ((r = ju_dup_string(&c->ju, s, &d->boot_order)) < 0)
		return r;

	if ((r = ju_get_list(&c->ju, j, "disks", GUEST_DISKS_MAX, sizeof(*d->disks), cmp_disk,
			     parse_disk, c)) < 0 ||
	    (r = ju_get_list(&c->ju, j, "cdroms", GUEST_CDROMS_MAX, sizeof(*d->cdroms), NULL,
			     parse_cdrom, c)) < 0 ||
	    (r = ju_get_list(&c->ju, j, "nics", GUEST_NICS_MAX, sizeof(*d->nics), cmp_nic,
			     parse_nic, c)) < 0)
		return r;
	return parse_metadata(c, j, d);
}

int guest_desc_parse(json_t *j, char *const *disk_roots, struct guest_desc **ret, char **ret_error)
{
	if (!disk_roots || !disk_roots[0])
		return -EINVAL;
	_cleanup_guest_desc_ struct guest_desc *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	struct ctx c = {.roots = disk_roots, .desc = d};
	int r = ju_finish(&c.ju, parse_desc(&c, j, d), ret_error);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(d);
	return 0;
}

struct guest_desc *guest_desc_free(struct guest_desc *d)
{
	if (!d)
		return NULL;
	for (size_t i = 0; i < d->n_disks; i++) {
		free(d->disks[i].disk_id);
		free(d->disks[i].path);
		free(d->disks[i].cache_mode);
		free(d->disks[i].image_path);
	}
	free(d->disks);
	for (size_t i = 0; i < d->n_cdroms; i++)
		free(d->cdroms[i].path);
	free(d->cdroms);
	for (size_t i = 0; i < d->n_nics; i++) {
		free(d->nics[i].ip);
		free(d->nics[i].gateway);
		strv_free(d->nics[i].dns);
		free(d->nics[i].domain);
		for (size_t k = 0; k < d->nics[i].n_routes; k++) {
			free(d->nics[i].routes[k].prefix);
			free(d->nics[i].routes[k].gateway);
		}
		free(d->nics[i].routes);
		free(d->nics[i].ifname);
		free(d->nics[i].bridge);
		free(d->nics[i].driver);
	}
	free(d->nics);
	for (size_t i = 0; i < d->n_metadata; i++) {
		free(d->metadata[i].key);
		free(d->metadata[i].value);
	}
	free(d->metadata);
	free(d->uuid);
	free(d->name);
	free(d->hostname);
	free(d->machine);
	free(d->boot_order);
	free(d->vga);
	free(d);
	return NULL;
}

static const char *vga_to_cloudpods(const char *model)
{
	for (size_t i = 0; i < ELEMENTSOF(vga_models); i++)
		if (streq(model, vga_models[i]))
			return vga_names[i];
	return model;
}

/* json_pack with "s?" maps NULL to JSON null. */
static int set_path(json_t *arr, size_t i, const char *key, const char *path)
{
	json_t *o = json_array_get(arr, i);
	if (!path || !json_is_object(o))
		return 0;
	return json_object_set_new(o, key, json_string(path));
}

json_t *guest_desc_resolved_json(const json_t *j, const struct guest_desc *d)
{
	json_t *copy = json_deep_copy(j);
	if (!copy)
		return NULL;
	json_t *disks = json_object_get(copy, "disks"), *cdroms = json_object_get(copy, "cdroms");
	int r = 0;
	for (size_t i = 0; r == 0 && i < d->n_disks; i++) {
		r = set_path(disks, i, "path", d->disks[i].path);
		if (r == 0)
			r = set_path(disks, i, "image_path", d->disks[i].image_path);
	}
	for (size_t i = 0; r == 0 && i < d->n_cdroms; i++)
		r = set_path(cdroms, i, "path", d->cdroms[i].path);
	if (r < 0) {
		json_decref(copy);
		return NULL;
	}
	return copy;
}

static int check_one(const json_t *arr, size_t i, const char *kind, const char *key,
		     const char *resolved, char **ret_error)
{
	const char *stored = json_string_value(json_object_get(json_array_get(arr, i), key));
	if (!stored || stored[0] != '/' || streq_ptr(stored, resolved))
		return 0;
	if (ret_error && asprintf(ret_error, "%s[%zu].%s: %s now resolves to %s", kind, i, key,
				  stored, strempty(resolved)) < 0)
		*ret_error = NULL;
	return -EPERM;
}

int guest_desc_check_resolved(const json_t *j, const struct guest_desc *d, char **ret_error)
{
	const json_t *disks = json_object_get(j, "disks"), *cdroms = json_object_get(j, "cdroms");
	int r = 0;
	for (size_t i = 0; r == 0 && i < d->n_disks; i++) {
		r = check_one(disks, i, "disks", "path", d->disks[i].path, ret_error);
		if (r == 0 && d->disks[i].image_path)
			r = check_one(disks, i, "disks", "image_path", d->disks[i].image_path,
				      ret_error);
	}
	for (size_t i = 0; r == 0 && i < d->n_cdroms; i++)
		if (d->cdroms[i].path)
			r = check_one(cdroms, i, "cdroms", "path", d->cdroms[i].path, ret_error);
	return r;
}

json_t *guest_desc_to_json(const struct guest_desc *d)
{
	json_auto_t *disks = json_array(), *cdroms = json_array(), *nics = json_array(),
		    *meta = json_object();
	if (!disks || !cdroms || !nics || !meta)
		return NULL;
	for (size_t i = 0; i < d->n_disks; i++) {
		const struct guest_disk *k = &d->disks[i];
		json_t *o =
		    json_pack("{s:s, s:i, s:s, s:s, s:I, s:s, s:s, s:s?, s:i}", "disk_id",
			      k->disk_id, "index", k->index, "path", k->path, "format",
			      disk_format_to_string(k->format), "size", (json_int_t)k->size_mb,
			      "driver", disk_bus_to_string(k->bus), "cache_mode", k->cache_mode,
			      "image_path", k->image_path, "boot_index", k->boot_index);
		if (!o || json_array_append_new(disks, o) < 0)
			return NULL;
	}
	for (size_t i = 0; i < d->n_cdroms; i++) {
		json_t *o = json_pack("{s:s?, s:i}", "path", d->cdroms[i].path, "boot_index",
				      d->cdroms[i].boot_index);
		if (!o || json_array_append_new(cdroms, o) < 0)
			return NULL;
	}
	for (size_t i = 0; i < d->n_nics; i++) {
		const struct guest_nic *k = &d->nics[i];
		json_t *o = json_pack("{s:i, s:s, s:s?, s:s?, s:s, s:i, s:I, s:i, s:s}", "index",
				      k->index, "mac", k->mac, "ip", k->ip, "ifname", k->ifname,
				      "bridge", k->bridge, "vlan", k->vlan, "bw",
				      (json_int_t)k->bw_mbps, "mtu", k->mtu, "driver", k->driver);
		if (!o || json_array_append_new(nics, o) < 0)
			return NULL;
		json_t *dns = json_array(), *routes = json_array();
		if (json_object_set_new(o, "dns", dns) < 0 ||
		    json_object_set_new(o, "routes", routes) < 0)
			return NULL;
		STRV_FOREACH (a, k->dns)
			if (json_array_append_new(dns, json_string(*a)) < 0)
				return NULL;
		for (size_t r = 0; r < k->n_routes; r++) {
			char p[INET6_ADDRSTRLEN + 8];
			snprintf(p, sizeof(p), "%s/%d", k->routes[r].prefix, k->routes[r].len);
			if (json_array_append_new(routes,
						  json_pack("[s,s]", p, k->routes[r].gateway)) < 0)
				return NULL;
		}
		if (json_object_set_new(o, "masklen", json_integer(k->masklen)) < 0 ||
		    json_object_set_new(o, "is_default", json_boolean(k->is_default)) < 0 ||
		    (k->gateway &&
		     json_object_set_new(o, "gateway", json_string(k->gateway)) < 0) ||
		    (k->domain && json_object_set_new(o, "domain", json_string(k->domain)) < 0))
			return NULL;
	}
	for (size_t i = 0; i < d->n_metadata; i++)
		if (json_object_set_new(meta, d->metadata[i].key,
					json_string(d->metadata[i].value)) < 0)
			return NULL;
	return json_pack("{s:s, s:s, s:s?, s:i, s:i, s:I, s:s, s:s, s:s, s:s, s:s, s:O, s:O, s:O, "
			 "s:O}",
			 "uuid", d->uuid, "name", d->name, "hostname", d->hostname, "cpu", d->cpu,
			 "cpu_sockets", d->cpu_sockets, "mem", (json_int_t)d->mem_mb, "machine",
			 d->machine, "bios", bios_names[d->bios], "boot_order", d->boot_order,
			 "vga", vga_to_cloudpods(d->vga), "vdi", vdi_names[d->vdi], "disks", disks,
			 "cdroms", cdroms, "nics", nics, "metadata", meta);
}

int guest_desc_fill_bridges(json_t *desc, const struct hostnets *h, json_t **ret, char **ret_error)
{
	json_t *nics = json_object_get(desc, "nics");
	size_t i;
	json_t *nic;
	bool need = false;
	*ret = NULL;
	if (!json_is_array(nics))
		return 0; /* the parser names a bad type */
	json_array_foreach (nics, i, nic) {
		json_t *b = json_object_get(nic, "bridge");
		if (json_is_object(nic) &&
		    (!b || json_is_null(b) || (json_is_string(b) && json_string_length(b) == 0)))
			need = true;
	}
	if (!need)
		return 0;
	json_auto_t *copy = json_deep_copy(desc);
	json_t *cnics = json_object_get(copy, "nics");
	if (!copy || !cnics)
		return -ENOMEM;
	json_array_foreach (cnics, i, nic) {
		json_t *b = json_object_get(nic, "bridge");
		if (!json_is_object(nic) ||
		    (b && !json_is_null(b) && !(json_is_string(b) && json_string_length(b) == 0)))
			continue;
		const char *wire = json_string_value(json_object_get(nic, "wire_id"));
		const struct hostnet *n = wire && *wire ? hostnets_find_wire(h, wire) : NULL;
		if (!n) {
			if (ret_error) {
				char text[256];
				if (wire && *wire)
					snprintf(
					    text, sizeof(text),
					    "nics[%zu].bridge: missing, and no host network of "
					    "this host is on wire %s",
					    i, ju_quote(wire).s);
				else
					snprintf(
					    text, sizeof(text),
					    "nics[%zu].bridge: missing, and no wire_id to find "
					    "the host network by",
					    i);
				*ret_error = strdup(text);
			}
			return -EINVAL;
		}
		if (json_object_set_new(nic, "bridge", json_string(n->bridge)) < 0)
			return -ENOMEM;
	}
	*ret = TAKE_PTR(copy);
	return 0;
}

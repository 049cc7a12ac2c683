#include <arpa/inet.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <strings.h>

#include "agent/desc.h"
#include "agent/hostnet.h"
#include "common/parse.h"
#include "common/path.h"

/* Parse context: the first refusal wins and is kept as the error message. */
struct ctx {
	char *const *roots;
	char *error;
	bool oom;
};

_printf_(2, 3) static int fail(struct ctx *c, const char *fmt, ...)
{
	if (!c->error && !c->oom) {
		va_list ap;
		va_start(ap, fmt);
		if (vasprintf(&c->error, fmt, ap) < 0) {
			c->error = NULL;
			c->oom = true;
		}
		va_end(ap);
	}
	return -EINVAL;
}

static int oom(struct ctx *c)
{
	c->oom = true;
	return -ENOMEM;
}

/* A field name for messages: "uuid", "disks[1].format". */
struct fname {
	char s[96];
};

static struct fname field(const char *prefix, const char *key)
{
	struct fname f;
	if (isempty(prefix))
		snprintf(f.s, sizeof(f.s), "%s", key);
	else if (isempty(key))
		snprintf(f.s, sizeof(f.s), "%s", prefix);
	else
		snprintf(f.s, sizeof(f.s), "%s.%s", prefix, key);
	return f;
}

/* An untrusted value for messages: quoted, escaped, truncated. */
struct quoted {
	char s[96];
};

static struct quoted quote(const char *v)
{
	struct quoted q;
	size_t o = 0;
	q.s[o++] = '"';
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (o + 8 >= sizeof(q.s)) {
			memcpy(q.s + o, "...", 3);
			o += 3;
			break;
		}
		if (*p == '"' || *p == '\\') {
			q.s[o++] = '\\';
			q.s[o++] = (char)*p;
		} else if (*p < 0x20 || *p >= 0x7f)
			o += snprintf(q.s + o, sizeof(q.s) - o, "\\x%02x", *p);
		else
			q.s[o++] = (char)*p;
	}
	q.s[o++] = '"';
	q.s[o] = 0;
	return q;
}

static const char *type_name(const json_t *v)
{
	if (!v)
		return "nothing";
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "object";
	case JSON_ARRAY:
		return "array";
	case JSON_STRING:
		return "string";
	case JSON_INTEGER:
		return "integer";
	case JSON_REAL:
		return "real";
	case JSON_TRUE:
	case JSON_FALSE:
		return "boolean";
	case JSON_NULL:
	default:
		return "null";
	}
}

enum text_flags {
	TEXT_MULTILINE = 1 << 0, /* \t \n \r allowed */
};

/* Decodes one valid UTF-8 sequence (already validated) and returns its length. */
static size_t utf8_decode(const unsigned char *p, uint32_t *cp)
{
	if (p[0] < 0x80) {
		*cp = p[0];
		return 1;
	}
	if ((p[0] & 0xe0) == 0xc0) {
		*cp = ((uint32_t)(p[0] & 0x1f) << 6) | (p[1] & 0x3f);
		return 2;
	}
	if ((p[0] & 0xf0) == 0xe0) {
		*cp = ((uint32_t)(p[0] & 0x0f) << 12) | ((uint32_t)(p[1] & 0x3f) << 6) |
		      (p[2] & 0x3f);
		return 3;
	}
	*cp = ((uint32_t)(p[0] & 0x07) << 18) | ((uint32_t)(p[1] & 0x3f) << 12) |
	      ((uint32_t)(p[2] & 0x3f) << 6) | (p[3] & 0x3f);
	return 4;
}

/* Text that reaches libvirt: valid UTF-8, no NUL, only characters XML 1.0 allows. */
static int check_text(struct ctx *c, const char *fname, const char *s, size_t len, size_t max,
		      unsigned flags)
{
	if (len > max)
		return fail(c, "%s: too long (%zu bytes, max %zu)", fname, len, max);
	if (strlen(s) != len)
		return fail(c, "%s: NUL character not allowed", fname);
	if (!utf8_is_valid(s, len))
		return fail(c, "%s: invalid UTF-8", fname);
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		i += utf8_decode((const unsigned char *)s + i, &cp);
		if (cp < 0x20 || cp == 0x7f) {
			if ((flags & TEXT_MULTILINE) && (cp == '\t' || cp == '\n' || cp == '\r'))
				continue;
			return fail(c, "%s: control character not allowed", fname);
		}
		if (cp == 0xfffe || cp == 0xffff)
			return fail(c, "%s: non-character U+%04X not allowed", fname, cp);
	}
	return 0;
}

/* The value of key: 1 when present, 0 when absent or null, refused when absent and required. */
static int field_value(struct ctx *c, const json_t *obj, const struct fname *f, const char *key,
		       bool required, json_t **ret)
{
	json_t *v = json_object_get(obj, key);
	*ret = v && !json_is_null(v) ? v : NULL;
	if (*ret)
		return 1;
	return required ? fail(c, "%s: missing", f->s) : 0;
}

/* Returns 1 and the string when present, 0 when absent (or null), negative on refusal. */
static int get_string(struct ctx *c, const json_t *obj, const char *prefix, const char *key,
		      bool required, size_t max, unsigned flags, const char **ret)
{
	struct fname f = field(prefix, key);
	json_t *v;
	int r = field_value(c, obj, &f, key, required, &v);
	*ret = NULL;
	if (r <= 0)
		return r;
	if (!json_is_string(v))
		return fail(c, "%s: expected string, got %s", f.s, type_name(v));
	const char *s = json_string_value(v);
	r = check_text(c, f.s, s, json_string_length(v), max, flags);
	if (r < 0)
		return r;
	if (required && !*s)
		return fail(c, "%s: missing", f.s);
	*ret = s;
	return 1;
}

static int dup_string(struct ctx *c, const char *s, char **ret)
{
	char *d = NULL;
	if (s) {
		d = strdup(s);
		if (!d)
			return oom(c);
	}
	*ret = d;
	return 0;
}

static int get_int(struct ctx *c, const json_t *obj, const char *prefix, const char *key,
		   bool required, int64_t min, int64_t max, int64_t def, int64_t *ret)
{
	struct fname f = field(prefix, key);
	json_t *v;
	int r = field_value(c, obj, &f, key, required, &v);
	*ret = def;
	if (r <= 0)
		return r;
	if (!json_is_integer(v))
		return fail(c, "%s: expected integer, got %s", f.s, type_name(v));
	json_int_t n = json_integer_value(v);
	if (min == 1 && n < 1)
		return fail(c, "%s: must be a positive integer", f.s);
	if (min == 0 && n < 0)
		return fail(c, "%s: must not be negative", f.s);
	if (n < min || n > max)
		return fail(c,
			    "%s: out of range (%" JSON_INTEGER_FORMAT ", allowed %" PRId64
			    "..%" PRId64 ")",
			    f.s, n, min, max);
	*ret = n;
	return 1;
}

/* Maps a string to one of names (case-insensitive); returns the index. */
static int get_enum(struct ctx *c, const json_t *obj, const char *prefix, const char *key,
		    const char *const *names, size_t n, int def, int *ret)
{
	const char *s;
	int r = get_string(c, obj, prefix, key, false, 64, 0, &s);
	if (r < 0)
		return r;
	if (r == 0 || !*s) {
		*ret = def;
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(s, names[i]) == 0) {
			*ret = (int)i;
			return 1;
		}
	return fail(c, "%s: unsupported value %s", field(prefix, key).s, quote(s).s);
}

bool guest_hostname_is_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0, label = 0;
	if (n == 0 || n > GUEST_HOSTNAME_MAX)
		return false;
	for (size_t i = 0; i <= n; i++) {
		char ch = s[i];
		if (ch == '.' || ch == 0) {
			if (label == 0 || label > 63 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!isalnum((unsigned char)ch) && ch != '-' && ch != '_')
			return false;
		if (label == 0 && ch == '-')
			return false;
		label++;
	}
	return true;
}

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
		return oom(c);
	if (r == -EPERM)
		return fail(c, "%s: %s is outside the disk roots", fname, quote(path).s);
	if (r == -ENAMETOOLONG)
		return fail(c, "%s: path too long", fname);
	if (r < 0)
		return fail(c, "%s: invalid path %s (%s)", fname, quote(path).s, strerror(-r));
	*ret = TAKE_PTR(resolved);
	return 0;
}

static int get_path(struct ctx *c, const json_t *obj, const char *prefix, const char *key,
		    char **ret)
{
	const char *s;
	int r = get_string(c, obj, prefix, key, false, 4095, 0, &s);
	if (r < 0)
		return r;
	if (r == 0 || !*s) {
		*ret = NULL;
		return 0;
	}
	return confine(c, field(prefix, key).s, s, ret);
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

static int check_object(struct ctx *c, const json_t *v, const char *fname)
{
	if (!json_is_object(v))
		return fail(c, "%s: expected object, got %s", fname, type_name(v));
	return 0;
}

static int get_array(struct ctx *c, const json_t *obj, const char *key, size_t max, json_t **ret)
{
	json_t *v = json_object_get(obj, key);
	if (!v || json_is_null(v)) {
		*ret = NULL;
		return 0;
	}
	if (!json_is_array(v))
		return fail(c, "%s: expected array, got %s", key, type_name(v));
	if (json_array_size(v) > max)
		return fail(c, "%s: too many entries (%zu, max %zu)", key, json_array_size(v), max);
	*ret = v;
	return 0;
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
			return fail(c, "disks[%zu].index: duplicate index %d", i, disk->index);
		if (streq(o->disk_id, disk->disk_id))
			return fail(c, "disks[%zu].disk_id: duplicate id %s", i,
				    quote(disk->disk_id).s);
		if (streq(o->path, disk->path) || streq_ptr(o->image_path, disk->path))
			return fail(c, "disks[%zu].path: used by disks[%zu]", i, k);
		if (disk->boot_index >= 0 && o->boot_index == disk->boot_index)
			return fail(c, "disks[%zu].boot_index: duplicate %d", i, disk->boot_index);
		if (streq_ptr(disk->image_path, o->path))
			return fail(c, "disks[%zu].image_path: is the disk of disks[%zu]", i, k);
	}
	if (streq_ptr(disk->image_path, disk->path))
		return fail(c, "disks[%zu].image_path: is the disk itself", i);
	return 0;
}

static int parse_disk(struct ctx *c, const json_t *v, const char *prefix, size_t i, void *items,
		      struct guest_desc *desc)
{
	desc->disks = items;
	desc->n_disks = i + 1;
	struct guest_disk *d = &desc->disks[i];
	const char *s;
	int r = get_string(c, v, prefix, "disk_id", true, GUEST_ID_MAX, 0, &s);
	if (r < 0)
		return r;
	if (!id_is_valid(s, GUEST_ID_MAX))
		return fail(c, "%s.disk_id: invalid id %s", prefix, quote(s).s);
	if ((r = dup_string(c, s, &d->disk_id)) < 0)
		return r;

	int64_t n;
	if ((r = get_int(c, v, prefix, "index", false, 0, GUEST_DISK_INDEX_MAX, (int64_t)i, &n)) <
	    0)
		return r;
	d->index = (int)n;

	int e;
	if ((r = get_enum(c, v, prefix, "format", disk_format_names, ELEMENTSOF(disk_format_names),
			  DISK_FORMAT_QCOW2, &e)) < 0)
		return r;
	d->format = (enum disk_format)e;
	if ((r = get_enum(c, v, prefix, "driver", disk_bus_names, ELEMENTSOF(disk_bus_names),
			  DISK_BUS_VIRTIO, &e)) < 0)
		return r;
	d->bus = (enum disk_bus)e;
	if ((r = get_enum(c, v, prefix, "cache_mode", cache_modes, ELEMENTSOF(cache_modes), 0,
			  &e)) < 0)
		return r;
	if ((r = dup_string(c, cache_modes[e], &d->cache_mode)) < 0)
		return r;

	if ((r = get_int(c, v, prefix, "size", false, 1, GUEST_DISK_SIZE_MAX, 0, &n)) < 0)
		return r;
	d->size_mb = n;

	if ((r = get_int(c, v, prefix, "boot_index", false, -1, GUEST_BOOT_INDEX_MAX, -1, &n)) < 0)
		return r;
	d->boot_index = (int)n;

	if ((r = get_path(c, v, prefix, "image_path", &d->image_path)) < 0)
		return r;
	if ((r = get_path(c, v, prefix, "path", &d->path)) < 0)
		return r;
	if (!d->path) {
		_cleanup_free_ char *p = strjoin(c->roots[0], "/", d->disk_id);
		if (!p)
			return oom(c);
		struct fname f = field(prefix, "path");
		if ((r = confine(c, f.s, p, &d->path)) < 0)
			return r;
	}
	/* A region that never heard the cached image's path (the PUT of the image cache) sends
	 * only template_id: the image is then in the image cache of the disk's storage,
	 * <root>/image_cache/<template_id> (Cloudpods' image_cache_path). */
	if (!d->image_path &&
	    (r = get_string(c, v, prefix, "template_id", false, GUEST_ID_MAX, 0, &s)) > 0 && *s) {
		if (!id_is_valid(s, GUEST_ID_MAX))
			return fail(c, "%s.template_id: invalid id %s", prefix, quote(s).s);
		const char *root = c->roots[0];
		for (char *const *rt = c->roots; *rt; rt++) {
			size_t l = strlen(*rt);
			if (strneq(d->path, *rt, l) && d->path[l] == '/')
				root = *rt;
		}
		_cleanup_free_ char *p = strjoin(root, "/image_cache/", s);
		if (!p)
			return oom(c);
		struct fname f = field(prefix, "template_id");
		if ((r = confine(c, f.s, p, &d->image_path)) < 0)
			return r;
	} else if (r < 0)
		return r;
	if (d->image_path && d->format != DISK_FORMAT_QCOW2)
		return fail(c, "%s.image_path: a backing image needs format \"qcow2\"", prefix);
	if (d->size_mb == 0 && !d->image_path)
		return fail(c, "%s.size: missing (required without image_path)", prefix);
	make_dev(d->dev, bus_prefix(d->bus), d->index);
	return check_disk(c, desc, i);
}

static const char *const nic_drivers[] = {"virtio", "e1000", "rtl8139", "vmxnet3"};

/* An IP address field: 1 with *ret_family AF_INET or AF_INET6, 0 when absent or empty. */
static int get_ip(struct ctx *c, const json_t *obj, const char *prefix, const char *key,
		  bool v4_only, const char **ret, int *ret_family)
{
	const char *s;
	int r = get_string(c, obj, prefix, key, false, 64, 0, &s);
	if (r <= 0 || !*s)
		return r < 0 ? r : 0;
	unsigned char buf[sizeof(struct in6_addr)];
	if (inet_pton(AF_INET, s, buf) == 1)
		*ret_family = AF_INET;
	else if (!v4_only && inet_pton(AF_INET6, s, buf) == 1)
		*ret_family = AF_INET6;
	else
		return fail(c, "%s: invalid %s address %s", field(prefix, key).s,
			    v4_only ? "IPv4" : "IP", quote(s).s);
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
		return fail(c, "%s: invalid IP address (too long)", fname);
	memcpy(ip, s, len);
	ip[len] = 0;
	if (!ip_family(ip))
		return fail(c, "%s: invalid IP address %s", fname, quote(ip).s);
	if (strv_length(nic->dns) >= GUEST_NIC_DNS_MAX)
		return fail(c, "%s: too many DNS servers (max %d)", fname, GUEST_NIC_DNS_MAX);
	if (strv_extend(&nic->dns, ip) < 0)
		return oom(c);
	return 0;
}

/* "dns": the region sends one string of comma-separated addresses; a list of strings too. */
static int parse_nic_dns(struct ctx *c, const json_t *v, const char *prefix, struct guest_nic *nic)
{
	struct fname f = field(prefix, "dns");
	json_t *d = json_object_get(v, "dns");
	int r;
	if (!d || json_is_null(d))
		return 0;
	if (json_is_string(d)) {
		const char *s = json_string_value(d);
		if ((r = check_text(c, f.s, s, json_string_length(d), 1024, 0)) < 0)
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
		return fail(c, "%s: expected string or array, got %s", f.s, type_name(d));
	size_t i;
	json_t *e;
	json_array_foreach (d, i, e) {
		char fi[sizeof(f.s) + 24];
		snprintf(fi, sizeof(fi), "%s[%zu]", f.s, i);
		if (!json_is_string(e))
			return fail(c, "%s: expected string, got %s", fi, type_name(e));
		if ((r = check_text(c, fi, json_string_value(e), json_string_length(e), 64, 0)) < 0)
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
	struct fname f = field(prefix, "routes");
	json_t *rs = json_object_get(v, "routes");
	if (!rs || json_is_null(rs))
		return 0;
	if (!json_is_array(rs))
		return fail(c, "%s: expected array, got %s", f.s, type_name(rs));
	if (json_array_size(rs) > GUEST_NIC_ROUTES_MAX)
		return fail(c, "%s: too many routes (%zu, max %d)", f.s, json_array_size(rs),
			    GUEST_NIC_ROUTES_MAX);
	nic->routes = calloc(json_array_size(rs) + 1, sizeof(*nic->routes));
	if (!nic->routes)
		return oom(c);
	size_t i;
	json_t *e;
	json_array_foreach (rs, i, e) {
		char fi[sizeof(f.s) + 24];
		snprintf(fi, sizeof(fi), "%s[%zu]", f.s, i);
		json_t *jp = json_array_get(e, 0), *jg = json_array_get(e, 1);
		if (!json_is_array(e) || json_array_size(e) != 2 || !json_is_string(jp) ||
		    !json_is_string(jg))
			return fail(c, "%s: expected [\"PREFIX/LEN\", \"GATEWAY\"]", fi);
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
			return fail(c, "%s: invalid prefix %s (ADDRESS/LEN)", fi, quote(ps).s);
		int maxlen = fam == AF_INET ? 32 : 128;
		char *end = NULL;
		errno = 0;
		long len = strtol(slash + 1, &end, 10);
		if (errno || end == slash + 1 || *end || len < 0 || len > maxlen)
			return fail(c, "%s: invalid prefix length in %s", fi, quote(ps).s);
		if (ip_family(gs) != fam)
			return fail(c, "%s: invalid gateway %s", fi, quote(gs).s);
		for (int b = (int)len; b < maxlen; b++)
			buf[b / 8] &= (unsigned char)~(0x80u >> (b % 8));
		char net[INET6_ADDRSTRLEN];
		if (!inet_ntop(fam, buf, net, sizeof(net)))
			return fail(c, "%s: invalid prefix %s", fi, quote(ps).s);
		struct guest_route *rt = &nic->routes[i];
		nic->n_routes = i + 1;
		rt->len = (int)len;
		int r;
		if ((r = dup_string(c, net, &rt->prefix)) < 0 ||
		    (r = dup_string(c, gs, &rt->gateway)) < 0)
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
	if ((r = get_int(c, v, prefix, "masklen", false, 0, family == AF_INET6 ? 128 : 32, 0, &n)) <
	    0)
		return r;
	nic->masklen = (int)n;
	if ((r = get_ip(c, v, prefix, "gateway", true, &s, &fam)) < 0)
		return r;
	if (r > 0 && (r = dup_string(c, s, &nic->gateway)) < 0)
		return r;
	if ((r = parse_nic_dns(c, v, prefix, nic)) < 0)
		return r;
	if ((r = get_string(c, v, prefix, "domain", false, GUEST_HOSTNAME_MAX, 0, &s)) < 0)
		return r;
	if (r > 0 && *s) {
		if (!guest_hostname_is_valid(s))
			return fail(c, "%s.domain: invalid domain name %s", prefix, quote(s).s);
		if ((r = dup_string(c, s, &nic->domain)) < 0)
			return r;
	}
	if ((r = parse_nic_routes(c, v, prefix, nic)) < 0)
		return r;
	json_t *d = json_object_get(v, "is_default");
	if (d && !json_is_null(d) && !json_is_boolean(d))
		return fail(c, "%s.is_default: expected boolean, got %s", prefix, type_name(d));
	nic->is_default = json_is_true(d);
	return 0;
}

/* Entry I of the NICs against those before it. */
static int check_nic(struct ctx *c, const struct guest_desc *d, size_t i)
{
	const struct guest_nic *nic = &d->nics[i];
	for (size_t k = 0; k < i; k++) {
		if (d->nics[k].index == nic->index)
			return fail(c, "nics[%zu].index: duplicate index %d", i, nic->index);
		if (streq(d->nics[k].mac, nic->mac))
			return fail(c, "nics[%zu].mac: duplicate MAC %s", i, nic->mac);
		if (nic->ifname && streq_ptr(d->nics[k].ifname, nic->ifname))
			return fail(c, "nics[%zu].ifname: duplicate name %s", i,
				    quote(nic->ifname).s);
	}
	return 0;
}

static int parse_nic(struct ctx *c, const json_t *v, const char *prefix, size_t i, void *items,
		     struct guest_desc *d)
{
	d->nics = items;
	d->n_nics = i + 1;
	struct guest_nic *nic = &d->nics[i];
	int64_t n;
	int r;
	if ((r = get_int(c, v, prefix, "index", false, 0, GUEST_NIC_INDEX_MAX, (int64_t)i, &n)) < 0)
		return r;
	nic->index = (int)n;

	const char *s;
	if ((r = get_string(c, v, prefix, "mac", true, 64, 0, &s)) < 0)
		return r;
	if (!mac_is_valid(s))
		return fail(c, "%s.mac: invalid MAC %s", prefix, quote(s).s);
	memcpy(nic->mac, s, 18);
	lower(nic->mac);
	unsigned first = (unsigned)strtoul(nic->mac, NULL, 16);
	if (first & 1)
		return fail(c, "%s.mac: multicast MAC %s not allowed", prefix, quote(s).s);
	if (streq(nic->mac, "00:00:00:00:00:00"))
		return fail(c, "%s.mac: all-zero MAC not allowed", prefix);

	int family = 0;
	if ((r = get_ip(c, v, prefix, "ip", false, &s, &family)) < 0)
		return r;
	if (r > 0 && (r = dup_string(c, s, &nic->ip)) < 0)
		return r;
	if ((r = parse_nic_ipam(c, v, prefix, family, nic)) < 0)
		return r;

	if ((r = get_string(c, v, prefix, "ifname", false, 64, 0, &s)) < 0)
		return r;
	if (r > 0 && *s) {
		if (!guest_ifname_is_valid(s))
			return fail(c, "%s.ifname: invalid interface name %s", prefix, quote(s).s);
		if ((r = dup_string(c, s, &nic->ifname)) < 0)
			return r;
	}

	if ((r = get_string(c, v, prefix, "bridge", true, 64, 0, &s)) < 0)
		return r;
	if (!guest_ifname_is_valid(s))
		return fail(c, "%s.bridge: invalid bridge name %s", prefix, quote(s).s);
	if ((r = dup_string(c, s, &nic->bridge)) < 0)
		return r;

	if ((r = get_int(c, v, prefix, "vlan", false, 0, 4094, 1, &n)) < 0)
		return r;
	nic->vlan = (int)n;
	if ((r = get_int(c, v, prefix, "bw", false, 0, GUEST_NIC_BW_MAX, 0, &n)) < 0)
		return r;
	nic->bw_mbps = n;
	if ((r = get_int(c, v, prefix, "mtu", false, 0, 65535, 0, &n)) < 0)
		return r;
	if (n != 0 && n < 68)
		return fail(c, "%s.mtu: out of range (%" PRId64 ", allowed 68..65535)", prefix, n);
	nic->mtu = (int)n;

	int e;
	if ((r = get_enum(c, v, prefix, "driver", nic_drivers, ELEMENTSOF(nic_drivers), 0, &e)) < 0)
		return r;
	if ((r = dup_string(c, nic_drivers[e], &nic->driver)) < 0)
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

/* Parses the array KEY of J (at most MAX entries of SIZE bytes each) by calling ITEM on each
 * object entry in turn, then sorts the entries with CMP (when set). ITEM gets the entry's name
 * for messages ("disks[1]") and the new array, and first stores the array and the count I + 1
 * in D (so that guest_desc_free() frees what is parsed so far), then parses entry I. */
typedef int (*parse_item_fn)(struct ctx *c, const json_t *v, const char *prefix, size_t i,
			     void *items, struct guest_desc *d);

static int parse_items(struct ctx *c, const json_t *j, const char *key, size_t max, size_t size,
		       int (*cmp)(const void *, const void *), struct guest_desc *d,
		       parse_item_fn item)
{
	json_t *arr = NULL;
	int r = get_array(c, j, key, max, &arr);
	if (r < 0 || !arr)
		return r;
	size_t n = json_array_size(arr);
	if (n == 0)
		return 0;
	void *items = calloc(n, size);
	if (!items)
		return oom(c);
	for (size_t i = 0; i < n; i++) {
		char prefix[32];
		snprintf(prefix, sizeof(prefix), "%s[%zu]", key, i);
		const json_t *v = json_array_get(arr, i);
		if ((r = check_object(c, v, prefix)) < 0) {
			if (i == 0)
				free(items); /* not handed to D yet */
			return r;
		}
		if ((r = item(c, v, prefix, i, items, d)) < 0)
			return r;
	}
	if (cmp)
		qsort(items, n, size, cmp);
	return 0;
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
static int parse_cdrom(struct ctx *c, const json_t *v, const char *prefix, size_t i, void *items,
		       struct guest_desc *d)
{
	d->cdroms = items;
	d->n_cdroms = i + 1;
	struct guest_cdrom *cd = &d->cdroms[i];
	int64_t n;
	int r = get_int(c, v, prefix, "boot_index", false, -1, GUEST_BOOT_INDEX_MAX, -1, &n);
	if (r < 0)
		return r;
	cd->boot_index = (int)n;
	if ((r = get_path(c, v, prefix, "path", &cd->path)) < 0)
		return r;
	if (cd->boot_index >= 0) {
		for (size_t k = 0; k < d->n_disks; k++)
			if (d->disks[k].boot_index == cd->boot_index)
				return fail(c, "cdroms[%zu].boot_index: duplicate %d", i,
					    cd->boot_index);
		for (size_t k = 0; k < i; k++)
			if (d->cdroms[k].boot_index == cd->boot_index)
				return fail(c, "cdroms[%zu].boot_index: duplicate %d", i,
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
		return fail(c, "cdroms[%zu]: no free %s unit", i, q35 ? "SATA" : "IDE");
	return 0;
}

static int parse_metadata(struct ctx *c, const json_t *j, struct guest_desc *d)
{
	json_t *m = json_object_get(j, "metadata");
	if (!m || json_is_null(m))
		return 0;
	if (!json_is_object(m))
		return fail(c, "metadata: expected object, got %s", type_name(m));
	size_t n = json_object_size(m);
	if (n > GUEST_META_MAX)
		return fail(c, "metadata: too many entries (%zu, max %d)", n, GUEST_META_MAX);
	d->metadata = calloc(n ? n : 1, sizeof(*d->metadata));
	if (!d->metadata)
		return oom(c);
	const char *key;
	json_t *v;
	size_t i = 0, total = 0;
	json_object_foreach (m, key, v) {
		char fname[160];
		if (id_is_valid(key, GUEST_META_KEY_MAX))
			snprintf(fname, sizeof(fname), "metadata.%s", key);
		else
			snprintf(fname, sizeof(fname), "metadata key #%zu", i);
		int r = check_text(c, fname, key, strlen(key), GUEST_META_KEY_MAX, 0);
		if (r < 0)
			return r;
		if (!*key)
			return fail(c, "%s: empty key", fname);
		if (!json_is_string(v))
			return fail(c, "%s: expected string, got %s", fname, type_name(v));
		r = check_text(c, fname, json_string_value(v), json_string_length(v),
			       GUEST_META_VALUE_MAX, TEXT_MULTILINE);
		if (r < 0)
			return r;
		total += strlen(key) + json_string_length(v);
		if (total > GUEST_META_TOTAL_MAX)
			return fail(c,
				    "%s: metadata too large in all (over %d bytes of keys and "
				    "values)",
				    fname, GUEST_META_TOTAL_MAX);
		struct guest_meta *e = &d->metadata[i++];
		d->n_metadata = i;
		if ((r = dup_string(c, key, &e->key)) < 0 ||
		    (r = dup_string(c, json_string_value(v), &e->value)) < 0)
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
		return fail(c, "desc: expected object, got %s", type_name(j));

	const char *s;
	int r = get_string(c, j, NULL, "uuid", true, GUEST_ID_MAX, 0, &s);
	if (r < 0)
		return r;
	if (!guest_uuid_is_valid(s))
		return fail(c, "uuid: invalid UUID %s", quote(s).s);
	if ((r = dup_string(c, s, &d->uuid)) < 0)
		return r;
	lower(d->uuid);

	if ((r = get_string(c, j, NULL, "name", true, GUEST_NAME_MAX, 0, &s)) < 0)
		return r;
	if ((r = dup_string(c, s, &d->name)) < 0)
		return r;

	if ((r = get_string(c, j, NULL, "hostname", false, GUEST_HOSTNAME_MAX, 0, &s)) < 0)
		return r;
	if (r > 0 && *s) {
		if (!guest_hostname_is_valid(s))
			return fail(c, "hostname: invalid host name %s", quote(s).s);
		if ((r = dup_string(c, s, &d->hostname)) < 0)
			return r;
	}

	int64_t n;
	if ((r = get_int(c, j, NULL, "cpu", false, 1, GUEST_CPU_MAX, 1, &n)) < 0)
		return r;
	d->cpu = (int)n;
	if ((r = get_int(c, j, NULL, "cpu_sockets", false, 1, GUEST_CPU_MAX, 1, &n)) < 0)
		return r;
	if (d->cpu % n != 0)
		return fail(c, "cpu_sockets: %" PRId64 " does not divide cpu (%d)", n, d->cpu);
	d->cpu_sockets = (int)n;
	if ((r = get_int(c, j, NULL, "mem", true, 1, GUEST_MEM_MAX, 0, &n)) < 0)
		return r;
	d->mem_mb = n;

	if ((r = get_string(c, j, NULL, "machine", false, GUEST_MACHINE_MAX, 0, &s)) < 0)
		return r;
	if (r > 0 && *s) {
		if (!id_is_valid(s, GUEST_MACHINE_MAX))
			return fail(c, "machine: invalid machine type %s", quote(s).s);
	} else
		s = "pc";
	if ((r = dup_string(c, s, &d->machine)) < 0)
		return r;

	int e;
	if ((r = get_enum(c, j, NULL, "bios", bios_names, ELEMENTSOF(bios_names), 0, &e)) < 0)
		return r;
	d->bios = (enum guest_bios)e;
	if ((r = get_enum(c, j, NULL, "vdi", vdi_names, ELEMENTSOF(vdi_names), 0, &e)) < 0)
		return r;
	d->vdi = (enum guest_vdi)e;
	if ((r = get_enum(c, j, NULL, "vga", vga_names, ELEMENTSOF(vga_names), 0, &e)) < 0)
		return r;
	if ((r = dup_string(c, vga_models[e], &d->vga)) < 0)
		return r;

	if ((r = get_string(c, j, NULL, "boot_order", false, 8, 0, &s)) < 0)
		return r;
	if (r == 0 || !*s)
		s = "cdn";
	for (const char *p = s; *p; p++)
		if (!strchr("cdn", *p) || strchr(p + 1, *p))
			return fail(c,
				    "boot_order: unsupported value %s (letters c, d, n once each)",
				    quote(s).s);
	if ((r = dup_string(c, s, &d->boot_order)) < 0)
		return r;

	if ((r = parse_items(c, j, "disks", GUEST_DISKS_MAX, sizeof(*d->disks), cmp_disk, d,
			     parse_disk)) < 0 ||
	    (r = parse_items(c, j, "cdroms", GUEST_CDROMS_MAX, sizeof(*d->cdroms), NULL, d,
			     parse_cdrom)) < 0 ||
	    (r = parse_items(c, j, "nics", GUEST_NICS_MAX, sizeof(*d->nics), cmp_nic, d,
			     parse_nic)) < 0)
		return r;
	return parse_metadata(c, j, d);
}

int guest_desc_parse(json_t *j, char *const *disk_roots, struct guest_desc **ret, char **ret_error)
{
	if (!disk_roots || !disk_roots[0])
		return -EINVAL;
	struct ctx c = {.roots = disk_roots};
	_cleanup_guest_desc_ struct guest_desc *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	int r = parse_desc(&c, j, d);
	if (c.oom) {
		free(c.error);
		return -ENOMEM;
	}
	if (r < 0) {
		if (ret_error)
			*ret_error = TAKE_PTR(c.error);
		free(c.error);
		return r;
	}
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
					    i, quote(wire).s);
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

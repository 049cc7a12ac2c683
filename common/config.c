#include <ctype.h>
#include <stdarg.h>
#include <yaml.h>

#include "common/config.h"
#include "common/fs.h"
#include "common/macros.h"
#include "common/parse.h"

enum key_type {
	KEY_STRING,
	KEY_INT,
	KEY_BOOL,
	KEY_ENUM,
	KEY_STRLIST,
	KEY_MODULES,
};

struct key_def {
	const char *name;
	enum key_type type;
	size_t offset;
	int min, max;		   /* KEY_INT */
	const char *const *values; /* KEY_ENUM, NULL-terminated */
	bool secret;
	bool path; /* must be absolute when set */
	const char *doc;
};

static const char *const endpoint_types[] = {"internal", "public", "admin", NULL};
static const char *const log_levels[] = {"debug", "info", "notice", "warning", "error", NULL};
static const char *const log_formats[] = {"text", "json", NULL};
static const char *const cpu_modes[] = {"default", "host-passthrough", "host-model", NULL};
static const char *const virt_types[] = {"kvm", "qemu", NULL};

#define OFF(f) offsetof(struct config, f)
static const struct key_def keys[] = {
    {"listen_address", KEY_STRING, OFF(listen_address), .doc = "API listen address"},
    {"port", KEY_INT, OFF(port), 0, 65535, .doc = "API port (0: any free port)"},
    {"servers_path", KEY_STRING, OFF(servers_path), .path = true, .doc = "guest workspaces"},
    {"local_image_path", KEY_STRLIST, OFF(local_image_path), .path = true,
     .doc = "disk roots; every disk path must lie below one"},
    {"networks", KEY_STRLIST, OFF(networks),
     .doc = "host networks IFNAME/BRIDGE[/IP] (Cloudpods host.conf); the first is the access one"},
    {"state_dir", KEY_STRING, OFF(state_dir), .path = true, .doc = "outbox and token file"},
    {"libvirt_uri", KEY_STRING, OFF(libvirt_uri), .doc = "libvirt connection URI"},
    {"admin_socket", KEY_STRING, OFF(admin_socket), .path = true,
     .doc = "local admin socket (0600) for hostctl"},
    {"api_token_file", KEY_STRING, OFF(api_token_file), .path = true,
     .doc = "standalone API token file (default <state_dir>/api-token)"},
    {"tls_cert_file", KEY_STRING, OFF(tls_cert_file), .path = true, .doc = "TLS certificate"},
    {"tls_key_file", KEY_STRING, OFF(tls_key_file), .path = true, .doc = "TLS private key"},
    {"auth_url", KEY_STRING, OFF(auth_url), .doc = "keystone v3 URL; empty = standalone"},
    {"admin_user", KEY_STRING, OFF(admin_user), .doc = "keystone user"},
    {"admin_password", KEY_STRING, OFF(admin_password), .secret = true, .doc = "keystone password"},
    {"admin_domain", KEY_STRING, OFF(admin_domain), .doc = "keystone user domain"},
    {"admin_project", KEY_STRING, OFF(admin_project), .doc = "keystone project"},
    {"admin_project_domain", KEY_STRING, OFF(admin_project_domain),
     .doc = "keystone project domain"},
    {"region", KEY_STRING, OFF(region), .doc = "region name in the catalog"},
    {"zone", KEY_STRING, OFF(zone), .doc = "zone the host registers in"},
    {"session_endpoint_type", KEY_ENUM, OFF(session_endpoint_type), .values = endpoint_types,
     .doc = "catalog interface"},
    {"ping_region_interval", KEY_INT, OFF(ping_region_interval), 5, 3600,
     .doc = "heartbeat seconds"},
    {"kernel_modules", KEY_MODULES, OFF(kernel_modules), .doc = "list of {name, params, required}"},
    {"modules_dir", KEY_STRING, OFF(modules_dir), .path = true,
     .doc = "module tree (default /lib/modules/$(uname -r))"},
    {"modprobe_fallback", KEY_BOOL, OFF(modprobe_fallback),
     .doc = "without a module tree, run modprobe in the host's mount namespace"},
    {"modules_host_pid", KEY_INT, OFF(modules_host_pid), 1, 4194304,
     .doc = "host process whose namespaces modprobe runs in"},
    {"log_level", KEY_ENUM, OFF(log_level), .values = log_levels, .doc = "log level"},
    {"log_format", KEY_ENUM, OFF(log_format), .values = log_formats, .doc = "text or json"},
    {"cpu_mode", KEY_ENUM, OFF(cpu_mode), .values = cpu_modes,
     .doc = "guest CPU model: default (hypervisor's), host-passthrough, host-model"},
    {"virt_type", KEY_ENUM, OFF(virt_type), .values = virt_types,
     .doc = "libvirt domain type: kvm, or qemu (TCG) where KVM cannot run guests"},
    {"qemu_user", KEY_STRING, OFF(qemu_user),
     .doc = "user QEMU runs as (libvirt qemu.conf user/group): NAME or UID:GID; guest disks and "
	    "config drives are given to it. Empty: root (QEMU as root, files stay root's)"},
    {"vnc_listen", KEY_STRING, OFF(vnc_listen),
     .doc = "console (VNC/SPICE) listen address; empty: the node's access address"},
    {"api_max_body", KEY_INT, OFF(api_max_body), 1024, 64 * 1024 * 1024,
     .doc = "request body limit, bytes"},
    {"api_max_connections", KEY_INT, OFF(api_max_connections), 1, 65536,
     .doc = "concurrent API connections"},
    {"api_max_connections_per_ip", KEY_INT, OFF(api_max_connections_per_ip), 1, 65536,
     .doc = "concurrent API connections from one client address"},
    {"api_rate_limit", KEY_INT, OFF(api_rate_limit), 1, 1000000,
     .doc = "requests per second per client before 429"},
    {"api_request_timeout", KEY_INT, OFF(api_request_timeout), 1, 3600,
     .doc = "idle connection timeout, seconds"},
    {"token_cache_seconds", KEY_INT, OFF(token_cache_seconds), 0, 300,
     .doc = "how long a validated token is trusted"},
    {"api_roles", KEY_STRLIST, OFF(api_roles),
     .doc = "roles (in the agent's own project or api_projects) required to call the API "
	    "(empty: any valid token)"},
    {"api_projects", KEY_STRLIST, OFF(api_projects),
     .doc = "projects whose tokens may call the API (empty: any)"},
    {"metrics_require_token", KEY_BOOL, OFF(metrics_require_token),
     .doc = "whether /metrics needs a token"},
    {"task_workers", KEY_INT, OFF(task_workers), 1, 64, .doc = "worker threads"},
    {"guest_view_reconcile_seconds", KEY_INT, OFF(guest_view_reconcile_seconds), 1, 86400,
     .doc = "how often the guest view is compared with a full libvirt listing"},
    {"enforce_placement", KEY_BOOL, OFF(enforce_placement),
     .doc = "move QEMU out of the agent's container cgroup"},
    {"cgroup_root", KEY_STRING, OFF(cgroup_root), .path = true,
     .doc = "host cgroup mount (the host hierarchy mounted into the pod)"},
    {"host_cgroup_partition", KEY_STRING, OFF(host_cgroup_partition),
     .doc = "host cgroup partition QEMU is moved into"},
    {"shutdown_timeout", KEY_INT, OFF(shutdown_timeout), 1, 600,
     .doc = "seconds in-flight tasks get on SIGTERM"},
    {"dhcp", KEY_BOOL, OFF(dhcp),
     .doc = "answer guest NICs with their descriptor's address (a dnsmasq per bridge)"},
    {"dhcp_dnsmasq", KEY_STRING, OFF(dhcp_dnsmasq), .doc = "the dnsmasq program the DHCP runs"},
};
#undef OFF

static const struct key_def *find_key(const char *name)
{
	char buf[64];
	size_t n = strlen(name);
	if (n >= sizeof(buf))
		return NULL;
	for (size_t i = 0; i <= n; i++)
		buf[i] = name[i] == '-' ? '_' : (char)tolower((unsigned char)name[i]);
	for (size_t i = 0; i < ELEMENTSOF(keys); i++)
		if (streq(keys[i].name, buf))
			return &keys[i];
	return NULL;
}

bool config_has_key(const char *key)
{
	return find_key(key) != NULL;
}

static void *field(struct config *cfg, const struct key_def *k)
{
	return (char *)cfg + k->offset;
}

static int set_string(char **slot, const char *v)
{
	char *c = strdup(v);
	if (!c)
		return -ENOMEM;
	free(*slot);
	*slot = c;
	return 0;
}

static void modules_free(struct config *cfg)
{
	for (size_t i = 0; i < cfg->n_kernel_modules; i++) {
		free(cfg->kernel_modules[i].name);
		free(cfg->kernel_modules[i].params);
	}
	free(cfg->kernel_modules);
	cfg->kernel_modules = NULL;
	cfg->n_kernel_modules = 0;
}

static int module_add(struct config_module **list, size_t *n, const char *name, const char *params,
		      bool required)
{
	struct config_module *l = realloc(*list, sizeof(**list) * (*n + 1));
	if (!l)
		return -ENOMEM;
	*list = l;
	l[*n] = (struct config_module){
	    .name = strdup(name),
	    .params = params && *params ? strdup(params) : NULL,
	    .required = required,
	};
	if (!l[*n].name || (params && *params && !l[*n].params)) {
		free(l[*n].name);
		free(l[*n].params);
		return -ENOMEM;
	}
	(*n)++;
	return 0;
}

static bool module_name_valid(const char *s)
{
	if (isempty(s) || strlen(s) > 64)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
			return false;
	return true;
}

static bool module_params_valid(const char *s)
{
	/* name=value words; nothing a shell or the kernel parser would treat specially. */
	if (!s)
		return true;
	if (strlen(s) > 512)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("_-=,. ", *s))
			return false;
	return true;
}

int config_init(struct config *cfg)
{
	*cfg = (struct config){
	    .port = 8885,
	    .ping_region_interval = 60,
	    /* a descriptor carries up to 1 MiB of metadata (agent/desc.h) besides the rest */
	    .api_max_body = 4 * 1024 * 1024,
	    .api_max_connections = 256,
	    .api_max_connections_per_ip = 32,
	    .api_rate_limit = 200,
	    .api_request_timeout = 30,
	    .token_cache_seconds = 60,
	    .task_workers = 8,
	    .metrics_require_token = true,
	    .guest_view_reconcile_seconds = 60,
	    .enforce_placement = true,
	    .shutdown_timeout = 20,
	    .modprobe_fallback = true,
	    .dhcp = true,
	    .modules_host_pid = 1,
	};
	static const struct {
		size_t off;
		const char *value;
	} strings[] = {
	    {offsetof(struct config, listen_address), "0.0.0.0"},
	    {offsetof(struct config, servers_path), "/opt/cloud/workspace/servers"},
	    {offsetof(struct config, state_dir), "/var/lib/hostagent"},
	    {offsetof(struct config, libvirt_uri), "qemu:///system"},
	    {offsetof(struct config, admin_socket), CONFIG_DEFAULT_ADMIN_SOCKET},
	    {offsetof(struct config, admin_domain), "Default"},
	    {offsetof(struct config, admin_project), "system"},
	    {offsetof(struct config, admin_project_domain), "Default"},
	    {offsetof(struct config, region), "region0"},
	    {offsetof(struct config, session_endpoint_type), "internal"},
	    {offsetof(struct config, log_level), "info"},
	    {offsetof(struct config, log_format), "text"},
	    {offsetof(struct config, cpu_mode), "default"},
	    {offsetof(struct config, virt_type), "kvm"},
	    {offsetof(struct config, cgroup_root), "/sys/fs/cgroup"},
	    {offsetof(struct config, host_cgroup_partition), "/machine"},
	    {offsetof(struct config, dhcp_dnsmasq), "dnsmasq"},
	};
	for (size_t i = 0; i < ELEMENTSOF(strings); i++)
		if (set_string((char **)((char *)cfg + strings[i].off), strings[i].value) < 0)
			goto oom;
	if (strv_extend(&cfg->local_image_path, "/opt/cloud/workspace/disks") < 0)
		goto oom;
	static const struct {
		const char *name, *params;
		bool required;
	} mods[] = {
	    /* kvm is what the node needs; the vendor module may be built in under another
	     * name (or come from another provider), so it is optional. */
	    {"kvm", NULL, true},	   {CONFIG_MODULE_KVM_VENDOR, NULL, false},
	    {"tun", NULL, true},	   {"vhost_net", NULL, false},
	    {"bridge", NULL, true},	   {"br_netfilter", NULL, false},
	    {"nbd", "max_part=16", false}, {"openvswitch", NULL, false},
	};
	for (size_t i = 0; i < ELEMENTSOF(mods); i++)
		if (module_add(&cfg->kernel_modules, &cfg->n_kernel_modules, mods[i].name,
			       mods[i].params, mods[i].required) < 0)
			goto oom;
	return 0;
oom:
	config_done(cfg);
	return -ENOMEM;
}

void config_done(struct config *cfg)
{
	for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
		void *f = field(cfg, &keys[i]);
		switch (keys[i].type) {
		case KEY_STRING:
		case KEY_ENUM:
			free(*(char **)f);
			*(char **)f = NULL;
			break;
		case KEY_STRLIST:
			*(char ***)f = strv_free(*(char ***)f);
			break;
		case KEY_MODULES:
			modules_free(cfg);
			break;
		default:
			break;
		}
	}
}

static int fail(char **ret_error, int r, const char *fmt, ...) _printf_(3, 4);
static int fail(char **ret_error, int r, const char *fmt, ...)
{
	if (ret_error) {
		va_list ap;
		va_start(ap, fmt);
		char *s = NULL;
		if (vasprintf(&s, fmt, ap) < 0)
			s = NULL;
		va_end(ap);
		free(*ret_error);
		*ret_error = s;
	}
	return r;
}

static const char *type_name(const struct key_def *k)
{
	switch (k->type) {
	case KEY_STRING:
		return "string";
	case KEY_INT:
		return "integer";
	case KEY_BOOL:
		return "boolean";
	case KEY_ENUM:
		return "one of";
	case KEY_STRLIST:
		return "list of strings";
	case KEY_MODULES:
		return "list of modules";
	}
	return "?";
}

static int check_string(const struct key_def *k, const char *v, const char *where, char **ret_error)
{
	if (strlen(v) > 4096)
		return fail(ret_error, -EINVAL,
			    "%s: key '%s': value too long (%zu bytes, max 4096)", where, k->name,
			    strlen(v));
	for (const char *p = v; *p; p++)
		if ((unsigned char)*p < 0x20)
			return fail(ret_error, -EINVAL, "%s: key '%s': control character in value",
				    where, k->name);
	if (k->path && *v && v[0] != '/')
		return fail(ret_error, -EINVAL, "%s: key '%s': path must be absolute, got '%s'",
			    where, k->name, v);
	return 0;
}

/* Sets a scalar key from text. quoted: the YAML scalar was quoted (a string). */
static int set_scalar(struct config *cfg, const struct key_def *k, const char *v, bool quoted,
		      const char *where, char **ret_error)
{
	void *f = field(cfg, k);
	int r;
	switch (k->type) {
	case KEY_STRING:
		r = check_string(k, v, where, ret_error);
		if (r < 0)
			return r;
		return set_string((char **)f, v);
	case KEY_INT: {
		int i;
		if (quoted)
			return fail(ret_error, -EINVAL,
				    "%s: key '%s': expected integer, got string '%s'", where,
				    k->name, v);
		r = parse_int(v, k->min, k->max, &i);
		if (r == -ERANGE)
			return fail(ret_error, r, "%s: key '%s': value %s out of range %d..%d",
				    where, k->name, v, k->min, k->max);
		if (r < 0)
			return fail(ret_error, r, "%s: key '%s': expected integer, got '%s'", where,
				    k->name, v);
		*(int *)f = i;
		return 0;
	}
	case KEY_BOOL:
		if (quoted || parse_bool(v, (bool *)f) < 0)
			return fail(ret_error, -EINVAL, "%s: key '%s': expected boolean, got '%s'",
				    where, k->name, v);
		return 0;
	case KEY_ENUM:
		for (const char *const *e = k->values; *e; e++)
			if (streq(*e, v))
				return set_string((char **)f, v);
		{
			char allowed[256] = "";
			for (const char *const *e = k->values; *e; e++) {
				strncat(allowed, *e, sizeof(allowed) - strlen(allowed) - 2);
				if (e[1])
					strncat(allowed, ", ",
						sizeof(allowed) - strlen(allowed) - 1);
			}
			return fail(ret_error, -EINVAL,
				    "%s: key '%s': invalid value '%s' (allowed: %s)", where,
				    k->name, v, allowed);
		}
	case KEY_STRLIST: {
		/* Flags and environment: comma-separated. */
		_cleanup_strv_free_ char **l = calloc(1, sizeof(char *));
		_cleanup_free_ char *copy = strdup(v);
		if (!l || !copy)
			return -ENOMEM;
		char *save = NULL;
		for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			r = check_string(k, t, where, ret_error);
			if (r < 0)
				return r;
			if (strv_extend(&l, t) < 0)
				return -ENOMEM;
		}
		strv_free(*(char ***)f);
		*(char ***)f = TAKE_PTR(l);
		return 0;
	}
	case KEY_MODULES: {
		/* "nbd max_part=16;tun;openvswitch?": '?' marks an optional module. */
		struct config_module *list = NULL;
		size_t n = 0;
		_cleanup_free_ char *copy = strdup(v);
		if (!copy)
			return -ENOMEM;
		char *save = NULL;
		r = 0;
		for (char *t = strtok_r(copy, ";", &save); t && r >= 0;
		     t = strtok_r(NULL, ";", &save)) {
			while (*t == ' ')
				t++;
			char *params = strchr(t, ' ');
			if (params)
				*params++ = 0;
			size_t len = strlen(t);
			bool required = true;
			if (len > 0 && t[len - 1] == '?') {
				t[len - 1] = 0;
				required = false;
			}
			if (!module_name_valid(t) || !module_params_valid(params))
				r = fail(ret_error, -EINVAL,
					 "%s: key '%s': invalid module entry '%s'", where, k->name,
					 t);
			else
				r = module_add(&list, &n, t, params, required);
		}
		if (r < 0) {
			struct config tmp = {.kernel_modules = list, .n_kernel_modules = n};
			modules_free(&tmp);
			return r;
		}
		modules_free(cfg);
		cfg->kernel_modules = list;
		cfg->n_kernel_modules = n;
		return 0;
	}
	}
	return -EINVAL;
}

int config_set(struct config *cfg, const char *key, const char *value, const char *origin,
	       char **ret_error)
{
	const struct key_def *k = find_key(key);
	if (!k)
		return fail(ret_error, -ENOENT, "%s: unknown key '%s'", origin, key);
	return set_scalar(cfg, k, value, false, origin, ret_error);
}

int config_load_env(struct config *cfg, char **env, char **ret_error)
{
	for (char **e = env; e && *e; e++) {
		if (!strneq(*e, "HOSTAGENT_", 10))
			continue;
		const char *eq = strchr(*e, '=');
		if (!eq)
			continue;
		_cleanup_free_ char *name = strndup(*e + 10, (size_t)(eq - *e - 10));
		if (!name)
			return -ENOMEM;
		const struct key_def *k = find_key(name);
		if (!k)
			continue; /* HOSTAGENT_* is also used by scripts for other things */
		char origin[128];
		snprintf(origin, sizeof(origin), "environment HOSTAGENT_%s", name);
		int r = set_scalar(cfg, k, eq + 1, false, origin, ret_error);
		if (r < 0)
			return r;
	}
	return 0;
}

static yaml_node_t *node(yaml_document_t *d, int id)
{
	return yaml_document_get_node(d, id);
}

static int load_list(struct config *cfg, const struct key_def *k, yaml_document_t *doc,
		     yaml_node_t *v, const char *path, char **ret_error)
{
	char where[4200];
	unsigned line = (unsigned)v->start_mark.line + 1;
	snprintf(where, sizeof(where), "%s:%u", path, line);
	if (v->type != YAML_SEQUENCE_NODE)
		return fail(ret_error, -EINVAL, "%s: key '%s': expected %s", where, k->name,
			    type_name(k));
	if (k->type == KEY_STRLIST) {
		_cleanup_strv_free_ char **l = calloc(1, sizeof(char *));
		if (!l)
			return -ENOMEM;
		for (yaml_node_item_t *it = v->data.sequence.items.start;
		     it < v->data.sequence.items.top; it++) {
			yaml_node_t *e = node(doc, *it);
			snprintf(where, sizeof(where), "%s:%u", path,
				 (unsigned)e->start_mark.line + 1);
			if (e->type != YAML_SCALAR_NODE)
				return fail(ret_error, -EINVAL,
					    "%s: key '%s': expected string item", where, k->name);
			int r =
			    check_string(k, (const char *)e->data.scalar.value, where, ret_error);
			if (r < 0)
				return r;
			if (strv_extend(&l, (const char *)e->data.scalar.value) < 0)
				return -ENOMEM;
		}
		strv_free(*(char ***)field(cfg, k));
		*(char ***)field(cfg, k) = TAKE_PTR(l);
		return 0;
	}
	/* KEY_MODULES */
	struct config tmp = {0};
	int r = 0;
	for (yaml_node_item_t *it = v->data.sequence.items.start;
	     it < v->data.sequence.items.top && r >= 0; it++) {
		yaml_node_t *e = node(doc, *it);
		snprintf(where, sizeof(where), "%s:%u", path, (unsigned)e->start_mark.line + 1);
		const char *name = NULL, *params = NULL;
		bool required = true;
		if (e->type == YAML_SCALAR_NODE)
			name = (const char *)e->data.scalar.value;
		else if (e->type == YAML_MAPPING_NODE) {
			for (yaml_node_pair_t *p = e->data.mapping.pairs.start;
			     p < e->data.mapping.pairs.top && r >= 0; p++) {
				yaml_node_t *pk = node(doc, p->key), *pv = node(doc, p->value);
				snprintf(where, sizeof(where), "%s:%u", path,
					 (unsigned)pk->start_mark.line + 1);
				const char *kn = pk->type == YAML_SCALAR_NODE
						     ? (const char *)pk->data.scalar.value
						     : "?";
				if (pv->type != YAML_SCALAR_NODE)
					r = fail(ret_error, -EINVAL,
						 "%s: key 'kernel_modules.%s': expected scalar",
						 where, kn);
				else if (streq(kn, "name"))
					name = (const char *)pv->data.scalar.value;
				else if (streq(kn, "params"))
					params = (const char *)pv->data.scalar.value;
				else if (streq(kn, "required")) {
					if (parse_bool((const char *)pv->data.scalar.value,
						       &required) < 0)
						r = fail(
						    ret_error, -EINVAL,
						    "%s: key 'kernel_modules.required': expected "
						    "boolean, got '%s'",
						    where, pv->data.scalar.value);
				} else
					r = fail(ret_error, -EINVAL,
						 "%s: unknown key 'kernel_modules.%s'", where, kn);
			}
		} else
			r = fail(ret_error, -EINVAL,
				 "%s: key 'kernel_modules': expected module entry", where);
		if (r < 0)
			break;
		if (!module_name_valid(name))
			r = fail(
			    ret_error, -EINVAL,
			    "%s: key 'kernel_modules.name': invalid or missing module name '%s'",
			    where, strempty(name));
		else if (!module_params_valid(params))
			r = fail(ret_error, -EINVAL,
				 "%s: key 'kernel_modules.params': invalid parameters '%s'", where,
				 params);
		else
			r = module_add(&tmp.kernel_modules, &tmp.n_kernel_modules, name, params,
				       required);
	}
	if (r < 0) {
		modules_free(&tmp);
		return r;
	}
	modules_free(cfg);
	cfg->kernel_modules = tmp.kernel_modules;
	cfg->n_kernel_modules = tmp.n_kernel_modules;
	return 0;
}

int config_load_file(struct config *cfg, const char *path, char **ret_error)
{
	_cleanup_free_ char *text = NULL;
	size_t len;
	int r = read_file(path, 1024 * 1024, &text, &len);
	if (r < 0)
		return fail(ret_error, r, "%s: cannot read configuration: %s", path, strerror(-r));

	yaml_parser_t parser;
	yaml_document_t doc;
	if (!yaml_parser_initialize(&parser))
		return -ENOMEM;
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		r = fail(ret_error, -EINVAL, "%s:%zu: YAML syntax error: %s", path,
			 parser.problem_mark.line + 1, parser.problem ? parser.problem : "?");
		yaml_parser_delete(&parser);
		return r;
	}
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	r = 0;
	if (!root)
		goto out; /* empty file: defaults */
	if (root->type != YAML_MAPPING_NODE) {
		r = fail(ret_error, -EINVAL, "%s:%zu: expected a mapping of keys", path,
			 root->start_mark.line + 1);
		goto out;
	}
	for (yaml_node_pair_t *p = root->data.mapping.pairs.start;
	     p < root->data.mapping.pairs.top && r >= 0; p++) {
		yaml_node_t *kn = node(&doc, p->key), *vn = node(&doc, p->value);
		char where[4200];
		snprintf(where, sizeof(where), "%s:%zu", path, kn->start_mark.line + 1);
		if (kn->type != YAML_SCALAR_NODE) {
			r = fail(ret_error, -EINVAL, "%s: key must be a string", where);
			break;
		}
		const char *name = (const char *)kn->data.scalar.value;
		const struct key_def *k = NULL;
		for (size_t i = 0; i < ELEMENTSOF(keys); i++)
			if (streq(keys[i].name, name))
				k = &keys[i];
		if (!k) {
			r = fail(ret_error, -EINVAL, "%s: unknown key '%s'", where, name);
			break;
		}
		if (k->type == KEY_STRLIST || k->type == KEY_MODULES) {
			r = load_list(cfg, k, &doc, vn, path, ret_error);
			continue;
		}
		snprintf(where, sizeof(where), "%s:%zu", path, vn->start_mark.line + 1);
		if (vn->type != YAML_SCALAR_NODE) {
			r = fail(ret_error, -EINVAL, "%s: key '%s': expected %s, got a %s", where,
				 name, type_name(k),
				 vn->type == YAML_SEQUENCE_NODE ? "list" : "mapping");
			break;
		}
		bool quoted = vn->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
			      vn->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
		const char *v = (const char *)vn->data.scalar.value;
		/* A plain "~", "null" or empty value clears a string key. */
		if (!quoted && (k->type == KEY_STRING) &&
		    (streq(v, "") || streq(v, "~") || streq(v, "null"))) {
			free(*(char **)field(cfg, k));
			*(char **)field(cfg, k) = NULL;
			continue;
		}
		r = set_scalar(cfg, k, v, quoted, where, ret_error);
	}
out:
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	return r;
}

int config_finish(struct config *cfg, char **ret_error)
{
	if (!cfg->api_token_file) {
		cfg->api_token_file = strjoin(strempty(cfg->state_dir), "/api-token");
		if (!cfg->api_token_file)
			return -ENOMEM;
	}
	if (strv_length(cfg->local_image_path) == 0)
		return fail(ret_error, -EINVAL,
			    "key 'local_image_path': at least one disk root "
			    "is required");
	if (!cfg->servers_path || !cfg->state_dir)
		return fail(ret_error, -EINVAL, "keys 'servers_path' and 'state_dir' are required");
	if (!!cfg->tls_cert_file != !!cfg->tls_key_file)
		return fail(ret_error, -EINVAL,
			    "keys 'tls_cert_file' and 'tls_key_file' must be set together");
	if (!isempty(cfg->auth_url)) {
		if (!strneq(cfg->auth_url, "http://", 7) && !strneq(cfg->auth_url, "https://", 8))
			return fail(ret_error, -EINVAL,
				    "key 'auth_url': must start with http:// or https://, got '%s'",
				    cfg->auth_url);
		if (isempty(cfg->admin_user) || isempty(cfg->admin_password))
			return fail(ret_error, -EINVAL,
				    "key 'auth_url' is set: 'admin_user' and "
				    "'admin_password' are required");
		if (isempty(cfg->zone))
			return fail(ret_error, -EINVAL,
				    "key 'auth_url' is set: 'zone' is required");
	}
	return 0;
}

bool config_standalone(const struct config *cfg)
{
	return isempty(cfg->auth_url);
}

static void print_yaml_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

void config_print(const struct config *cfg, FILE *f)
{
	for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
		const struct key_def *k = &keys[i];
		const void *v = (const char *)cfg + k->offset;
		fprintf(f, "%s:", k->name);
		switch (k->type) {
		case KEY_STRING:
		case KEY_ENUM: {
			const char *s = *(char *const *)v;
			if (!s)
				fputs(" null", f);
			else if (k->secret)
				fputs(" \"********\"", f);
			else {
				fputc(' ', f);
				print_yaml_string(f, s);
			}
			break;
		}
		case KEY_INT:
			fprintf(f, " %d", *(const int *)v);
			break;
		case KEY_BOOL:
			fprintf(f, " %s", *(const bool *)v ? "true" : "false");
			break;
		case KEY_STRLIST: {
			char *const *l = *(char **const *)v;
			if (strv_length(l) == 0)
				fputs(" []", f);
			for (size_t j = 0; l && l[j]; j++) {
				fputs("\n  - ", f);
				print_yaml_string(f, l[j]);
			}
			break;
		}
		case KEY_MODULES:
			if (cfg->n_kernel_modules == 0)
				fputs(" []", f);
			for (size_t j = 0; j < cfg->n_kernel_modules; j++) {
				const struct config_module *m = &cfg->kernel_modules[j];
				fprintf(f, "\n  - name: %s", m->name);
				if (m->params) {
					fputs("\n    params: ", f);
					print_yaml_string(f, m->params);
				}
				fprintf(f, "\n    required: %s", m->required ? "true" : "false");
			}
			break;
		}
		fputc('\n', f);
	}
}

void config_print_keys(FILE *f)
{
	for (size_t i = 0; i < ELEMENTSOF(keys); i++)
		fprintf(f, "  --%-24s %s (%s)\n", keys[i].name, keys[i].doc, type_name(&keys[i]));
}

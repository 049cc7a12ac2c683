/* Module manager logic over libkmod. The kernel is touched only through struct modload_ops. */
#include <fcntl.h>
#include <libkmod.h>
#include <sys/stat.h>
#include <sys/utsname.h>

#include "common/fs.h"
#include "common/log.h"
#include "common/macros.h"
#include "kmod/modload.h"
#include "nsenter/ns.h"

#define MODLOAD_PROC_MODULES_MAX    (4 * 1024 * 1024)
#define MODLOAD_MODPROBE_TIMEOUT_MS 30000

struct modload {
	struct kmod_ctx *ctx; /* NULL: no usable modules tree */
	char *modules_dir;
	char *sysfs_root;
	char *proc_root;
	bool modprobe_fallback;
	pid_t host_pid;
	int modprobe_timeout_ms;
	struct modload_ops ops;
	void *insert_userdata, *modprobe_userdata;
};

DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmod_list *, kmod_module_unref_list);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct kmod_module *, kmod_module_unref);

static void modload_log(void *data, int priority, const char *file, int line, const char *fn,
			const char *format, va_list args)
{
	/* libkmod is a lower layer: its messages are debug detail for our callers' logs. */
	if (log_get_max_level() >= LOG_DEBUG)
		(void)log_internalv(LOG_DEBUG, 0, file, line, fn, format, args);
}

static int real_insert(void *userdata, struct kmod_module *mod, const char *options)
{
	return kmod_module_insert_module(mod, 0, options);
}

static int real_modprobe(void *userdata, const char *name, char *const *params)
{
	struct modload *m = userdata;
	_cleanup_strv_free_ char **argv = NULL;
	struct spawn_result res = {0};
	int r;

	if (strv_extend(&argv, "modprobe") < 0 || strv_extend(&argv, "--") < 0 ||
	    strv_extend(&argv, name) < 0)
		return -ENOMEM;
	STRV_FOREACH (p, (char **)params)
		if (strv_extend(&argv, *p) < 0)
			return -ENOMEM;
	struct ns_exec_opts o = {
	    .target = m->host_pid,
	    .namespaces = NS_MNT,
	    .timeout_ms = m->modprobe_timeout_ms,
	    .capture = true,
	    .capture_max = 64 * 1024,
	};
	r = ns_exec(&o, argv, &res);
	if (r < 0)
		return r;
	if (res.timed_out)
		r = -ETIMEDOUT;
	else if (res.exit_status == 0)
		r = 0;
	else if (res.err && strstr(res.err, "not found"))
		r = -ENOENT;
	else
		r = -EIO;
	log_debug("modprobe %s: exit=%d stderr=%s", name, res.exit_status, strempty(res.err));
	spawn_result_done(&res);
	return r;
}

static bool dir_usable(const char *dir)
{
	_cleanup_free_ char *dep = strjoin(dir, "/modules.dep.bin");
	return dep && access(dep, R_OK) == 0;
}

int modload_new(const struct modload_opts *o, struct modload **ret)
{
	static const struct modload_opts defaults = {0};
	_cleanup_(modload_freep) struct modload *m = NULL;

	if (!o)
		o = &defaults;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	if (o->modules_dir)
		m->modules_dir = strdup(o->modules_dir);
	else {
		struct utsname u;
		if (uname(&u) < 0)
			return negative_errno();
		m->modules_dir = strjoin("/lib/modules/", u.release);
	}
	m->sysfs_root = strdup(o->sysfs_root ? o->sysfs_root : "/sys");
	m->proc_root = strdup(o->proc_root ? o->proc_root : "/proc");
	if (!m->modules_dir || !m->sysfs_root || !m->proc_root)
		return -ENOMEM;
	m->modprobe_fallback = o->modprobe_fallback;
	m->host_pid = o->host_pid > 0 ? o->host_pid : 1;
	m->modprobe_timeout_ms =
	    o->modprobe_timeout_ms > 0 ? o->modprobe_timeout_ms : MODLOAD_MODPROBE_TIMEOUT_MS;
	if (o->ops)
		m->ops = *o->ops;
	m->insert_userdata = m->modprobe_userdata = o->ops_userdata;
	if (!m->ops.insert)
		m->ops.insert = real_insert;
	if (!m->ops.modprobe) {
		m->ops.modprobe = real_modprobe;
		m->modprobe_userdata = m; /* the real fallback needs the host pid and timeout */
	}

	if (dir_usable(m->modules_dir)) {
		m->ctx = kmod_new(m->modules_dir, o->config_paths);
		if (!m->ctx)
			return -ENOMEM;
		kmod_set_log_fn(m->ctx, modload_log, NULL);
		kmod_set_log_priority(m->ctx, LOG_DEBUG);
		int r = kmod_load_resources(m->ctx);
		if (r < 0)
			log_debug_errno(r, "libkmod could not preload indexes of %s: %m",
					m->modules_dir);
	}
	*ret = TAKE_PTR(m);
	return 0;
}

struct modload *modload_free(struct modload *m)
{
	if (!m)
		return NULL;
	kmod_unref(m->ctx);
	free(m->modules_dir);
	free(m->sysfs_root);
	free(m->proc_root);
	free(m);
	return NULL;
}

const char *modload_modules_dir(const struct modload *m)
{
	return m->modules_dir;
}

static const char *const status_names[] = {
    [MODLOAD_BUILTIN] = "builtin",	 [MODLOAD_ALREADY_LOADED] = "already loaded",
    [MODLOAD_LOADED_NOW] = "loaded now", [MODLOAD_MISSING] = "missing",
    [MODLOAD_FAILED] = "failed",
};

DEFINE_STRING_TABLE_TO(modload_status, enum modload_status, status_names, "unknown")

/* Kernel module names use '_' where files and requests may use '-'. */
static char *normalize(const char *name)
{
	char *s = strdup(name);
	for (char *p = s; p && *p; p++)
		if (*p == '-')
			*p = '_';
	return s;
}

enum kstate {
	KSTATE_ABSENT,
	KSTATE_BUILTIN,
	KSTATE_LOADED,
};

static const struct {
	const char *name;
	const char *sysfs_path;
} builtin_evidence[] = {
    {"tun", "class/misc/tun"},
    {"vhost_net", "class/misc/vhost-net"},
    {"kvm", "class/misc/kvm"},
    {"nbd", "block/nbd0"},
};

static bool in_proc_modules(const struct modload *m, const char *name)
{
	_cleanup_free_ char *path = strjoin(m->proc_root, "/modules");
	_cleanup_free_ char *text = NULL;
	size_t len = strlen(name);

	if (!path || read_file(path, MODLOAD_PROC_MODULES_MAX, &text, NULL) < 0)
		return false;
	for (const char *l = text; l && *l;) {
		if (strneq(l, name, len) && l[len] == ' ')
			return true;
		l = strchr(l, '\n');
		if (l)
			l++;
	}
	return false;
}

/* What the running kernel says about a module, from configurable sysfs and proc roots:
 * /sys/module/<name>/initstate exists only for loadable modules. */
static enum kstate kernel_state(const struct modload *m, const char *name)
{
	_cleanup_free_ char *n = normalize(name);
	_cleanup_free_ char *dir = NULL, *initstate = NULL;
	struct stat st;

	if (!n)
		return KSTATE_ABSENT;
	dir = strjoin(m->sysfs_root, "/module/", n);
	initstate = strjoin(m->sysfs_root, "/module/", n, "/initstate");
	if (dir && initstate && stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
		return access(initstate, F_OK) == 0 ? KSTATE_LOADED : KSTATE_BUILTIN;
	if (in_proc_modules(m, n))
		return KSTATE_LOADED;
	/* Some built-in drivers have no /sys/module entry (no parameters), but their device
	 * class does exist; not in /proc/modules, so built in. */
	for (size_t i = 0; i < ELEMENTSOF(builtin_evidence); i++)
		if (streq(n, builtin_evidence[i].name)) {
			_cleanup_free_ char *ev =
			    strjoin(m->sysfs_root, "/", builtin_evidence[i].sysfs_path);
			if (ev && access(ev, F_OK) == 0)
				return KSTATE_BUILTIN;
		}
	return KSTATE_ABSENT;
}

static int result_init(struct modload_result *res, const struct modload_request *c)
{
	res->name = strdup(c->name);
	res->params = c->params ? strdup(c->params) : NULL;
	res->required = c->required;
	res->inserted = calloc(1, sizeof(char *));
	if (!res->name || (c->params && !res->params) || !res->inserted)
		return -ENOMEM;
	return 0;
}

static void result_done(struct modload_result *res)
{
	free(res->name);
	free(res->resolved);
	free(res->params);
	free(res->failed_dep);
	strv_free(res->inserted);
}

struct modload_report *modload_report_free(struct modload_report *r)
{
	if (!r)
		return NULL;
	for (size_t i = 0; i < r->n_results; i++)
		result_done(&r->results[i]);
	free(r->results);
	free(r);
	return NULL;
}

static int split_params(const char *params, char ***ret)
{
	_cleanup_strv_free_ char **l = calloc(1, sizeof(char *));
	_cleanup_free_ char *copy = params ? strdup(params) : NULL;
	char *save = NULL;

	if (!l || (params && !copy))
		return -ENOMEM;
	for (char *t = copy ? strtok_r(copy, " \t", &save) : NULL; t;
	     t = strtok_r(NULL, " \t", &save))
		if (strv_extend(&l, t) < 0)
			return -ENOMEM;
	*ret = TAKE_PTR(l);
	return 0;
}

static int ensure_fallback(struct modload *m, const struct modload_request *c,
			   struct modload_result *res)
{
	_cleanup_strv_free_ char **params = NULL;
	int r;

	if (!m->modprobe_fallback) {
		res->status = MODLOAD_MISSING;
		return 0;
	}
	r = split_params(c->params, &params);
	if (r < 0)
		return r;
	r = m->ops.modprobe(m->modprobe_userdata, c->name, params);
	if (r == -ENOMEM)
		return r;
	if (r == 0) {
		res->status = MODLOAD_LOADED_NOW;
		if (!(res->resolved = strdup(c->name)) || strv_extend(&res->inserted, c->name) < 0)
			return -ENOMEM;
	} else if (r == -ENOENT) {
		res->status = MODLOAD_MISSING;
	} else {
		res->status = MODLOAD_FAILED;
		res->error = -r;
	}
	return 0;
}

struct plan_entry {
	struct kmod_module *mod;
	char *options;
};

struct plan {
	struct plan_entry *v;
	size_t n;
	int error;
};

static void plan_done(struct plan *p)
{
	for (size_t i = 0; i < p->n; i++) {
		kmod_module_unref(p->v[i].mod);
		free(p->v[i].options);
	}
	free(p->v);
	*p = (struct plan){0};
}

/* libkmod has no thread-safe user pointer for print_action: the dry run is collected through
 * a context the callback finds by its single caller. */
static _Thread_local struct plan *current_plan;

static void plan_add(struct kmod_module *mod, bool install, const char *options)
{
	struct plan *p = current_plan;
	struct plan_entry *v;

	if (!p || p->error)
		return;
	v = realloc(p->v, sizeof(*v) * (p->n + 1));
	if (!v) {
		p->error = -ENOMEM;
		return;
	}
	p->v = v;
	v[p->n].mod = kmod_module_ref(mod);
	v[p->n].options = options && *options ? strdup(options) : NULL;
	if (options && *options && !v[p->n].options) {
		kmod_module_unref(mod);
		p->error = -ENOMEM;
		return;
	}
	p->n++;
}

/* The order modprobe would use: soft pre-deps, hard deps (deepest first), the module, soft
 * post-deps; options merged from config and the request. */
static int make_plan(struct kmod_module *mod, const char *params, struct plan *ret)
{
	struct plan p = {0};
	int r;

	current_plan = &p;
	r = kmod_module_probe_insert_module(mod, KMOD_PROBE_DRY_RUN | KMOD_PROBE_IGNORE_LOADED,
					    params, NULL, NULL, plan_add);
	current_plan = NULL;
	if (r >= 0 && p.error)
		r = p.error;
	if (r < 0) {
		plan_done(&p);
		return r;
	}
	*ret = p;
	return 0;
}

static int ensure_tree(struct modload *m, const struct modload_request *c,
		       struct modload_result *res)
{
	_cleanup_(kmod_module_unref_listp) struct kmod_list *list = NULL;
	struct plan plan = {0};
	int r;

	r = kmod_module_new_from_lookup(m->ctx, c->name, &list);
	if (r < 0)
		return r == -ENOMEM ? r : (res->status = MODLOAD_FAILED, res->error = -r, 0);
	if (!list) {
		/* Not in the tree; the running kernel may still have it built in. */
		enum kstate ks = kernel_state(m, c->name);
		res->status = ks == KSTATE_BUILTIN  ? MODLOAD_BUILTIN
			      : ks == KSTATE_LOADED ? MODLOAD_ALREADY_LOADED
						    : MODLOAD_MISSING;
		return 0;
	}
	/* An alias may match several modules; the first is what modprobe reports on. */
	_cleanup_(kmod_module_unrefp) struct kmod_module *mod = kmod_module_get_module(list);
	res->resolved = strdup(kmod_module_get_name(mod));
	if (!res->resolved)
		return -ENOMEM;

	/* Lookups that end in modules.builtin yield a module without a file. */
	if (!kmod_module_get_path(mod)) {
		res->status = MODLOAD_BUILTIN;
		return 0;
	}
	switch (kernel_state(m, res->resolved)) {
	case KSTATE_BUILTIN:
		res->status = MODLOAD_BUILTIN;
		return 0;
	case KSTATE_LOADED:
		res->status = MODLOAD_ALREADY_LOADED;
		return 0;
	case KSTATE_ABSENT:
		break;
	}

	r = make_plan(mod, c->params, &plan);
	if (r < 0) {
		if (r == -ENOMEM)
			return r;
		res->status = MODLOAD_FAILED;
		res->error = -r;
		return 0;
	}
	res->status = MODLOAD_LOADED_NOW;
	for (size_t i = 0; i < plan.n; i++) {
		const char *name = kmod_module_get_name(plan.v[i].mod);
		bool is_target = streq(name, res->resolved);

		if (!kmod_module_get_path(plan.v[i].mod) || kernel_state(m, name) != KSTATE_ABSENT)
			continue;
		r = m->ops.insert(m->insert_userdata, plan.v[i].mod, plan.v[i].options);
		if (r == -EEXIST)
			continue;
		if (r < 0) {
			/* A failed soft post-dependency does not undo the module itself. */
			res->status = MODLOAD_FAILED;
			res->error = -r;
			if (!is_target && !(res->failed_dep = strdup(name)))
				r = -ENOMEM;
			break;
		}
		if (strv_extend(&res->inserted, name) < 0) {
			r = -ENOMEM;
			break;
		}
	}
	plan_done(&plan);
	if (r == -ENOMEM)
		return r;
	if (res->status == MODLOAD_LOADED_NOW && !strv_contains(res->inserted, res->resolved))
		res->status = MODLOAD_ALREADY_LOADED; /* raced: -EEXIST on the module itself */
	return 0;
}

int modload_ensure(struct modload *m, const struct modload_request *mods, size_t n,
		   struct modload_report **ret)
{
	_cleanup_(modload_report_freep) struct modload_report *rep = calloc(1, sizeof(*rep));
	int r;

	if (!rep)
		return -ENOMEM;
	rep->results = calloc(n ? n : 1, sizeof(*rep->results));
	if (!rep->results)
		return -ENOMEM;
	rep->tree_available = m->ctx != NULL;
	for (size_t i = 0; i < n; i++) {
		struct modload_result *res = &rep->results[i];
		rep->n_results = i + 1;

		if (isempty(mods[i].name))
			return -EINVAL;
		r = result_init(res, &mods[i]);
		if (r < 0)
			return r;
		if (m->ctx)
			r = ensure_tree(m, &mods[i], res);
		else {
			enum kstate ks = kernel_state(m, mods[i].name);
			if (ks == KSTATE_BUILTIN)
				res->status = MODLOAD_BUILTIN;
			else if (ks == KSTATE_LOADED)
				res->status = MODLOAD_ALREADY_LOADED;
			else
				r = ensure_fallback(m, &mods[i], res);
		}
		if (r < 0)
			return r;
		log_debug("module %s: %s", res->name, modload_status_to_string(res->status));
	}
	*ret = TAKE_PTR(rep);
	return 0;
}

static bool result_bad(const struct modload_result *res)
{
	return res->status == MODLOAD_MISSING || res->status == MODLOAD_FAILED;
}

bool modload_report_ok(const struct modload_report *r)
{
	for (size_t i = 0; i < r->n_results; i++)
		if (r->results[i].required && result_bad(&r->results[i]))
			return false;
	return true;
}

static int describe_problem(const struct modload_result *res, char **ret)
{
	const char *kind = res->required ? "required" : "optional";

	if (res->status == MODLOAD_MISSING)
		return asprintf_safe(ret, "%s kernel module %s is missing", kind, res->name);
	if (res->failed_dep)
		return asprintf_safe(ret, "%s kernel module %s failed to load: dependency %s: %s",
				     kind, res->name, res->failed_dep, strerror(res->error));
	return asprintf_safe(ret, "%s kernel module %s failed to load: %s", kind, res->name,
			     strerror(res->error));
}

static int collect_problems(const struct modload_report *r, bool required, char ***ret)
{
	_cleanup_strv_free_ char **l = calloc(1, sizeof(char *));
	int k;

	if (!l)
		return -ENOMEM;
	for (size_t i = 0; i < r->n_results; i++) {
		const struct modload_result *res = &r->results[i];
		char *s = NULL;

		if (res->required != required || !result_bad(res))
			continue;
		k = describe_problem(res, &s);
		if (k < 0)
			return k;
		k = strv_push(&l, s);
		if (k < 0) {
			free(s);
			return k;
		}
	}
	*ret = TAKE_PTR(l);
	return 0;
}

int modload_report_reasons(const struct modload_report *r, char ***ret)
{
	return collect_problems(r, true, ret);
}

int modload_report_warnings(const struct modload_report *r, char ***ret)
{
	return collect_problems(r, false, ret);
}

int modload_report_to_text(const struct modload_report *r, char **ret)
{
	_cleanup_free_ char *buf = NULL;
	size_t size = 0;
	_cleanup_fclose_ FILE *f = open_memstream(&buf, &size);

	if (!f)
		return -ENOMEM;
	for (size_t i = 0; i < r->n_results; i++) {
		const struct modload_result *res = &r->results[i];

		fprintf(f, "%s: %s", res->name, modload_status_to_string(res->status));
		if (res->resolved && !streq(res->resolved, res->name))
			fprintf(f, " (resolved %s)", res->resolved);
		if (res->params)
			fprintf(f, " params=\"%s\"", res->params);
		if (res->status == MODLOAD_FAILED) {
			if (res->failed_dep)
				fprintf(f, " dependency=%s", res->failed_dep);
			fprintf(f, " error=\"%s\"", strerror(res->error));
		}
		if (res->inserted && res->inserted[0]) {
			fputs(" inserted=", f);
			STRV_FOREACH (s, res->inserted)
				fprintf(f, "%s%s", s == res->inserted ? "" : ",", *s);
		}
		fprintf(f, "%s\n", res->required ? "" : " optional");
	}
	if (fflush(f) != 0 || ferror(f))
		return -ENOMEM;
	fclose(TAKE_PTR(f));
	*ret = TAKE_PTR(buf);
	return 0;
}

int modload_kvm_module(const char *cpuinfo_path, const char **ret)
{
	_cleanup_free_ char *text = NULL;
	int r;

	r = read_file(cpuinfo_path ? cpuinfo_path : "/proc/cpuinfo", 16 * 1024 * 1024, &text, NULL);
	if (r < 0)
		return r;
	const char *v = strstr(text, "vendor_id");
	if (!v)
		return -EOPNOTSUPP;
	const char *eol = strchrnul(v, '\n');
	if (memmem(v, (size_t)(eol - v), "GenuineIntel", 12))
		*ret = "kvm_intel";
	else if (memmem(v, (size_t)(eol - v), "AuthenticAMD", 12) ||
		 memmem(v, (size_t)(eol - v), "HygonGenuine", 12))
		*ret = "kvm_amd";
	else
		return -EOPNOTSUPP;
	return 0;
}

/* QEMU cgroup placement: pure cgroupfs/procfs logic under configurable roots, so the unit
 * tests drive it on fixture trees. The sd-bus calls live in placement/placement-systemd.c. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "placement/placement-internal.h"
#include "placement/placement.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/macros.h"

#define PROCS_MAX      (16u << 20) /* a cgroup.procs or tasks file */
#define CGROUP_MAX     (64u << 10) /* /proc/<pid>/cgroup */
#define SCAN_MAX_DEPTH 32
#define SCAN_MAX_DIRS  200000
#define FIX_ROUNDS     4 /* re-listing threads created while the process was being moved */
#define REASON_MAX_VMS 3

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir)

#define IN_SET_DISCONNECTED(r) ((r) == -ENOTCONN || (r) == -ECONNRESET || (r) == -EPIPE)

struct hier {
	char *key;	  /* controller field of /proc/<pid>/cgroup: "memory", "name=systemd", "" */
	char *dir;	  /* the mount directory under cgroup_root */
	char *ns_root;	  /* host path of the agent's cgroup namespace root here */
	char *self;	  /* host path of the agent's own cgroup here */
	char *forbidden;  /* host path QEMU must stay out of ("/": nothing) */
	char *mount_root; /* root of the mount (mountinfo), in the agent's cgroup namespace */
	bool strip;	  /* /proc paths minus mount_root are mount-relative (else join ns_root) */
	bool v2, cpuset;
};

struct vm_rec {
	char *name;
	pid_t pid;
	unsigned n_left;
	char *violation;
};

struct placement {
	char *cgroup_root, *proc_root, *partition, *container;
	pid_t self;
	enum placement_layout layout;
	struct hier *h;
	size_t n_h;
	sd_bus *bus;
	char *bus_address;
	unsigned timeout_ms;
	struct vm_rec *vms;
	size_t n_vms;
};

static void hier_done(struct hier *h)
{
	free(h->key);
	free(h->dir);
	free(h->ns_root);
	free(h->self);
	free(h->forbidden);
	free(h->mount_root);
}

static void vm_rec_done(struct vm_rec *v)
{
	free(v->name);
	free(v->violation);
}

struct placement *placement_free(struct placement *p)
{
	if (!p)
		return NULL;
	for (size_t i = 0; i < p->n_h; i++)
		hier_done(&p->h[i]);
	free(p->h);
	for (size_t i = 0; i < p->n_vms; i++)
		vm_rec_done(&p->vms[i]);
	free(p->vms);
	if (p->bus)
		sd_bus_flush_close_unref(p->bus);
	free(p->bus_address);
	free(p->cgroup_root);
	free(p->proc_root);
	free(p->partition);
	free(p->container);
	free(p);
	return NULL;
}

static bool file_exists(const char *dir, const char *name)
{
	_cleanup_free_ char *path = strjoin(dir, "/", name);

	return path && access(path, F_OK) == 0;
}

/* Joins a cgroup path relative to base (may contain ".." when the reader's cgroup namespace
 * root is below the target) and normalizes it to "/a/b" form. */
static int cg_join(const char *base, const char *rel, char **ret)
{
	_cleanup_free_ char *all = strjoin(strempty(base), "/", rel);
	_cleanup_free_ char *out = NULL;
	size_t n = 0;
	char *save = NULL;

	if (!all)
		return -ENOMEM;
	out = malloc(strlen(all) + 2);
	if (!out)
		return -ENOMEM;
	for (char *c = strtok_r(all, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		if (streq(c, "."))
			continue;
		if (streq(c, "..")) {
			while (n > 0 && out[n - 1] != '/')
				n--;
			if (n > 0)
				n--;
			continue;
		}
		out[n++] = '/';
		n = (size_t)(stpcpy(out + n, c) - out);
	}
	if (n == 0)
		out[n++] = '/';
	out[n] = 0;
	*ret = TAKE_PTR(out);
	return 0;
}

static bool cg_is_below(const char *root, const char *path)
{
	size_t n = strlen(root);

	if (streq(root, "/"))
		return false;
	return strneq(root, path, n) && (path[n] == 0 || path[n] == '/');
}

static int cg_parent(const char *path, char **ret)
{
	const char *slash = strrchr(path, '/');
	char *s;

	if (!slash || slash == path)
		s = strdup("/");
	else
		s = strndup(path, (size_t)(slash - path));
	if (!s)
		return -ENOMEM;
	*ret = s;
	return 0;
}

/* True when a cgroup.procs/tasks text lists id. */
static bool id_listed(const char *text, pid_t id)
{
	for (const char *l = text; l && *l;) {
		char *end;
		long v;

		errno = 0;
		v = strtol(l, &end, 10);
		if (errno == 0 && end != l && (*end == '\n' || *end == 0) && v == (long)id)
			return true;
		l = strchr(l, '\n');
		if (l)
			l++;
	}
	return false;
}

static int file_lists(const char *dir, const char *name, pid_t id)
{
	_cleanup_free_ char *path = strjoin(dir, "/", name), *text = NULL;
	int r;

	if (!path)
		return -ENOMEM;
	r = read_file(path, PROCS_MAX, &text, NULL);
	if (r < 0)
		return r;
	return id_listed(text, id);
}

/* Depth-first search for the cgroup whose cgroup.procs lists pid; rel is its path. */
static int scan(const char *dir, const char *rel, pid_t pid, unsigned depth, unsigned *budget,
		char **ret)
{
	_cleanup_(closedirp) DIR *d = NULL;
	struct dirent *de;
	int r;

	if (file_lists(dir, "cgroup.procs", pid) > 0) {
		char *s = strdup(rel);

		if (!s)
			return -ENOMEM;
		*ret = s;
		return 1;
	}
	if (depth >= SCAN_MAX_DEPTH || *budget == 0)
		return 0;
	d = opendir(dir);
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		_cleanup_free_ char *sub = NULL, *subrel = NULL;
		struct stat st;

		if (de->d_name[0] == '.' || (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN))
			continue;
		sub = strjoin(dir, "/", de->d_name);
		subrel = strjoin(streq(rel, "/") ? "" : rel, "/", de->d_name);
		if (!sub || !subrel)
			return -ENOMEM;
		if (lstat(sub, &st) < 0 || !S_ISDIR(st.st_mode))
			continue;
		(*budget)--;
		r = scan(sub, subrel, pid, depth + 1, budget, ret);
		if (r != 0)
			return r;
	}
	return 0;
}

struct cg_line {
	char *key, *path;
};

static void cg_lines_free(struct cg_line *l, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(l[i].key);
		free(l[i].path);
	}
	free(l);
}

/* Parses /proc/<pid>/cgroup ("ID:CONTROLLERS:PATH" lines). */
static int cg_parse(const char *text, struct cg_line **ret, size_t *ret_n)
{
	struct cg_line *l = NULL;
	size_t n = 0;

	for (const char *s = text; s && *s;) {
		const char *eol = strchrnul(s, '\n'), *c1, *c2;
		struct cg_line *nl;

		c1 = memchr(s, ':', (size_t)(eol - s));
		c2 = c1 ? memchr(c1 + 1, ':', (size_t)(eol - c1 - 1)) : NULL;
		if (c2 && c2 + 1 < eol && c2[1] == '/') {
			nl = realloc(l, (n + 1) * sizeof(*l));
			if (!nl)
				goto oom;
			l = nl;
			l[n].key = strndup(c1 + 1, (size_t)(c2 - c1 - 1));
			l[n].path = strndup(c2 + 1, (size_t)(eol - c2 - 1));
			n++;
			if (!l[n - 1].key || !l[n - 1].path)
				goto oom;
		}
		s = *eol ? eol + 1 : eol;
	}
	*ret = l;
	*ret_n = n;
	return 0;
oom:
	cg_lines_free(l, n);
	return -ENOMEM;
}

static int read_cgroup_file(const char *path, struct cg_line **ret, size_t *ret_n)
{
	_cleanup_free_ char *text = NULL;
	int r;

	r = read_file(path, CGROUP_MAX, &text, NULL);
	if (r < 0)
		return r;
	return cg_parse(text, ret, ret_n);
}

/* The mount directory of the hierarchy a /proc/<pid>/cgroup line names, or NULL. */
static int hier_dir(const struct placement *p, const char *key, bool *ret_v2, char **ret)
{
	const char *cands[2] = {key, strneq(key, "name=", 5) ? key + 5 : NULL};

	*ret = NULL;
	if (isempty(key)) {
		if (p->layout == PLACEMENT_LAYOUT_V1)
			return 0;
		*ret_v2 = true;
		*ret = p->layout == PLACEMENT_LAYOUT_V2 ? strdup(p->cgroup_root)
							: strjoin(p->cgroup_root, "/unified");
		return *ret ? 0 : -ENOMEM;
	}
	if (p->layout == PLACEMENT_LAYOUT_V2)
		return 0;
	for (size_t i = 0; i < ELEMENTSOF(cands); i++) {
		_cleanup_free_ char *d = NULL;
		struct stat st;

		if (!cands[i] || strchr(cands[i], '/'))
			continue;
		d = strjoin(p->cgroup_root, "/", cands[i]);
		if (!d)
			return -ENOMEM;
		if (stat(d, &st) == 0 && S_ISDIR(st.st_mode) && file_exists(d, "cgroup.procs")) {
			*ret_v2 = false;
			*ret = TAKE_PTR(d);
			return 0;
		}
	}
	return 0;
}

/* The root field of the last mountinfo entry mounted at dir ("/" when none: fixture trees). A
 * systemd container, for one, gets only its own subtree of the host hierarchy mounted, and
 * /proc/<pid>/cgroup paths then start with that root. */
static int read_mount_root(const struct placement *p, const char *dir, char **ret)
{
	_cleanup_free_ char *path = NULL, *text = NULL, *root = NULL;
	int r;

	if (asprintf_safe(&path, "%s/%d/mountinfo", p->proc_root, (int)p->self) < 0)
		return -ENOMEM;
	r = read_file(path, 4u << 20, &text, NULL);
	if (r >= 0) {
		char *save = NULL;

		for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
			char *f[5] = {0}, *fs = NULL;
			size_t i = 0;

			for (char *t = strtok_r(l, " ", &fs); t && i < ELEMENTSOF(f);
			     t = strtok_r(NULL, " ", &fs))
				f[i++] = t;
			if (i == ELEMENTSOF(f) && streq(f[4], dir)) {
				free(root);
				root = strdup(f[3]);
				if (!root)
					return -ENOMEM;
			}
		}
	}
	*ret = root ? TAKE_PTR(root) : strdup("/");
	return *ret ? 0 : -ENOMEM;
}

/* A /proc/<pid>/cgroup path (in the agent's cgroup namespace) -> a path under the mount
 * directory. -ENOENT when the cgroup is outside what is mounted. */
static int hier_translate(const struct hier *h, const char *proc_path, char **ret)
{
	_cleanup_free_ char *q = NULL;
	size_t n;
	int r;

	if (!h->strip)
		return cg_join(h->ns_root, proc_path, ret);
	r = cg_join("/", proc_path, &q);
	if (r < 0)
		return r;
	if (streq(h->mount_root, "/")) {
		*ret = TAKE_PTR(q);
		return 0;
	}
	n = strlen(h->mount_root);
	if (!strneq(q, h->mount_root, n) || (q[n] != 0 && q[n] != '/'))
		return -ENOENT;
	*ret = strdup(q[n] ? q + n : "/");
	return *ret ? 0 : -ENOMEM;
}

/* Where the agent is in one hierarchy: its path under the mount and how to translate. */
static int hier_locate_self(struct placement *p, struct hier *h, const char *proc_path,
			    const char *hint)
{
	_cleanup_free_ char *rel = NULL, *direct = NULL, *found = NULL;
	unsigned budget = SCAN_MAX_DIRS;
	int r;

	r = read_mount_root(p, h->dir, &h->mount_root);
	if (r < 0)
		return r;
	h->ns_root = strdup("/");
	if (!h->ns_root)
		return -ENOMEM;
	if (!strstr(h->mount_root, "..")) {
		h->strip = true;
		r = hier_translate(h, proc_path, &rel);
		if (r == -ENOMEM)
			return r;
		if (r >= 0) {
			direct = strjoin(h->dir, rel);
			if (!direct)
				return -ENOMEM;
			if (file_lists(direct, "cgroup.procs", p->self) > 0) {
				/* The agent's view and the mount agree. */
				h->self = TAKE_PTR(rel);
				return 0;
			}
		}
	}
	/* A private cgroup namespace: the agent sees its own cgroup as "/" (or a path relative
	 * to its namespace root), while the hierarchy mounted at cgroup_root is the host's. The
	 * runtime creates the same path in every hierarchy: try the one found in the last first. */
	r = 0;
	if (hint) {
		_cleanup_free_ char *d = strjoin(h->dir, hint);

		if (!d)
			return -ENOMEM;
		if (file_lists(d, "cgroup.procs", p->self) > 0) {
			found = strdup(hint);
			if (!found)
				return -ENOMEM;
			r = 1;
		}
	}
	if (r == 0)
		r = scan(h->dir, "/", p->self, 0, &budget, &found);
	if (r < 0)
		return r;
	if (r == 0) {
		log_debug("placement: pid=%d not found in hierarchy=%s, assuming %s", (int)p->self,
			  h->dir, proc_path);
		h->self = rel ? TAKE_PTR(rel) : strdup(proc_path);
		return h->self ? 0 : -ENOMEM;
	}
	h->strip = false;
	h->self = TAKE_PTR(found);
	free(h->ns_root);
	if (streq(proc_path, "/"))
		h->ns_root = strdup(h->self);
	else {
		size_t a = strlen(h->self), b = strlen(proc_path);

		if (a > b && streq(h->self + a - b, proc_path))
			h->ns_root = strndup(h->self, a - b);
		else
			h->ns_root = strdup(h->self);
	}
	return h->ns_root ? 0 : -ENOMEM;
}

/* Container cgroup -> the cgroup QEMU must stay out of (see placement_opts). */
static int hier_forbidden(const struct placement *p, struct hier *h)
{
	_cleanup_free_ char *parent = NULL;
	const char *base;
	int r;

	if (p->container) {
		h->forbidden = strdup(p->container);
		return h->forbidden ? 0 : -ENOMEM;
	}
	r = cg_parent(h->self, &parent);
	if (r < 0)
		return r;
	base = strrchr(parent, '/');
	base = base ? base + 1 : parent;
	h->forbidden = strdup(!streq(parent, "/") && strstr(base, "pod") ? parent : h->self);
	return h->forbidden ? 0 : -ENOMEM;
}

static int detect_layout(const char *root, enum placement_layout *ret)
{
	_cleanup_free_ char *unified = NULL;
	_cleanup_(closedirp) DIR *d = NULL;
	struct dirent *de;

	if (file_exists(root, "cgroup.controllers")) {
		*ret = PLACEMENT_LAYOUT_V2;
		return 0;
	}
	unified = strjoin(root, "/unified");
	if (!unified)
		return -ENOMEM;
	if (file_exists(unified, "cgroup.controllers")) {
		*ret = PLACEMENT_LAYOUT_HYBRID;
		return 0;
	}
	d = opendir(root);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		_cleanup_free_ char *sub = NULL;

		if (de->d_name[0] == '.')
			continue;
		sub = strjoin(root, "/", de->d_name);
		if (!sub)
			return -ENOMEM;
		if (file_exists(sub, "tasks")) {
			*ret = PLACEMENT_LAYOUT_V1;
			return 0;
		}
	}
	return -ENOENT;
}

static char *dup_or(const char *s, const char *def)
{
	return strdup(isempty(s) ? def : s);
}

int placement_new(const struct placement_opts *o, struct placement **ret)
{
	_cleanup_placement_ struct placement *p = NULL;
	_cleanup_free_ char *self_path = NULL;
	struct cg_line *lines = NULL;
	_cleanup_free_ char *hint = NULL; /* a copy: p->h moves on realloc */
	size_t n_lines = 0;
	int r;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->cgroup_root = dup_or(o ? o->cgroup_root : NULL, "/sys/fs/cgroup");
	p->proc_root = dup_or(o ? o->proc_root : NULL, "/proc");
	p->partition = dup_or(o ? o->host_partition : NULL, "/machine");
	if (!p->cgroup_root || !p->proc_root || !p->partition)
		return -ENOMEM;
	if (p->partition[0] != '/' || streq(p->partition, "/"))
		return -EINVAL;
	if (o && o->container_cgroup) {
		if (o->container_cgroup[0] != '/')
			return -EINVAL;
		r = cg_join("/", o->container_cgroup, &p->container);
		if (r < 0)
			return r;
	}
	p->self = o && o->self_pid > 0 ? o->self_pid : getpid();
	p->timeout_ms = o && o->systemd_timeout_ms ? o->systemd_timeout_ms : 10000;

	r = detect_layout(p->cgroup_root, &p->layout);
	if (r < 0)
		return r;

	if (asprintf_safe(&self_path, "%s/%d/cgroup", p->proc_root, (int)p->self) < 0)
		return -ENOMEM;
	r = read_cgroup_file(self_path, &lines, &n_lines);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n_lines && r >= 0; i++) {
		_cleanup_free_ char *dir = NULL;
		struct hier *nh, *h;
		bool v2 = false;

		r = hier_dir(p, lines[i].key, &v2, &dir);
		if (r < 0 || !dir)
			continue;
		nh = realloc(p->h, (p->n_h + 1) * sizeof(*p->h));
		if (!nh) {
			r = -ENOMEM;
			break;
		}
		p->h = nh;
		h = &p->h[p->n_h++];
		*h = (struct hier){.v2 = v2};
		h->key = strdup(lines[i].key);
		h->dir = TAKE_PTR(dir);
		h->cpuset = !v2 && strstr(h->key, "cpuset") != NULL;
		if (!h->key) {
			r = -ENOMEM;
			break;
		}
		r = hier_locate_self(p, h, lines[i].path, hint);
		if (r >= 0 && !h->strip) {
			free(hint);
			hint = strdup(h->self);
			if (!hint)
				r = -ENOMEM;
		}
		if (r >= 0)
			r = hier_forbidden(p, h);
	}
	cg_lines_free(lines, n_lines);
	if (r < 0)
		return r;
	if (p->n_h == 0)
		return -ENOENT;

	if (!o || o->systemd != PLACEMENT_SYSTEMD_NO) {
		if (o && o->bus_address) {
			p->bus_address = strdup(o->bus_address);
			if (!p->bus_address)
				return -ENOMEM;
		}
		r = placement_systemd_open(p->bus_address, p->timeout_ms, &p->bus);
		if (r < 0) {
			log_debug_errno(r, "placement: no host systemd, using cgroupfs: %m");
			if (o && o->systemd == PLACEMENT_SYSTEMD_YES)
				return -ENOTCONN;
			p->bus = NULL;
		}
	}
	*ret = TAKE_PTR(p);
	return 0;
}

enum placement_layout placement_layout(const struct placement *p)
{
	return p->layout;
}

static const char *const layout_names[] = {
    [PLACEMENT_LAYOUT_V1] = "v1",
    [PLACEMENT_LAYOUT_V2] = "v2",
    [PLACEMENT_LAYOUT_HYBRID] = "hybrid",
};
DEFINE_STRING_TABLE_TO(placement_layout, enum placement_layout, layout_names, "unknown")

const char *placement_container_cgroup(const struct placement *p)
{
	/* The unified (or first) hierarchy stands for all: they agree on a real node. */
	for (size_t i = 0; i < p->n_h; i++)
		if (p->h[i].v2)
			return p->h[i].forbidden;
	return p->n_h > 0 ? p->h[0].forbidden : "/";
}

void placement_describe(const struct placement *p, FILE *f)
{
	fprintf(f, "layout=%s container_cgroup=%s partition=%s systemd=%s hierarchies=",
		placement_layout_to_string(p->layout), placement_container_cgroup(p), p->partition,
		p->bus ? "yes" : "no");
	for (size_t i = 0; i < p->n_h; i++)
		fprintf(f, "%s%s:%s", i ? "," : "", p->h[i].v2 ? "unified" : p->h[i].key,
			p->h[i].self);
	fputc('\n', f);
}

static const struct hier *hier_by_key(const struct placement *p, const char *key)
{
	for (size_t i = 0; i < p->n_h; i++)
		if (streq(p->h[i].key, key))
			return &p->h[i];
	return NULL;
}

/* Writes text to dir/name in one write(2) (cgroupfs takes one id per write). O_APPEND|O_CREAT
 * change nothing on cgroupfs and let fixture trees record every write. */
static int write_attr(const char *dir, const char *name, const char *text)
{
	_cleanup_free_ char *path = strjoin(dir, "/", name);
	_cleanup_close_ int fd = -1;
	size_t n = strlen(text);
	ssize_t w;

	if (!path)
		return -ENOMEM;
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
	if (fd < 0)
		return -errno;
	w = write(fd, text, n);
	if (w < 0)
		return -errno;
	return (size_t)w == n ? 0 : -EIO;
}

static int copy_attr(const char *from, const char *to, const char *name)
{
	_cleanup_free_ char *path = strjoin(from, "/", name), *text = NULL;
	int r;

	if (!path)
		return -ENOMEM;
	r = read_file(path, 64u << 10, &text, NULL);
	if (r < 0)
		return r;
	if (isempty(text) || streq(text, "\n"))
		return 0;
	return write_attr(to, name, text);
}

/* A v2 child gets the controllers its parent has (written one by one: a single refused
 * controller must not block the others). */
static void enable_controllers(const char *parent)
{
	_cleanup_free_ char *path = strjoin(parent, "/cgroup.controllers"), *text = NULL;
	char *save = NULL;

	if (!path || read_file(path, 4096, &text, NULL) < 0)
		return;
	for (char *c = strtok_r(text, " \n", &save); c; c = strtok_r(NULL, " \n", &save)) {
		_cleanup_free_ char *plus = strjoin("+", c);
		int r;

		r = plus ? write_attr(parent, "cgroup.subtree_control", plus) : -ENOMEM;
		if (r < 0)
			log_debug_errno(r, "placement: enabling %s in %s: %m", c, parent);
	}
}

/* Creates the host cgroup target (absolute host path) in one hierarchy, level by level, so
 * that a new v1 cpuset cgroup gets cpus/mems from its parent before any task is put in. */
static int ensure_cgroup(const struct hier *h, const char *target, char **ret_dir)
{
	_cleanup_free_ char *dir = strdup(h->dir), *copy = strdup(target);
	char *save = NULL;

	if (!dir || !copy)
		return -ENOMEM;
	for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		_cleanup_free_ char *parent = TAKE_PTR(dir);
		int r;

		dir = strjoin(parent, "/", c);
		if (!dir)
			return -ENOMEM;
		if (mkdir(dir, 0755) < 0) {
			if (errno != EEXIST)
				return -errno;
			continue;
		}
		if (h->cpuset) {
			r = copy_attr(parent, dir, "cpuset.cpus");
			if (r >= 0)
				r = copy_attr(parent, dir, "cpuset.mems");
			if (r < 0)
				return r;
		}
		if (h->v2)
			enable_controllers(parent);
	}
	*ret_dir = TAKE_PTR(dir);
	return 0;
}

static int sanitize_name(const char *name, char **ret)
{
	size_t n = strlen(name);
	char *s;

	if (n == 0 || n > 128)
		return -EINVAL;
	s = strdup(name);
	if (!s)
		return -ENOMEM;
	for (char *c = s; *c; c++)
		if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_' && *c != '.')
			*c = '_';
	if (s[0] == '.')
		s[0] = '_';
	*ret = s;
	return 0;
}

struct check_state {
	struct placement *p;
	pid_t pid;
	const char *target; /* host path of the per-VM cgroup, when fixing */
	bool fix;
	bool *v2_moved; /* per hierarchy: the process was written to cgroup.procs */
	pid_t *seen;
	size_t n_seen;
	unsigned n_threads, n_misplaced, n_moved;
	int move_error; /* first failed write; the pair stays counted as left */
	char *violation;
};

static bool seen_has(const struct check_state *s, pid_t tid)
{
	for (size_t i = 0; i < s->n_seen; i++)
		if (s->seen[i] == tid)
			return true;
	return false;
}

static int move_one(struct check_state *s, size_t hi, pid_t tid)
{
	const struct hier *h = &s->p->h[hi];
	_cleanup_free_ char *dir = NULL;
	char id[32];
	int r;

	if (h->v2 && s->v2_moved[hi])
		return 0;
	r = ensure_cgroup(h, s->target, &dir);
	if (r < 0)
		return r;
	snprintf(id, sizeof(id), "%d\n", (int)(h->v2 ? s->pid : tid));
	r = write_attr(dir, h->v2 ? "cgroup.procs" : "tasks", id);
	if (r == -ESRCH)
		return 0; /* the thread exited meanwhile */
	if (r < 0)
		return r;
	if (h->v2)
		s->v2_moved[hi] = true;
	s->n_moved++;
	return 0;
}

/* One thread: counts (and with fix moves) every hierarchy where it is in the container. */
static int check_thread(struct check_state *s, pid_t tid, bool count_only)
{
	_cleanup_free_ char *path = NULL;
	struct cg_line *l = NULL;
	size_t n = 0;
	int r;

	if (asprintf_safe(&path, "%s/%d/task/%d/cgroup", s->p->proc_root, (int)s->pid, (int)tid) <
	    0)
		return -ENOMEM;
	r = read_cgroup_file(path, &l, &n);
	if (r == -ENOENT || r == -ESRCH)
		return 0; /* exited */
	if (r < 0)
		return r;
	for (size_t i = 0; i < n && r >= 0; i++) {
		const struct hier *h = hier_by_key(s->p, l[i].key);
		_cleanup_free_ char *host = NULL;

		if (!h)
			continue;
		r = hier_translate(h, l[i].path, &host);
		if (r == -ENOENT) {
			r = 0; /* outside the mounted part: not in the container either */
			continue;
		}
		if (r < 0 || !cg_is_below(h->forbidden, host))
			continue;
		s->n_misplaced++;
		if (!s->violation && asprintf_safe(&s->violation, "tid=%d hierarchy=%s cgroup=%s",
						   (int)tid, h->v2 ? "unified" : h->key, host) < 0)
			r = -ENOMEM;
		if (r >= 0 && s->fix && !count_only) {
			int k = move_one(s, (size_t)(h - s->p->h), tid);

			if (k == -ENOMEM)
				r = k;
			else if (k < 0) {
				log_debug_errno(k, "placement: moving tid=%d in %s: %m", (int)tid,
						h->dir);
				if (!s->move_error)
					s->move_error = k;
			}
		}
	}
	cg_lines_free(l, n);
	return r;
}

static int cmp_pid(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

	return (x > y) - (x < y);
}

/* The thread ids of s->pid, sorted (deterministic order of writes). */
static int list_tids(const struct check_state *s, pid_t **ret, size_t *ret_n)
{
	_cleanup_free_ char *dir = NULL;
	_cleanup_(closedirp) DIR *d = NULL;
	_cleanup_free_ pid_t *tids = NULL;
	size_t n = 0;
	struct dirent *de;

	if (asprintf_safe(&dir, "%s/%d/task", s->p->proc_root, (int)s->pid) < 0)
		return -ENOMEM;
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? -ESRCH : -errno;
	while ((de = readdir(d))) {
		char *end;
		long v;
		pid_t *nt;

		errno = 0;
		v = strtol(de->d_name, &end, 10);
		if (errno || *end || v <= 0 || v > INT_MAX)
			continue;
		nt = realloc(tids, (n + 1) * sizeof(*nt));
		if (!nt)
			return -ENOMEM;
		tids = nt;
		tids[n++] = (pid_t)v;
	}
	if (n > 0)
		qsort(tids, n, sizeof(*tids), cmp_pid);
	*ret = TAKE_PTR(tids);
	*ret_n = n;
	return 0;
}

/* One pass over the threads not handled yet. Returns the number of new threads. */
static int pass(struct check_state *s, bool count_only)
{
	_cleanup_free_ pid_t *tids = NULL;
	size_t n = 0;
	int r, n_new = 0;

	r = list_tids(s, &tids, &n);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		if (!count_only) {
			pid_t *ns;

			if (seen_has(s, tids[i]))
				continue;
			ns = realloc(s->seen, (s->n_seen + 1) * sizeof(*ns));
			if (!ns)
				return -ENOMEM;
			s->seen = ns;
			s->seen[s->n_seen++] = tids[i];
		}
		n_new++;
		r = check_thread(s, tids[i], count_only);
		if (r < 0)
			return r;
	}
	return n_new;
}

static void record(struct placement *p, const char *vm_name, pid_t pid, unsigned n_left,
		   char **violation)
{
	struct vm_rec *v = NULL, *nv;

	for (size_t i = 0; i < p->n_vms; i++)
		if (streq(p->vms[i].name, vm_name))
			v = &p->vms[i];
	if (n_left == 0) {
		if (v)
			placement_forget(p, vm_name);
		return;
	}
	if (!v) {
		char *name = strdup(vm_name);

		nv = name ? realloc(p->vms, (p->n_vms + 1) * sizeof(*nv)) : NULL;
		if (!nv) {
			free(name);
			return; /* the summary undercounts rather than failing the check */
		}
		p->vms = nv;
		v = &p->vms[p->n_vms++];
		*v = (struct vm_rec){.name = name};
	}
	v->pid = pid;
	v->n_left = n_left;
	free(v->violation);
	v->violation = TAKE_PTR(*violation);
}

int placement_check_pid(struct placement *p, pid_t pid, const char *vm_name, bool fix,
			struct placement_report *ret)
{
	_cleanup_free_ char *name = NULL, *target = NULL, *unit = NULL;
	_cleanup_free_ bool *v2_moved = NULL;
	struct check_state s = {.p = p, .pid = pid, .fix = false};
	struct placement_report rep = {0};
	int r;

	if (pid <= 0 || isempty(vm_name))
		return -EINVAL;
	r = sanitize_name(vm_name, &name);
	if (r < 0)
		return r;
	v2_moved = calloc(p->n_h ? p->n_h : 1, sizeof(bool));
	if (!v2_moved)
		return -ENOMEM;
	s.v2_moved = v2_moved;

	r = pass(&s, true);
	if (r < 0)
		goto out;
	rep.n_threads = (unsigned)r;
	rep.n_misplaced = s.n_misplaced;

	if (fix && s.n_misplaced > 0) {
		if (p->bus && placement_systemd_unit_name(name, &unit) >= 0) {
			r = placement_systemd_move(p->bus, unit, "machine.slice", pid,
						   p->timeout_ms);
			if (IN_SET_DISCONNECTED(r)) {
				/* dbus-daemon or systemd restarted on the host: reconnect once. */
				sd_bus *nb = NULL;

				if (placement_systemd_open(p->bus_address, p->timeout_ms, &nb) >=
				    0) {
					sd_bus_flush_close_unref(p->bus);
					p->bus = nb;
					r = placement_systemd_move(p->bus, unit, "machine.slice",
								   pid, p->timeout_ms);
				}
			}
			if (r >= 0) {
				rep.systemd_used = true;
				rep.target = strdup(unit);
			} else
				log_debug_errno(r, "placement: systemd move pid=%d unit=%s: %m",
						(int)pid, unit);
		}
		/* cgroupfs for whatever systemd did not cover (or all of it). */
		if (asprintf_safe(&target, "%s/qemu-%s.hostagent",
				  streq(p->partition, "/") ? "" : p->partition, name) < 0) {
			r = -ENOMEM;
			goto out;
		}
		free(s.violation);
		s.violation = NULL;
		s.fix = true;
		s.target = target;
		s.n_misplaced = 0;
		for (int round = 0; round < FIX_ROUNDS; round++) {
			r = pass(&s, false);
			if (r < 0)
				goto out;
			if (r == 0)
				break;
		}
		rep.n_moved = s.n_moved;
		rep.error = s.move_error;
		if (s.n_moved > 0 && !rep.target)
			rep.target = strdup(target);

		/* Verify: what is left after the moves. */
		free(s.violation);
		s.violation = NULL;
		s.fix = false;
		s.n_misplaced = 0;
		r = pass(&s, true);
		if (r < 0)
			goto out;
	}
	rep.n_left = s.n_misplaced;
	rep.violation = s.violation ? strdup(s.violation) : NULL;
	record(p, vm_name, pid, rep.n_left, &s.violation);
	r = 0;
out:
	if (r == -ESRCH)
		placement_forget(p, vm_name);
	free(s.violation);
	free(s.seen);
	if (r < 0 || !ret)
		placement_report_done(&rep);
	else
		*ret = rep;
	return r;
}

void placement_report_done(struct placement_report *r)
{
	if (!r)
		return;
	free(r->target);
	free(r->violation);
	*r = (struct placement_report){0};
}

void placement_forget(struct placement *p, const char *vm_name)
{
	_cleanup_free_ char *name = NULL;

	for (size_t i = 0; i < p->n_vms; i++)
		if (streq(p->vms[i].name, vm_name)) {
			vm_rec_done(&p->vms[i]);
			p->vms[i] = p->vms[--p->n_vms];
			break;
		}
	/* cgroupfs keeps an empty cgroup forever: remove the VM's own. rmdir refuses one that
	 * still has processes (a QEMU of the same VM started meanwhile), which is what we want. */
	if (sanitize_name(vm_name, &name) < 0)
		return;
	for (size_t i = 0; i < p->n_h; i++) {
		_cleanup_free_ char *dir = NULL;

		if (asprintf_safe(&dir, "%s%s/qemu-%s.hostagent", p->h[i].dir, p->partition, name) <
		    0)
			return;
		if (rmdir(dir) < 0 && errno != ENOENT)
			log_debug("placement: keeping %s: %s", dir, strerror(errno));
	}
}

unsigned placement_violations(const struct placement *p)
{
	return (unsigned)p->n_vms;
}

int placement_violation_reason(const struct placement *p, char **ret)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	if (p->n_vms == 0)
		return -ENOENT;
	f = open_memstream(&buf, &len);
	if (!f)
		return -ENOMEM;
	fprintf(f, "%zu VM(s) left inside the container cgroup %s:", p->n_vms,
		placement_container_cgroup(p));
	for (size_t i = 0; i < p->n_vms && i < REASON_MAX_VMS; i++)
		fprintf(f, "%s %s (pid %d, %s)", i ? "," : "", p->vms[i].name, (int)p->vms[i].pid,
			strempty(p->vms[i].violation));
	if (p->n_vms > REASON_MAX_VMS)
		fprintf(f, ", ...");
	if (fclose(f) != 0) {
		free(buf);
		return -ENOMEM;
	}
	*ret = buf;
	return 0;
}

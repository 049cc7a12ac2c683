#include <libgen.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "agent/auth.h"
#include "agent/region.h"
#include "common/config.h"
#include "common/fs.h"
#include "common/http-client.h"
#include "common/log.h"
#include "common/macros.h"

#define TOKEN_MAX	      8192
#define CACHE_MAX_ENTRIES     4096
#define MAX_PENDING	      64 /* validations in flight; more callers wait or get 503 */
#define NEGATIVE_SECONDS      5	 /* a token Keystone refused is refused again without asking */
#define MAX_WAITERS	      1024
#define VALIDATE_TIMEOUT_MS   5000
#define STANDALONE_TOKEN_SIZE 32

/* ---- cache ---- */

struct cache_entry {
	uint64_t hash;
	uint64_t until;
	char *token;
};

struct auth_cache {
	struct cache_entry *e;
	size_t n, max;
};

static uint64_t token_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

static void entry_clear(struct cache_entry *e)
{
	if (e->token) {
		explicit_bzero(e->token, strlen(e->token));
		free(e->token);
	}
	*e = (struct cache_entry){0};
}

int auth_cache_new(size_t max_entries, struct auth_cache **ret)
{
	if (max_entries == 0)
		return -EINVAL;
	struct auth_cache *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->e = calloc(max_entries, sizeof(*c->e));
	if (!c->e) {
		free(c);
		return -ENOMEM;
	}
	c->max = max_entries;
	*ret = c;
	return 0;
}

struct auth_cache *auth_cache_free(struct auth_cache *c)
{
	if (!c)
		return NULL;
	for (size_t i = 0; i < c->n; i++)
		entry_clear(&c->e[i]);
	free(c->e);
	free(c);
	return NULL;
}

static void cache_remove(struct auth_cache *c, size_t i)
{
	entry_clear(&c->e[i]);
	c->e[i] = c->e[c->n - 1];
	c->e[c->n - 1] = (struct cache_entry){0};
	c->n--;
}

static ssize_t cache_find(struct auth_cache *c, const char *token, uint64_t h)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->e[i].hash == h && auth_token_equal(token, c->e[i].token))
			return (ssize_t)i;
	return -1;
}

int auth_cache_put(struct auth_cache *c, const char *token, uint64_t until_usec, uint64_t now_usec)
{
	if (until_usec <= now_usec)
		return 0;
	uint64_t h = token_hash(token);
	ssize_t i = cache_find(c, token, h);
	if (i >= 0) {
		c->e[i].until = until_usec;
		return 0;
	}
	if (c->n == c->max) {
		for (size_t k = c->n; k > 0; k--)
			if (c->e[k - 1].until <= now_usec)
				cache_remove(c, k - 1);
	}
	if (c->n == c->max) {
		size_t soonest = 0;
		for (size_t k = 1; k < c->n; k++)
			if (c->e[k].until < c->e[soonest].until)
				soonest = k;
		cache_remove(c, soonest);
	}
	char *t = strdup(token);
	if (!t)
		return -ENOMEM;
	c->e[c->n++] = (struct cache_entry){.hash = h, .until = until_usec, .token = t};
	return 0;
}

bool auth_cache_get(struct auth_cache *c, const char *token, uint64_t now_usec)
{
	ssize_t i = cache_find(c, token, token_hash(token));
	if (i < 0)
		return false;
	if (c->e[i].until <= now_usec) {
		cache_remove(c, (size_t)i);
		return false;
	}
	return true;
}

size_t auth_cache_size(const struct auth_cache *c)
{
	return c ? c->n : 0;
}

uint64_t auth_cache_until(uint64_t now_usec, unsigned cache_seconds, uint64_t expires_usec)
{
	if (cache_seconds == 0 || expires_usec <= now_usec)
		return 0;
	return MIN(now_usec + (uint64_t)cache_seconds * USEC_PER_SEC, expires_usec);
}

bool auth_token_equal(const char *given, const char *expected)
{
	size_t lg = strlen(given), le = strlen(expected);
	unsigned char d = lg != le;
	for (size_t i = 0; i < le; i++)
		d |= (unsigned char)(expected[i] ^ (i < lg ? given[i] : 0));
	return d == 0;
}

bool auth_token_wellformed(const char *token)
{
	if (isempty(token))
		return false;
	size_t i = 0;
	for (; token[i]; i++) {
		if (i >= TOKEN_MAX)
			return false;
		if ((unsigned char)token[i] <= 0x20 || (unsigned char)token[i] >= 0x7f)
			return false;
	}
	return true;
}

static bool project_listed(json_t *project, char *const *list, const char *own_domain)
{
	const char *id = json_string_value(json_object_get(project, "id"));
	const char *name = json_string_value(json_object_get(project, "name"));
	const char *domain =
	    json_string_value(json_object_get(json_object_get(project, "domain"), "name"));
	for (char *const *e = list; e && *e; e++) {
		const char *slash = strchr(*e, '/');
		if (id && streq(*e, id))
			return true;
		if (!name || !domain)
			continue;
		if (slash && strlen(domain) == (size_t)(slash - *e) &&
		    strneq(*e, domain, strlen(domain)) && streq(slash + 1, name))
			return true;
		if (!slash && streq(*e, name) && streq_ptr(own_domain, domain))
			return true;
	}
	return false;
}

int auth_token_allowed(json_t *token_body, const struct auth_policy *p)
{
	json_t *token = json_object_get(token_body, "token");
	if (!json_is_object(token))
		return -EBADMSG;
	json_t *project = json_object_get(token, "project");
	bool have_projects = p && p->projects && p->projects[0];
	bool have_roles = p && p->roles && p->roles[0];
	if (have_projects &&
	    !(json_is_object(project) && project_listed(project, p->projects, p->own_domain)))
		return -EPERM;
	if (!have_roles)
		return 0;
	if (!have_projects) {
		json_t *sys = json_object_get(token, "system");
		bool system_all = json_is_true(json_object_get(sys, "all"));
		char *const own[] = {(char *)p->own_project, NULL};
		if (!system_all && !(p->own_project && json_is_object(project) &&
				     project_listed(project, own, p->own_domain)))
			return -EPERM;
	}
	json_t *list = json_object_get(token, "roles");
	size_t i;
	json_t *role;
	json_array_foreach (list, i, role) {
		const char *name = json_string_value(json_object_get(role, "name"));
		if (name && strv_contains(p->roles, name))
			return 0;
	}
	return -EPERM;
}

int auth_check_validation(long status, const char *body, size_t body_len,
			  const struct auth_policy *policy, uint64_t *ret_expires)
{
	switch (status) {
	case 200:
		break;
	case 404: /* unknown, expired or revoked subject token */
		return -EACCES;
	case 401: /* our own service token was refused: the caller's is unverified (503), and
		   * the region session logs in again */
		return -EIO;
	case 403: /* the service account may not validate tokens */
		return -EIO;
	default:
		return -EIO;
	}
	json_error_t jerr;
	json_auto_t *j = json_loadb(body, body_len, 0, &jerr);
	if (!j)
		return -EBADMSG;
	uint64_t issued, expires;
	if (keystone_token_times(j, &issued, &expires) < 0)
		return -EBADMSG;
	int r = auth_token_allowed(j, policy);
	if (r < 0)
		return r;
	*ret_expires = expires;
	return 0;
}

/* ---- the validator ---- */

struct waiter {
	auth_done_fn cb;
	void *userdata;
};

struct pending {
	struct auth *auth;
	struct pending *next;
	char *token;
	struct waiter *w;
	size_t n_w, cap_w;
	struct region_http *http;
};

struct auth {
	const struct config *cfg; /* the agent's */
	struct region *region;
	bool standalone;
	char *static_token;
	struct auth_cache *cache;
	struct auth_cache *refused; /* tokens Keystone refused, for NEGATIVE_SECONDS */
	struct pending *pending;
	size_t n_pending;
};

static void pending_free(struct pending *p)
{
	if (!p)
		return;
	region_http_cancel(p->http);
	if (p->token) {
		explicit_bzero(p->token, strlen(p->token));
		free(p->token);
	}
	free(p->w);
	free(p);
}

static int pending_add_waiter(struct pending *p, auth_done_fn cb, void *userdata)
{
	if (p->n_w >= MAX_WAITERS)
		return -EBUSY;
	if (p->n_w == p->cap_w) {
		size_t cap = p->cap_w ? p->cap_w * 2 : 4;
		struct waiter *w = realloc(p->w, cap * sizeof(*w));
		if (!w)
			return -ENOMEM;
		p->w = w;
		p->cap_w = cap;
	}
	p->w[p->n_w++] = (struct waiter){cb, userdata};
	return 0;
}

static void pending_unlink(struct auth *au, struct pending *p)
{
	for (struct pending **pp = &au->pending; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			au->n_pending--;
			return;
		}
}

static void on_validate_done(int err, const struct http_response *resp, void *userdata)
{
	struct pending *p = userdata;
	struct auth *au = p->auth;
	p->http = NULL;
	int result = err;
	if (err >= 0) {
		uint64_t expires = 0;
		const struct config *cfg = au->cfg;
		const struct auth_policy policy = {
		    .roles = cfg->api_roles,
		    .projects = cfg->api_projects,
		    .own_project = cfg->admin_project,
		    .own_domain = cfg->admin_project_domain,
		};
		result = auth_check_validation(resp->status, resp->body, resp->body_len, &policy,
					       &expires);
		if (resp->status == 401)
			region_token_invalid(au->region);
		else if (resp->status == 403)
			log_warning("Keystone refused to validate a token for user %s: it needs "
				    "the admin or service role",
				    au->cfg->admin_user);
		else if (resp->status != 200 && resp->status != 404)
			log_warning("Keystone answered HTTP %ld to a token validation",
				    resp->status);
		if (result == 0) {
			uint64_t now = now_usec(CLOCK_REALTIME);
			uint64_t until = auth_cache_until(
			    now, (unsigned)MAX(au->cfg->token_cache_seconds, 0), expires);
			if (until > 0 && auth_cache_put(au->cache, p->token, until, now) < 0)
				log_debug("Token cache: out of memory");
		} else if (result == -EACCES) {
			uint64_t now = now_usec(CLOCK_REALTIME);
			if (auth_cache_put(au->refused, p->token,
					   now + NEGATIVE_SECONDS * USEC_PER_SEC, now) < 0)
				log_debug("Refused-token cache: out of memory");
		}
	} else
		log_warning_errno(err, "Token validation against keystone failed: %m");
	log_debug("Token validation result=%d waiters=%zu", result, p->n_w);
	/* Callbacks may validate again: take p off the list first. */
	pending_unlink(au, p);
	for (size_t i = 0; i < p->n_w; i++)
		p->w[i].cb(result, p->w[i].userdata);
	pending_free(p);
}

static int validate_remote(struct auth *au, const char *token, auth_done_fn cb, void *userdata)
{
	uint64_t now = now_usec(CLOCK_REALTIME);
	if (auth_cache_get(au->cache, token, now))
		return 0;
	if (auth_cache_get(au->refused, token, now))
		return -EACCES;
	for (struct pending *p = au->pending; p; p = p->next)
		if (auth_token_equal(token, p->token)) {
			int r = pending_add_waiter(p, cb, userdata);
			return r < 0 ? r : AUTH_PENDING;
		}
	const char *svc = region_token(au->region);
	if (!svc)
		return -ENOTCONN; /* not (yet) authenticated to keystone: nobody can be verified */
	if (au->n_pending >= MAX_PENDING)
		return -EBUSY;
	struct pending *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->auth = au;
	p->token = strdup(token);
	int r = p->token ? pending_add_waiter(p, cb, userdata) : -ENOMEM;
	if (r < 0) {
		pending_free(p);
		return r;
	}
	const char *base = au->cfg->auth_url;
	size_t l = strlen_trim_slashes(base);
	_cleanup_free_ char *url = NULL, *h1 = NULL, *h2 = NULL;
	if (asprintf_safe(&url, "%.*s/auth/tokens?nocatalog", (int)l, base) < 0 ||
	    asprintf_safe(&h1, "X-Auth-Token: %s", svc) < 0 ||
	    asprintf_safe(&h2, "X-Subject-Token: %s", token) < 0)
		r = -ENOMEM;
	else {
		char *headers[] = {h1, h2, NULL};
		r = region_validation_submit(au->region, url, headers, VALIDATE_TIMEOUT_MS,
					     on_validate_done, p, &p->http);
	}
	if (h1)
		explicit_bzero(h1, strlen(h1));
	if (h2)
		explicit_bzero(h2, strlen(h2));
	if (r < 0) {
		pending_free(p);
		return r;
	}
	p->next = au->pending;
	au->pending = p;
	au->n_pending++;
	return AUTH_PENDING;
}

int auth_validate(struct auth *au, const char *token, auth_done_fn cb, void *userdata)
{
	if (!au || !cb)
		return -EINVAL;
	if (!auth_token_wellformed(token))
		return -EACCES;
	if (au->standalone) {
		if (!au->static_token)
			return -ENOTCONN;
		return auth_token_equal(token, au->static_token) ? 0 : -EACCES;
	}
	return validate_remote(au, token, cb, userdata);
}

/* ---- standalone token file ---- */

static int load_token_file(const char *path, char **ret)
{
	_cleanup_free_ char *data = NULL;
	size_t len;
	int r = read_file(path, TOKEN_MAX, &data, &len);
	if (r < 0)
		return r;
	while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r' || data[len - 1] == ' '))
		data[--len] = 0;
	if (len < 16 || !auth_token_wellformed(data)) {
		explicit_bzero(data, len);
		return -EBADMSG;
	}
	*ret = TAKE_PTR(data);
	return 0;
}

static int create_token_file(const char *path, char **ret)
{
	unsigned char raw[STANDALONE_TOKEN_SIZE];
	size_t got = 0;
	while (got < sizeof(raw)) {
		ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
		got += (size_t)n;
	}
	char hex[2 * STANDALONE_TOKEN_SIZE + 2];
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(hex + 2 * i, 3, "%02x", raw[i]);
	explicit_bzero(raw, sizeof(raw));
	_cleanup_free_ char *dir = strdup(path);
	if (!dir)
		return -ENOMEM;
	int r = mkdir_p(dirname(dir), 0700);
	if (r < 0)
		return r;
	size_t l = 2 * STANDALONE_TOKEN_SIZE;
	hex[l] = '\n';
	hex[l + 1] = 0;
	r = write_file_atomic(path, hex, l + 1, 0600);
	hex[l] = 0;
	if (r >= 0 && !(*ret = strdup(hex)))
		r = -ENOMEM;
	explicit_bzero(hex, sizeof(hex));
	return r;
}

int auth_start(struct auth *au)
{
	if (!au->standalone)
		return 0;
	const char *path = au->cfg->api_token_file;
	if (isempty(path))
		return log_error_errno(EINVAL, "No api_token_file configured");
	int r = load_token_file(path, &au->static_token);
	if (r == -ENOENT) {
		r = create_token_file(path, &au->static_token);
		if (r < 0)
			return log_error_errno(r, "Failed to create API token file %s: %m", path);
		log_kv(LOG_INFO, "Created API token file", "path", path, NULL);
		return 0;
	}
	if (r < 0)
		return log_error_errno(r, "Failed to read API token file %s: %m", path);
	/* Anyone who can read the token controls every guest on the node. */
	struct stat st;
	if (stat(path, &st) == 0 && (st.st_mode & 077))
		return log_error_errno(EPERM,
				       "API token file %s is accessible by group or others (mode "
				       "%04o): chmod 0600 it",
				       path, (unsigned)(st.st_mode & 07777));
	log_kv(LOG_INFO, "Loaded API token file", "path", path, NULL);
	return 0;
}

int auth_new(const struct config *cfg, struct region *region, struct auth **ret)
{
	struct auth *au = calloc(1, sizeof(*au));
	if (!au)
		return -ENOMEM;
	au->cfg = cfg;
	au->region = region;
	au->standalone = config_standalone(cfg);
	int r = auth_cache_new(CACHE_MAX_ENTRIES, &au->cache);
	if (r >= 0)
		r = auth_cache_new(CACHE_MAX_ENTRIES, &au->refused);
	if (r < 0) {
		auth_cache_free(au->cache);
		auth_cache_free(au->refused);
		free(au);
		return r;
	}
	*ret = au;
	return 0;
}

struct auth *auth_free(struct auth *au)
{
	if (!au)
		return NULL;
	/* Waiters are told the check was cancelled, so they free what they hold (the API has
	 * detached its calls from their requests by now). */
	while (au->pending) {
		struct pending *p = au->pending;
		au->pending = p->next;
		for (size_t i = 0; i < p->n_w; i++)
			p->w[i].cb(-ECANCELED, p->w[i].userdata);
		pending_free(p);
	}
	auth_cache_free(au->cache);
	auth_cache_free(au->refused);
	if (au->static_token) {
		explicit_bzero(au->static_token, strlen(au->static_token));
		free(au->static_token);
	}
	free(au);
	return NULL;
}

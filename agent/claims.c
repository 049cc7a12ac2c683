#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "agent/claims.h"
#include "common/macros.h"

struct claim {
	char *path, *owner;
};

struct claims {
	pthread_mutex_t lock;
	struct claim *v;
	size_t n, cap;
};

int claims_new(struct claims **ret)
{
	struct claims *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	*ret = c;
	return 0;
}

struct claims *claims_free(struct claims *c)
{
	if (!c)
		return NULL;
	for (size_t i = 0; i < c->n; i++) {
		free(c->v[i].path);
		free(c->v[i].owner);
	}
	free(c->v);
	pthread_mutex_destroy(&c->lock);
	free(c);
	return NULL;
}

/* Linear: a host has hundreds of disks, and a create looks up a handful. */
static struct claim *find(struct claims *c, const char *path)
{
	for (size_t i = 0; i < c->n; i++)
		if (streq(c->v[i].path, path))
			return &c->v[i];
	return NULL;
}

int claims_take(struct claims *c, const char *owner, const char *const *paths, size_t n,
		size_t *ret_index, char **ret_owner)
{
	pthread_mutex_lock(&c->lock);
	int r = 0;
	size_t fresh = 0;
	for (size_t i = 0; i < n; i++) {
		const struct claim *x = find(c, paths[i]);
		if (x && !streq(x->owner, owner)) {
			if (ret_index)
				*ret_index = i;
			if (ret_owner)
				*ret_owner = strdup(x->owner);
			r = -EBUSY;
			goto out;
		}
		if (!x)
			fresh++;
	}
	if (c->n + fresh > c->cap) {
		size_t cap = MAX(c->cap * 2, c->n + fresh + 16);
		struct claim *v = realloc(c->v, cap * sizeof(*v));
		if (!v) {
			r = -ENOMEM;
			goto out;
		}
		c->v = v;
		c->cap = cap;
	}
	size_t before = c->n;
	for (size_t i = 0; i < n; i++) {
		if (find(c, paths[i]))
			continue; /* owner's already (or named twice in this call) */
		char *p = strdup(paths[i]), *o = strdup(owner);
		if (!p || !o) {
			free(p);
			free(o);
			/* All or nothing: this call's entries are the last ones. */
			while (c->n > before) {
				c->n--;
				free(c->v[c->n].path);
				free(c->v[c->n].owner);
			}
			r = -ENOMEM;
			goto out;
		}
		c->v[c->n++] = (struct claim){.path = p, .owner = o};
	}
out:
	pthread_mutex_unlock(&c->lock);
	return r;
}

static bool kept(const char *path, const char *const *keep, size_t n_keep)
{
	for (size_t i = 0; keep && i < n_keep; i++)
		if (streq(keep[i], path))
			return true;
	return false;
}

void claims_release(struct claims *c, const char *owner, const char *const *keep, size_t n_keep)
{
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n;) {
		if (streq(c->v[i].owner, owner) && !kept(c->v[i].path, keep, n_keep)) {
			free(c->v[i].path);
			free(c->v[i].owner);
			c->v[i] = c->v[--c->n];
		} else
			i++;
	}
	pthread_mutex_unlock(&c->lock);
}

char *claims_owner(struct claims *c, const char *path)
{
	pthread_mutex_lock(&c->lock);
	const struct claim *x = find(c, path);
	char *o = x ? strdup(x->owner) : NULL;
	pthread_mutex_unlock(&c->lock);
	return o;
}

size_t claims_count(struct claims *c)
{
	pthread_mutex_lock(&c->lock);
	size_t n = c->n;
	pthread_mutex_unlock(&c->lock);
	return n;
}

void claims_foreach(struct claims *c,
		    void (*fn)(const char *path, const char *owner, void *userdata), void *userdata)
{
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n; i++)
		fn(c->v[i].path, c->v[i].owner, userdata);
	pthread_mutex_unlock(&c->lock);
}

#include <stdio.h>
#include <stdlib.h>

#include "agent/storage.h"
#include "common/config.h"
#include "common/macros.h"

struct storages {
	struct storage *v;
	size_t n;
};

int storages_new(const struct config *cfg, struct storages **ret)
{
	_cleanup_(storages_freep) struct storages *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	size_t n = strv_length(cfg->local_image_path);
	s->v = calloc(n ? n : 1, sizeof(*s->v));
	if (!s->v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct storage *st = &s->v[i];
		s->n++;
		st->root = strdup(cfg->local_image_path[i]);
		if (!st->root || asprintf(&st->cache_dir, "%s/image_cache", st->root) < 0)
			return -ENOMEM;
		if (asprintf(&st->name, "local_storage_%zu", i) < 0)
			return -ENOMEM;
	}
	*ret = TAKE_PTR(s);
	return 0;
}

struct storages *storages_free(struct storages *s)
{
	if (!s)
		return NULL;
	for (size_t i = 0; i < s->n; i++) {
		free(s->v[i].root);
		free(s->v[i].cache_dir);
		free(s->v[i].name);
		free(s->v[i].id);
		free(s->v[i].cache_id);
	}
	free(s->v);
	free(s);
	return NULL;
}

size_t storages_count(const struct storages *s)
{
	return s ? s->n : 0;
}

const struct storage *storages_get(const struct storages *s, size_t i)
{
	return s && i < s->n ? &s->v[i] : NULL;
}

const struct storage *storages_find(const struct storages *s, const char *id)
{
	if (!s || isempty(id))
		return NULL;
	for (size_t i = 0; i < s->n; i++)
		if (streq_ptr(s->v[i].id, id))
			return &s->v[i];
	for (size_t i = 0; i < s->n; i++)
		if (streq_ptr(s->v[i].name, id))
			return &s->v[i];
	return NULL;
}

const struct storage *storages_find_cache(const struct storages *s, const char *cache_id)
{
	if (!s || isempty(cache_id))
		return NULL;
	for (size_t i = 0; i < s->n; i++)
		if (streq_ptr(s->v[i].cache_id, cache_id))
			return &s->v[i];
	return NULL;
}

const struct storage *storages_find_path(const struct storages *s, const char *path)
{
	if (!s || isempty(path))
		return NULL;
	for (size_t i = 0; i < s->n; i++) {
		size_t l = strlen(s->v[i].root);
		if (strneq(path, s->v[i].root, l) && (path[l] == '/' || path[l] == 0))
			return &s->v[i];
	}
	return NULL;
}

int storages_set_names(struct storages *s, const char *access_ip)
{
	for (size_t i = 0; s && i < s->n; i++) {
		char *name;
		if (asprintf(&name, "host_%s_local_storage_%zu", access_ip, i) < 0)
			return -ENOMEM;
		free(s->v[i].name);
		s->v[i].name = name;
	}
	return 0;
}

static int replace(char **p, const char *v)
{
	if (!v)
		return 0;
	char *c = strdup(v);
	if (!c)
		return -ENOMEM;
	free(*p);
	*p = c;
	return 0;
}

int storages_set_ids(struct storages *s, size_t i, const char *id, const char *cache_id)
{
	if (!s || i >= s->n)
		return -ENOENT;
	int r = replace(&s->v[i].id, id);
	return r < 0 ? r : replace(&s->v[i].cache_id, cache_id);
}

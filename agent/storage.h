/* Local storages as the region knows them: one per local_image_path root, each with its image
 * cache directory (Cloudpods' image_cache_path, <root>/image_cache). The table is built from
 * the configuration at startup and owned by the loop thread; the region ids (storage and
 * storagecache) are filled in by registration (agent/report.c) and kept in state_dir so a
 * restart reuses them. Worker jobs copy what they need (root, cache_dir) on the loop thread
 * before they are queued. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/macros.h"

struct config;

struct storage {
	char *root;	 /* the local_image_path entry, normalised */
	char *cache_dir; /* <root>/image_cache */
	char *name;	 /* host_<access ip>_local_storage_<n> once the access ip is known */
	char *id;	 /* region storage id; NULL until registered */
	char *cache_id;	 /* region storagecache id; NULL until registered */
};

struct storages;

int storages_new(const struct config *cfg, struct storages **ret);
struct storages *storages_free(struct storages *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct storages *, storages_free)
size_t storages_count(const struct storages *s);
const struct storage *storages_get(const struct storages *s, size_t i);
/* The storage whose region id (or, before registration and in standalone mode, whose
 * name) is id; NULL when none. */
const struct storage *storages_find(const struct storages *s, const char *id);
/* The storage whose storagecache id is cache_id; NULL when none. */
const struct storage *storages_find_cache(const struct storages *s, const char *cache_id);
/* The storage whose root holds path (a normalised absolute path); NULL when none. */
const struct storage *storages_find_path(const struct storages *s, const char *path);
/* Sets the name (from the access ip) of every storage. */
int storages_set_names(struct storages *s, const char *access_ip);
/* Records the region ids of storage i (NULL leaves one unchanged). */
int storages_set_ids(struct storages *s, size_t i, const char *id, const char *cache_id);

/* The image cache of each local storage (<root>/image_cache, Cloudpods' image_cache_path),
 * filled from the image service (glance) as the region asks:
 *   POST /disks/image_cache {"disk": {image_id, storagecache_id, format, server_id?, ...}}
 *   DELETE /disks/image_cache {"disk": {image_id, storagecache_id}}
 * A fetch HEADs the image for its properties, reuses a cached file whose MD5 equals the
 * announced checksum, else streams it into <cache>/<id>.tmp (MD5 on the way), verifies size and
 * checksum, checks the image (agent/imagecheck.h), renames it into place and writes
 * <cache>/<id>.inf. Then PUT /storagecaches/<scid>/cachedimages/<id>?auto_create=true tells
 * the region the path. Concurrent requests for one image share one fetch. Downloads run on
 * the cache's own worker pool; everything here is called on the loop thread. */
#pragma once

#include <jansson.h>
#include <systemd/sd-event.h>

#include "agent/ops.h"

struct config;
struct imagecache;
struct region;
struct storage;
struct storages;

/* event, cfg (the agent's), storages and region (the service token, the image endpoint, the
 * cached-image records) outlive the image cache. */
int imagecache_new(sd_event *event, const struct config *cfg, struct storages *storages,
		   struct region *region, struct imagecache **ret);
/* Pending requests are answered -ESHUTDOWN. NULL-safe. */
struct imagecache *imagecache_free(struct imagecache *ic);

/* Refusals (a bad body, an unknown storage cache, no image service, a full queue) return the
 * negative errno at once with *ret_message; otherwise cb runs exactly once, after this
 * returned, with {image_id, path, name, size} or the error naming the image and the cause
 * (-EINVAL for an image that is refused, -EREMOTEIO when the image service or the region
 * failed, -ENOSPC, ...). */
int imagecache_fetch(struct imagecache *ic, json_t *args, op_done_fn cb, void *userdata,
		     char **ret_message);
/* Removes a cached image (missing is success); -EBUSY naming a disk that uses it as its
 * backing file, or when a fetch of it is running (refused at once). */
int imagecache_uncache(struct imagecache *ic, json_t *args, op_done_fn cb, void *userdata,
		       char **ret_message);

/* The storage whose cache the region calls cache_id: its storagecache id or, before
 * registration and standalone, the storage's own id or name. */
const struct storage *imagecache_storage(struct storages *storages, const char *cache_id);
/* Reads <cache_dir>/<image_id>.inf: the image's format ("qcow2"/"raw", size 16). Blocking. */
int imagecache_read_format(const char *cache_dir, const char *image_id, char *ret_format);

/* The request bodies of the disk routes and the image cache, checked in one place before any
 * work is queued (pure: no I/O, no agent state), so a bad body is refused synchronously with
 * a 400 naming the field, and the fuzzer (tests/fuzz/fuzz-bodies.c) reaches the same code:
 *   POST /disks/<storage>/create/<disk>  {"disk": {format?, image_id?, disk_size_mb}}
 *   POST /disks/<storage>/resize/<disk>  {"disk": {size, server_id?}}
 *   POST /disks/image_cache              {"disk": {image_id, storagecache_id, format?, server_id?}}
 *   DELETE /disks/image_cache            {"disk": {image_id, storagecache_id}}
 * The region wraps the fields in "disk"; a bare object is accepted too. The strings of a parsed
 * request point into the body, which must outlive it. Any thread. */
#pragma once

#include <jansson.h>
#include <stdint.h>

#define DISK_MAX_MB (64LL * 1024 * 1024) /* 64 TiB */

enum disk_req_kind {
	DISK_REQ_CREATE,
	DISK_REQ_RESIZE,
	DISK_REQ_CACHE,
	DISK_REQ_UNCACHE,
};

struct disk_request {
	const char *format;	     /* create: qcow2 or raw (an overlay is always qcow2); cache */
	const char *image_id;	     /* create: the cached template, NULL for a blank disk; cache */
	const char *storagecache_id; /* cache, uncache */
	const char *server_id;	     /* resize (online through that guest), cache (progress) */
	int64_t size_mb;	     /* create: 0 = the template's own size; resize: the new size */
};

/* The fields of body (the object itself or its "disk") for kind: 0 with *ret filled, or
 * -EINVAL with *ret_error (malloc'd) naming the field and what is wrong with it. */
int disk_request_parse(enum disk_req_kind kind, json_t *body, struct disk_request *ret,
		       char **ret_error);

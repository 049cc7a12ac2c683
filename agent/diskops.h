/* The region's disk routes on a local storage (CONTRACT.md section 4, rows 9-12):
 *   POST /disks/<storage>/create/<disk> {"disk": {format, disk_size_mb, image_id?}}
 *   POST /disks/<storage>/delete/<disk>
 *   POST /disks/<storage>/resize/<disk> {"disk": {size (MB), server_id?}}
 *   GET  /disks/<storage>/<disk>/status            -> {"status": "exist"|"not_exist"}
 * The disk file is always <root of that storage>/<disk>: nothing in a request picks where a
 * file goes. A disk from a template is a qcow2 overlay on <cache>/<image_id> (no copy). Created
 * and resized with qemu-img on the worker pool; a resize of a running guest's disk goes through
 * libvirt. Create, delete and resize reply {disk_id, disk_size (MB), format, disk_path}
 * (delete: {}). Called on the loop thread; qemu-img and libvirt run on the worker pool and the
 * answer comes back on the loop. */
#pragma once

#include <jansson.h>

#include "agent/ops.h"

struct claims;
struct config;
struct diskops;
struct storages;
struct tasks;
struct virt;

/* Everything given outlives the object: cfg (the agent's servers_path), the worker pool, the
 * libvirt connection (resize of a running guest's disk), the storages and the disk claims. */
int diskops_new(const struct config *cfg, struct tasks *tasks, struct virt *virt,
		struct storages *storages, struct claims *claims, struct diskops **ret);
struct diskops *diskops_free(struct diskops *d);

enum disk_op {
	DISK_OP_CREATE,
	DISK_OP_DELETE,
	DISK_OP_RESIZE,
	DISK_OP_STATUS,
	_DISK_OP_MAX,
};

const char *disk_op_to_string(enum disk_op op);

/* storage_id and disk_id come validated from the router (id_is_valid). Refusals (unknown
 * storage, invalid disk id, a bad body, a full queue) return the negative errno at once with
 * *ret_message; otherwise cb runs exactly once, after this returned, and the reply is freed
 * after it returns. */
int diskops_submit(struct diskops *d, enum disk_op op, const char *storage_id, const char *disk_id,
		   json_t *args, op_done_fn cb, void *userdata, char **ret_message);

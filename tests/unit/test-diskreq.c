/* Request bodies of the disk routes and the image cache (agent/diskreq.c): what the region
 * sends is accepted with the values the operations use, and every bad field is refused with a
 * message naming it. Table-driven. */
#include <stdlib.h>
#include <string.h>

#include "agent/diskreq.h"
#include "tests/unit/test-common.h"

struct row {
	enum disk_req_kind kind;
	const char *body;
	const char *error; /* NULL: accepted; else a part of the message */
	const char *format, *image_id, *scid, *sid;
	int64_t size_mb;
};

static const struct row rows[] = {
    /* create: as the region sends it, wrapped in "disk" */
    {DISK_REQ_CREATE, "{\"disk\":{\"format\":\"raw\",\"disk_size_mb\":1024}}", NULL, "raw", NULL,
     NULL, NULL, 1024},
    {DISK_REQ_CREATE, "{\"disk_size_mb\":10}", NULL, "qcow2", NULL, NULL, NULL, 10},
    /* from a template: always qcow2; -1 or no size is the template's own size */
    {DISK_REQ_CREATE, "{\"disk\":{\"format\":\"raw\",\"image_id\":\"img-1\",\"disk_size_mb\":-1}}",
     NULL, "qcow2", "img-1", NULL, NULL, 0},
    {DISK_REQ_CREATE, "{\"disk\":{\"image_id\":\"img-1\"}}", NULL, "qcow2", "img-1", NULL, NULL, 0},
    {DISK_REQ_CREATE, "{\"disk\":{\"image_id\":\"\",\"disk_size_mb\":5}}", NULL, "qcow2", NULL,
     NULL, NULL, 5},
    {DISK_REQ_CREATE, "{\"disk\":{}}", "disk.disk_size_mb: missing"},
    {DISK_REQ_CREATE, "{\"disk\":{\"disk_size_mb\":0}}", "disk.disk_size_mb: must be"},
    {DISK_REQ_CREATE, "{\"disk\":{\"disk_size_mb\":\"10\"}}", "disk.disk_size_mb: must be"},
    {DISK_REQ_CREATE, "{\"disk\":{\"disk_size_mb\":67108865}}", "disk.disk_size_mb: must be"},
    {DISK_REQ_CREATE, "{\"disk\":{\"format\":\"vmdk\",\"disk_size_mb\":1}}",
     "disk.format: vmdk is not supported"},
    {DISK_REQ_CREATE, "{\"disk\":{\"format\":7,\"disk_size_mb\":1}}", "disk.format: expected"},
    {DISK_REQ_CREATE, "{\"disk\":{\"image_id\":\"../etc\",\"disk_size_mb\":1}}",
     "disk.image_id: invalid"},
    {DISK_REQ_CREATE, "{\"disk\":{\"image_id\":[],\"disk_size_mb\":1}}", "disk.image_id: expected"},
    {DISK_REQ_CREATE, "[1]", "body: expected a JSON object"},
    /* resize */
    {DISK_REQ_RESIZE, "{\"disk\":{\"size\":2048,\"server_id\":\"s-1\"}}", NULL, NULL, NULL, NULL,
     "s-1", 2048},
    {DISK_REQ_RESIZE, "{\"disk\":{\"size\":2048,\"server_id\":null}}", NULL, NULL, NULL, NULL, NULL,
     2048},
    {DISK_REQ_RESIZE, "{\"disk\":{\"size\":-5}}", "disk.size: must be"},
    {DISK_REQ_RESIZE, "{\"disk\":{}}", "disk.size: missing"},
    {DISK_REQ_RESIZE, "{\"disk\":{\"size\":5,\"server_id\":\"a b\"}}", "disk.server_id: invalid"},
    /* image cache */
    {DISK_REQ_CACHE,
     "{\"disk\":{\"image_id\":\"i1\",\"storagecache_id\":\"sc1\",\"format\":\"raw\","
     "\"server_id\":\"s1\"}}",
     NULL, "raw", "i1", "sc1", "s1", 0},
    {DISK_REQ_CACHE, "{\"disk\":{\"image_id\":\"i1\",\"storagecache_id\":\"sc1\"}}", NULL, "qcow2",
     "i1", "sc1", NULL, 0},
    {DISK_REQ_CACHE, "{\"disk\":{\"storagecache_id\":\"sc1\"}}", "disk.image_id: missing"},
    {DISK_REQ_CACHE, "{\"disk\":{\"image_id\":\"i1\"}}", "disk.storagecache_id: missing"},
    {DISK_REQ_CACHE,
     "{\"disk\":{\"image_id\":\"i1\",\"storagecache_id\":\"sc1\",\"format\":\"iso\"}}",
     "disk.format: iso is not cached here"},
    {DISK_REQ_CACHE, "{\"disk\":{\"image_id\":\"i/1\",\"storagecache_id\":\"sc1\"}}",
     "disk.image_id: invalid"},
    {DISK_REQ_UNCACHE, "{\"disk\":{\"image_id\":\"i1\",\"storagecache_id\":\"sc1\"}}", NULL, NULL,
     "i1", "sc1", NULL, 0},
    {DISK_REQ_UNCACHE, "{\"disk\":{\"image_id\":\"i1\",\"storagecache_id\":\"\"}}",
     "disk.storagecache_id: missing"},
};

static void check_str(const char *got, const char *want)
{
	if (!want)
		assert_null(got);
	else
		assert_string_equal(got, want);
}

static void test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *w = &rows[i];
		json_t *j = json_loads(w->body, JSON_DECODE_ANY, NULL);
		assert_non_null(j);
		struct disk_request req;
		char *err = NULL;
		int r = disk_request_parse(w->kind, j, &req, &err);
		if (w->error) {
			if (r != -EINVAL || !err || !strstr(err, w->error))
				fail_msg("row %zu (%s): want error '%s', got %d '%s'", i, w->body,
					 w->error, r, err ? err : "");
		} else {
			if (r != 0)
				fail_msg("row %zu (%s): refused: %s", i, w->body, err ? err : "");
			check_str(req.format, w->format);
			check_str(req.image_id, w->image_id);
			check_str(req.storagecache_id, w->scid);
			check_str(req.server_id, w->sid);
			assert_int_equal(req.size_mb, w->size_mb);
		}
		free(err);
		json_decref(j);
	}
}

TEST_MAIN(cmocka_unit_test(test_table))

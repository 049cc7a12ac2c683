/* libFuzzer target: the other untrusted inputs that reach the agent's parsers. The first byte
 * picks one:
 *   0 a QMP monitor command (POST /servers/<sid>/monitor with qmp), 1 an HMP one: the filter
 *     must refuse it or forward something it accepts again unchanged (L9: the filter and the
 *     executor see the same bytes);
 *   2 the JSON qemu-img prints about a downloaded image (an untrusted image's metadata): the
 *     check accepts it only without a backing or data file;
 *   'D' (before the others) a create body with deploy fields: what configdrive accepts renders
 *     into YAML documents that parse, as a whole, with libyaml's parser;
 *   'K' (before the others) a disk route or image cache body, the next byte picking which ('0'
 *     create, '1' resize, '2' image cache, '3' uncache):
 *     what disk_request_parse accepts has valid ids, a cached format and a size in range.
 * Nothing may crash, leak or read out of bounds. Built and run by tests/fuzz/run.sh. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "agent/configdrive.h"
#include "agent/diskreq.h"
#include "agent/imagecheck.h"
#include "agent/monitor.h"
#include "common/path.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static void monitor(const char *s, bool qmp)
{
	char *fwd = NULL;
	if (monitor_filter(s, qmp, &fwd) == 0) {
		/* What is forwarded passes the filter again, as itself. */
		char *again = NULL;
		if (monitor_filter(fwd, qmp, &again) != 0 || strcmp(fwd, again) != 0)
			abort();
		free(again);
	}
	free(fwd);
}

static void image(const char *s, bool qcow2)
{
	json_t *j = json_loads(s, 0, NULL);
	if (!j)
		return;
	struct image_info ii;
	char *err = NULL;
	if (image_info_check(j, "/var/lib/cache/img", qcow2 ? "qcow2" : "raw", &ii, &err) == 0) {
		/* Accepted: a leaf of the announced format. */
		if (json_object_get(j, "backing-filename") ||
		    json_object_get(j, "full-backing-filename") ||
		    strcmp(ii.format, qcow2 ? "qcow2" : "raw") != 0)
			abort();
	}
	free(err);
	json_decref(j);
}

static void yaml_parses(const char *doc)
{
	yaml_parser_t p;
	if (!doc)
		return;
	if (!yaml_parser_initialize(&p))
		abort();
	yaml_parser_set_input_string(&p, (const unsigned char *)doc, strlen(doc));
	for (;;) {
		yaml_event_t ev;
		if (!yaml_parser_parse(&p, &ev))
			abort(); /* the emitter wrote something that is not YAML */
		bool end = ev.type == YAML_STREAM_END_EVENT;
		yaml_event_delete(&ev);
		if (end)
			break;
	}
	yaml_parser_delete(&p);
}

static void deploy(const char *s)
{
	json_t *j = json_loads(s, 0, NULL);
	struct configdrive *cd = NULL;
	char *err = NULL;
	if (j && configdrive_parse(j, json_object_get(j, "desc"), &cd, &err) == 0) {
		struct configdrive_docs docs = {};
		if (configdrive_render(cd, "fuzz-1", "$6$salt$hash", false, &docs) == 0) {
			yaml_parses(docs.meta_data);
			yaml_parses(docs.user_data);
			yaml_parses(docs.network_config);
			configdrive_docs_done(&docs);
		}
		configdrive_free(cd);
	}
	free(err);
	json_decref(j);
}

static void opt_id_ok(const char *id, bool required)
{
	if ((required && !id) || (id && !id_is_valid(id, 128)))
		abort();
}

static void disk_body(unsigned char k, const char *s)
{
	enum disk_req_kind kind = (enum disk_req_kind)(k % 4);
	json_t *j = json_loads(s, JSON_DECODE_ANY, NULL);
	struct disk_request req;
	char *err = NULL;
	if (j && disk_request_parse(kind, j, &req, &err) == 0) {
		bool fmt = kind == DISK_REQ_CREATE || kind == DISK_REQ_CACHE;
		if (fmt &&
		    (!req.format || (strcmp(req.format, "qcow2") && strcmp(req.format, "raw"))))
			abort();
		opt_id_ok(req.image_id, kind == DISK_REQ_CACHE || kind == DISK_REQ_UNCACHE);
		opt_id_ok(req.storagecache_id, kind == DISK_REQ_CACHE || kind == DISK_REQ_UNCACHE);
		opt_id_ok(req.server_id, false);
		if (req.size_mb < 0 || req.size_mb > DISK_MAX_MB)
			abort();
		if (kind == DISK_REQ_CREATE && ((req.size_mb == 0 && !req.image_id) ||
						(req.image_id && strcmp(req.format, "qcow2"))))
			abort();
		if (kind == DISK_REQ_RESIZE && req.size_mb == 0)
			abort();
	} else if (j && !err)
		abort(); /* a refusal always says why */
	free(err);
	json_decref(j);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	if (size < 1)
		return 0;
	char *s = strndup((const char *)data + 1, size - 1);
	if (!s)
		return 0;
	if (data[0] == 'D') {
		deploy(s);
		free(s);
		return 0;
	}
	if (data[0] == 'K' && size >= 2) {
		free(s);
		if ((s = strndup((const char *)data + 2, size - 2)))
			disk_body(data[1], s);
		free(s);
		return 0;
	}
	switch (data[0] % 3) {
	case 0:
		monitor(s, true);
		break;
	case 1:
		monitor(s, false);
		break;
	default:
		image(s, data[0] & 4);
		break;
	}
	free(s);
	return 0;
}

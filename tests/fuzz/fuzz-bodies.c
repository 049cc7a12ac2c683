/* libFuzzer target: the other untrusted inputs that reach the agent's parsers. The first byte
 * picks one:
 *   0 a QMP monitor command (POST /servers/<sid>/monitor with qmp), 1 an HMP one: the filter
 *     must refuse it or forward something it accepts again unchanged (L9: the filter and the
 *     executor see the same bytes);
 *   2 the JSON qemu-img prints about a downloaded image (an untrusted image's metadata): the
 *     check accepts it only without a backing or data file.
 * Nothing may crash, leak or read out of bounds. Built and run by tests/fuzz/run.sh. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "agent/imagecheck.h"
#include "agent/monitor.h"

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

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	if (size < 1)
		return 0;
	char *s = strndup((const char *)data + 1, size - 1);
	if (!s)
		return 0;
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

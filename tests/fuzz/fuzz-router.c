/* libFuzzer target for the API's request front end: route matching (with percent-decoding and
 * id validation) and request-body parsing, exactly as agent/api.c calls them.
 * Input layout: "<METHOD> <URL>\n<body>"; anything goes. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "agent/api-internal.h"
#include "common/path.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char line[API_URL_MAX + 64];
	size_t n = 0;
	while (n < size && n + 1 < sizeof(line) && data[n] != '\n') {
		line[n] = (char)data[n];
		n++;
	}
	line[n] = 0;
	const uint8_t *body = n < size ? data + n + 1 : data + size;
	size_t body_len = (size_t)(data + size - body);

	char *url = strchr(line, ' ');
	const char *method = line;
	if (url)
		*url++ = 0;
	else
		url = line;

	struct api_match m;
	int code = api_route_match(method, url, &m);
	if (code != 0 && code != 400 && code != 404 && code != 405)
		__builtin_trap();
	if (code == 0 && (!m.route || strlen(m.id) > REGION_ID_MAX))
		__builtin_trap();
	if (code != 0) {
		json_t *e = op_error_body(code, NULL, "%s", m.details);
		if (!e)
			__builtin_trap();
		json_decref(e);
	}

	json_t *j = NULL, *e = NULL;
	int r = api_parse_body((const char *)body, body_len, &j, &e);
	if (r == 0) {
		if (!json_is_object(j))
			__builtin_trap();
		/* The upload-status body: what is accepted is an array of valid guest ids. */
		char msg[96];
		if (api_upload_ids_check(j, msg, sizeof(msg)) == 0) {
			json_t *ids = json_object_get(j, "guest_ids"), *v;
			size_t i;
			if (json_array_size(ids) > API_UPLOAD_IDS_MAX)
				__builtin_trap();
			json_array_foreach (ids, i, v)
				if (!id_is_valid(json_string_value(v), 64))
					__builtin_trap();
		} else if (!msg[0])
			__builtin_trap();
		json_t *t = api_task_result(500, j);
		json_decref(t);
		json_decref(j);
	} else {
		/* Every refusal carries a well-formed error body. */
		if (r != -EINVAL || !json_is_string(json_object_get(e, "class")) ||
		    !json_is_string(json_object_get(e, "details")))
			__builtin_trap();
		json_decref(e);
	}
	return 0;
}

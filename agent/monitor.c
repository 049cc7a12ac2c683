#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "agent/monitor.h"
#include "common/macros.h"

static const char *const control[] = {"system_powerdown", "system_reset", "stop", "cont"};

static bool is_control(const char *name)
{
	for (size_t i = 0; i < ELEMENTSOF(control); i++)
		if (streq(name, control[i]))
			return true;
	return false;
}

static int filter_qmp(const char *cmd, char **ret)
{
	json_error_t e;
	json_t *j = json_loads(cmd, JSON_REJECT_DUPLICATES, &e);
	if (!json_is_object(j)) {
		json_decref(j);
		return -EINVAL;
	}
	int r = 0;
	const char *key;
	json_t *v;
	json_object_foreach (j, key, v)
		if (!streq(key, "execute") && !streq(key, "arguments") && !streq(key, "id"))
			r = -EPERM; /* exec-oob, control, anything QEMU may add later */
	const char *x = json_string_value(json_object_get(j, "execute"));
	json_t *args = json_object_get(j, "arguments");
	if (r >= 0 && (!x || (args && !json_is_object(args))))
		r = -EINVAL;
	if (r >= 0 && !strneq(x, "query-", 6) && !is_control(x))
		r = -EPERM;
	if (r >= 0 && !(*ret = json_dumps(j, JSON_COMPACT)))
		r = -ENOMEM;
	json_decref(j);
	return r;
}

static int filter_hmp(const char *cmd, char **ret)
{
	/* One line: HMP would run a second command after a newline. */
	if (strpbrk(cmd, "\n\r"))
		return -EPERM;
	size_t n = strcspn(cmd, " \t");
	_cleanup_free_ char *word = strndup(cmd, n);
	if (!word)
		return -ENOMEM;
	bool ok = streq(word, "info") ? !strchr(cmd, ';') : is_control(word) && cmd[n] == 0;
	if (!ok)
		return -EPERM;
	return (*ret = strdup(cmd)) ? 0 : -ENOMEM;
}

int monitor_filter(const char *cmd, bool qmp, char **ret_forward)
{
	if (isempty(cmd))
		return -EINVAL;
	return qmp ? filter_qmp(cmd, ret_forward) : filter_hmp(cmd, ret_forward);
}

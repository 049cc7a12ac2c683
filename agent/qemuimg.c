#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/qemuimg.h"
#include "common/macros.h"
#include "common/spawn.h"

static int fd_to_3(void *userdata)
{
	int fd = *(int *)userdata;
	return dup2(fd, 3) < 0 ? -errno : 0;
}

int qemu_img_run(const char *const *argv, char **ret_out, char **ret_stderr)
{
	return qemu_img_run_fd(argv, -1, ret_out, ret_stderr);
}

int qemu_img_create_fd(int fd, const char *format, const char *backing, const char *backing_format,
		       const char *size, char **ret_stderr)
{
	const char *argv[12];
	size_t n = 0;
	argv[n++] = "qemu-img";
	argv[n++] = "create";
	argv[n++] = "-q";
	argv[n++] = "-f";
	argv[n++] = format;
	if (backing) {
		argv[n++] = "-b";
		argv[n++] = backing;
		argv[n++] = "-F";
		argv[n++] = backing_format;
	}
	argv[n++] = QEMU_IMG_FD_PATH;
	if (size)
		argv[n++] = size;
	argv[n] = NULL;
	return qemu_img_run_fd(argv, fd, NULL, ret_stderr);
}

int qemu_img_run_fd(const char *const *argv, int fd, char **ret_out, char **ret_stderr)
{
	struct spawn_opts o = {
	    .timeout_ms = QEMU_IMG_TIMEOUT_MS,
	    .capture = true,
	    .capture_max = 1 << 20,
	    .child_setup = fd >= 0 ? fd_to_3 : NULL,
	    .userdata = &fd,
	};
	_cleanup_(spawn_result_done) struct spawn_result res = {};
	int r = spawn_run((char *const *)argv, &o, &res);
	if (r < 0)
		return r;
	if (res.timed_out)
		return -ETIMEDOUT;
	if (res.exit_status != 0) {
		if (ret_stderr)
			*ret_stderr = TAKE_PTR(res.err);
		return -EIO;
	}
	if (ret_out)
		*ret_out = TAKE_PTR(res.out);
	return 0;
}

const char *qemu_img_first_line(char *s)
{
	if (!s)
		return "";
	s[strcspn(s, "\n")] = 0;
	if (strlen(s) > 400)
		s[400] = 0;
	return s;
}

void qemu_img_info_done(struct qemu_img_info *i)
{
	free(i->backing);
	i->backing = NULL;
}

int qemu_img_info(const char *path, const char *format, struct qemu_img_info *ret,
		  char **ret_stderr)
{
	const char *argv[9];
	size_t n = 0;
	argv[n++] = "qemu-img";
	argv[n++] = "info";
	argv[n++] = "-U";
	if (format) {
		argv[n++] = "-f";
		argv[n++] = format;
	}
	argv[n++] = "--output=json";
	argv[n++] = "--";
	argv[n++] = path;
	argv[n] = NULL;
	_cleanup_free_ char *out = NULL;
	int r = qemu_img_run(argv, &out, ret_stderr);
	if (r < 0)
		return r;
	json_auto_t *j = json_loads(out, 0, NULL);
	json_t *fmt = json_object_get(j, "format"), *vs = json_object_get(j, "virtual-size");
	json_t *bf = json_object_get(j, "full-backing-filename");
	if (!bf)
		bf = json_object_get(j, "backing-filename");
	if (!json_is_string(fmt) || json_string_length(fmt) >= sizeof(ret->format) ||
	    !json_is_integer(vs) || (bf && !json_is_string(bf)))
		return -EBADMSG;
	struct qemu_img_info i = {.virtual_size = json_integer_value(vs)};
	snprintf(i.format, sizeof(i.format), "%s", json_string_value(fmt));
	if (bf && !(i.backing = strdup(json_string_value(bf))))
		return -ENOMEM;
	*ret = i;
	return 0;
}

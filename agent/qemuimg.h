/* qemu-img, run with an argv (common/spawn.h, no shell) and a timeout, and its `info` parsed.
 * Every probe of an image the agent did not write itself names the format it expects (-f) and
 * takes no lock (-U): a guest's disk is guest-writable content, and letting qemu-img guess its
 * format from what the guest wrote is the risk class of CVE-2024-4467 (security review L4).
 * Blocking: worker threads only. */
#pragma once

#include <stdint.h>

#define QEMU_IMG_TIMEOUT_MS (5 * 60 * 1000)

/* 0 when qemu-img exited 0 (*ret_out, optional, gets stdout); -EIO with its stderr in
 * *ret_stderr (optional), -ETIMEDOUT, or the spawn error otherwise. */
int qemu_img_run(const char *const *argv, char **ret_out, char **ret_stderr);
/* The same with fd, an open file, as descriptor 3 of qemu-img: argv names it
 * QEMU_IMG_FD_PATH, so qemu-img writes the file the caller opened safely (path_open_beneath),
 * not whatever its name resolves to by then. */
#define QEMU_IMG_FD_PATH "/proc/self/fd/3"
int qemu_img_run_fd(const char *const *argv, int fd, char **ret_out, char **ret_stderr);
/* `qemu-img create -q -f format [-b backing -F backing_format] <fd> [size]` into fd (as
 * qemu_img_run_fd); size is qemu-img's ("1073741824", "512M"), NULL for the backing file's. */
int qemu_img_create_fd(int fd, const char *format, const char *backing, const char *backing_format,
		       const char *size, char **ret_stderr);
/* The first line of a message, bounded to 400 bytes, in place; "" for NULL. */
const char *qemu_img_first_line(char *s);

struct qemu_img_info {
	char format[16];
	int64_t virtual_size;
	char *backing; /* full backing filename, or NULL */
};
/* `qemu-img info -U --output=json [-f format] -- path`; format NULL probes (only for images the
 * agent itself keeps, never a guest's disk). -EBADMSG when the output is not qemu-img's. */
int qemu_img_info(const char *path, const char *format, struct qemu_img_info *ret,
		  char **ret_stderr);
void qemu_img_info_done(struct qemu_img_info *i);

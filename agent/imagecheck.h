/* Untrusted images (downloaded into the image cache): checked with
 * `qemu-img info -f <announced format> -U --output=json` before anything uses them. An image is
 * a leaf: no backing file, no external data file (a qcow2 header can name any host file, which
 * the guest would then read: H2 of the security review), no json:/protocol filename, and it is
 * the format it was announced as. */
#pragma once

#include <jansson.h>
#include <stdint.h>

struct image_info {
	char format[16];      /* "qcow2" or "raw" */
	int64_t virtual_size; /* bytes */
};

/* Checks qemu-img's JSON for the image at path, announced as format ("qcow2" or "raw"). 0 and
 * *ret filled when acceptable; -EMEDIUMTYPE with *ret_error (optional, caller frees) naming
 * what is wrong (the backing or data file, the format) when refused; -EBADMSG when the JSON is
 * not qemu-img's. */
int image_info_check(json_t *info, const char *path, const char *format, struct image_info *ret,
		     char **ret_error);
/* Runs qemu-img info (blocking: worker threads only) and checks the result as above; -EIO with
 * qemu-img's message in *ret_error when it cannot read the image as format. */
int image_inspect(const char *path, const char *format, struct image_info *ret, char **ret_error);
/* True for the formats the image cache accepts. */
int image_format_valid(const char *format);

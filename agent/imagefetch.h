/* The image service boundary (libcurl, blocking: worker threads only): HEAD for an image's
 * properties and a GET streamed into a file descriptor with the MD5 computed on the way (no
 * second pass over the file). Also the MD5 of a file already in the cache. */
#pragma once

#include <stdatomic.h>
#include <stdint.h>

#define IMAGE_MD5_HEX 33

struct image_meta {
	char checksum[IMAGE_MD5_HEX]; /* X-Image-Meta-Checksum (lowercase hex), "" when absent */
	char disk_format[16];	      /* X-Image-Meta-Disk_format, "" when absent */
	char name[256];		      /* X-Image-Meta-Name */
	int64_t size;		      /* X-Image-Meta-Size, -1 when absent */
};

/* HEAD url with X-Auth-Token: token. 0 with *ret on 200; -EACCES (401/403), -ENOENT (404),
 * -EREMOTEIO (other status, *ret_status set), or the transport error (-ECONNREFUSED,
 * -ETIMEDOUT, -EIO, ...). */
int imagefetch_head(const char *url, const char *token, struct image_meta *ret, long *ret_status);

/* GET url into fd (from its current offset), MD5 while streaming. *progress (optional) counts
 * the bytes written so far, for a reporter on another thread. 0 with the hex MD5 and byte count
 * when the whole body arrived (Content-Length honoured); errors as imagefetch_head, plus -EPIPE
 * when the stream ended early and the write error (-ENOSPC, ...) when fd refused the data. */
int imagefetch_get(const char *url, const char *token, int fd, _Atomic uint64_t *progress,
		   char ret_md5[IMAGE_MD5_HEX], uint64_t *ret_bytes, long *ret_status);

/* MD5 of a whole file, hex. */
int imagefetch_file_md5(const char *path, char ret_md5[IMAGE_MD5_HEX]);

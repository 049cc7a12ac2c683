/* Disk preparation with the real qemu-img in a temporary disk root. */
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/desc.h"
#include "agent/disks.h"
#include "common/fs.h"
#include "common/spawn.h"
#include "tests/unit/test-common.h"

static bool have_qemu_img(void)
{
	return access("/usr/bin/qemu-img", X_OK) == 0;
}

static void run_ok(char *const *argv)
{
	struct spawn_opts o = {.capture = true};
	struct spawn_result res = {};
	assert_int_equal(spawn_run(argv, &o, &res), 0);
	if (res.exit_status != 0)
		fail_msg("%s %s failed: %s", argv[0], argv[1], strempty(res.err));
	spawn_result_done(&res);
}

static int setup(void **state)
{
	if (!have_qemu_img())
		skip();
	test_roots_setup(state);
	struct test_roots *f = *state;
	_cleanup_free_ char *base = strjoin(f->images, "/base.qcow2");
	run_ok((char *[]){"qemu-img", "create", "-q", "-f", "qcow2", base, "32M", NULL});
	return 0;
}

static struct guest_desc *parse(struct test_roots *f, const char *fmt, ...)
{
	/* The descriptor text uses %1$s for the temporary directory. */
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *text = NULL;
	assert_true(vasprintf(&text, fmt, ap) >= 0);
	va_end(ap);
	json_error_t jerr;
	json_auto_t *j = json_loads(text, 0, &jerr);
	if (!j)
		fail_msg("bad test JSON: %s: %s", jerr.text, text);
	struct guest_desc *d = NULL;
	_cleanup_free_ char *err = NULL;
	if (guest_desc_parse(j, f->roots, &d, &err) < 0)
		fail_msg("parse: %s", strempty(err));
	return d;
}

static json_t *info(const char *path)
{
	struct spawn_opts o = {.capture = true};
	struct spawn_result res = {};
	assert_int_equal(
	    spawn_run((char *[]){"qemu-img", "info", "--output=json", (char *)path, NULL}, &o,
		      &res),
	    0);
	assert_int_equal(res.exit_status, 0);
	json_t *j = json_loads(res.out, 0, NULL);
	assert_non_null(j);
	spawn_result_done(&res);
	return j;
}

#define DESC_HEAD                                                                                  \
	"{\"uuid\": \"0c4ce5a8-7f3e-4d57-8a0e-5b4f1b2d9e01\", \"name\": \"t\", \"mem\": 64, "

static void test_create_and_remove(void **state)
{
	struct test_roots *f = *state;
	_cleanup_(guest_desc_freep) struct guest_desc *d = parse(
	    f,
	    DESC_HEAD "\"disks\": ["
		      "{\"disk_id\": \"root\", \"size\": 64, \"image_path\": "
		      "\"%1$s/images/base.qcow2\"},"
		      "{\"disk_id\": \"data\", \"size\": 16, \"format\": \"raw\"},"
		      "{\"disk_id\": \"fromimage\", \"image_path\": \"%1$s/images/base.qcow2\"}]}",
	    f->dir);
	_cleanup_free_ char *err = NULL;
	assert_int_equal(disks_prepare(d, f->roots, NULL, &err), 0);
	assert_null(err);

	json_auto_t *i0 = info(d->disks[0].path);
	assert_string_equal(json_string_value(json_object_get(i0, "format")), "qcow2");
	assert_int_equal(json_integer_value(json_object_get(i0, "virtual-size")), 64 * 1024 * 1024);
	_cleanup_free_ char *base = strjoin(f->images, "/base.qcow2");
	assert_string_equal(json_string_value(json_object_get(i0, "full-backing-filename")), base);
	assert_string_equal(json_string_value(json_object_get(i0, "backing-filename-format")),
			    "qcow2");
	json_auto_t *i1 = info(d->disks[1].path);
	assert_string_equal(json_string_value(json_object_get(i1, "format")), "raw");
	assert_int_equal(json_integer_value(json_object_get(i1, "virtual-size")), 16 * 1024 * 1024);
	json_auto_t *i2 = info(d->disks[2].path);
	assert_int_equal(json_integer_value(json_object_get(i2, "virtual-size")), 32 * 1024 * 1024);
	struct stat st;
	assert_int_equal(stat(d->disks[0].path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	/* Re-preparing the same disks is a no-op. */
	ino_t ino = st.st_ino;
	assert_int_equal(disks_prepare(d, f->roots, NULL, NULL), 0);
	assert_int_equal(stat(d->disks[0].path, &st), 0);
	assert_int_equal(st.st_ino, ino);
	/* M1: the caller found the data disk missing, and since someone made the same disk there
	 * (same format and size): it is not adopted, and it is not removed either. */
	const bool existing[] = {true, false, true};
	free(err);
	err = NULL;
	assert_int_equal(disks_prepare(d, f->roots, existing, &err), -EEXIST);
	assert_non_null(strstr(err, "created by someone else"));
	assert_int_equal(access(d->disks[1].path, F_OK), 0);

	assert_int_equal(disks_remove(d, f->roots), 0);
	for (size_t i = 0; i < d->n_disks; i++)
		assert_int_equal(access(d->disks[i].path, F_OK), -1);
	assert_int_equal(access(base, F_OK), 0);	/* backing images are never removed */
	assert_int_equal(disks_remove(d, f->roots), 0); /* missing is fine */
}

static void test_failure_cleans_up(void **state)
{
	struct test_roots *f = *state;
	/* The second disk's directory does not exist: the first one must be removed again. */
	_cleanup_(guest_desc_freep) struct guest_desc *d =
	    parse(f,
		  DESC_HEAD "\"disks\": [{\"disk_id\": \"a\", \"size\": 8},"
			    "{\"disk_id\": \"b\", \"size\": 8, \"path\": \"%1$s/disks/nodir/b\"}]}",
		  f->dir);
	_cleanup_free_ char *err = NULL;
	assert_int_equal(disks_prepare(d, f->roots, NULL, &err), -ENOENT);
	assert_non_null(strstr(err, "disk b: cannot create"));
	assert_int_equal(access(d->disks[0].path, F_OK), -1);

	/* qemu-img failing on the second disk (a backing image it cannot read) cleans up too. */
	guest_desc_free(d);
	d = parse(f,
		  DESC_HEAD "\"disks\": [{\"disk_id\": \"a\", \"size\": 8},"
			    "{\"disk_id\": \"b\", \"size\": 8, \"format\": \"qcow2\", "
			    "\"image_path\": \"%1$s/images/broken.qcow2\"}]}",
		  f->dir);
	_cleanup_free_ char *broken = test_write(f->images, "broken.qcow2", "QFI\xfb garbage");
	free(err);
	err = NULL;
	int r = disks_prepare(d, f->roots, NULL, &err);
	assert_true(r < 0);
	assert_non_null(strstr(err, "disk b:"));
	assert_int_equal(access(d->disks[0].path, F_OK), -1);
	assert_int_equal(access(d->disks[1].path, F_OK), -1);

	/* qemu-img failing on a file it was given (a raw disk of 64 TiB: more than ext4 takes)
	 * leaves neither that file nor the disk before it. */
	_cleanup_free_ char *probe = strjoin(f->disks, "/probe");
	_cleanup_close_ int pfd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(pfd >= 0);
	bool efbig = ftruncate(pfd, 64LL << 40) < 0 && errno == EFBIG;
	assert_int_equal(unlink(probe), 0);
	if (!efbig)
		return; /* a filesystem that takes 64 TiB files: nothing fails here */
	guest_desc_free(d);
	d = parse(f,
		  DESC_HEAD "\"disks\": [{\"disk_id\": \"a\", \"size\": 8},"
			    "{\"disk_id\": \"b\", \"size\": 67108864, \"format\": \"raw\"}]}",
		  f->dir);
	free(err);
	err = NULL;
	assert_true(disks_prepare(d, f->roots, NULL, &err) < 0);
	assert_non_null(strstr(err, "disk b: qemu-img create failed"));
	assert_int_equal(access(d->disks[0].path, F_OK), -1);
	assert_int_equal(access(d->disks[1].path, F_OK), -1);
}

static void test_existing_file_kept(void **state)
{
	struct test_roots *f = *state;
	_cleanup_free_ char *victim = test_write(f->disks, "x", "precious data");
	_cleanup_(guest_desc_freep) struct guest_desc *d =
	    parse(f, DESC_HEAD "\"disks\": [{\"disk_id\": \"x\", \"size\": 8}]}", f->dir);
	_cleanup_free_ char *err = NULL;
	/* Read as the descriptor's format (qcow2, never probed: L4), the file is not one. */
	assert_int_equal(disks_prepare(d, f->roots, NULL, &err), -EEXIST);
	assert_non_null(strstr(err, "exists and cannot be inspected"));
	_cleanup_free_ char *text = NULL;
	assert_int_equal(read_file(victim, 1024, &text, NULL), 0);
	assert_string_equal(text, "precious data");

	/* Same format, other size: also refused. */
	run_ok((char *[]){"qemu-img", "create", "-q", "-f", "qcow2", victim, "4M", NULL});
	free(err);
	err = NULL;
	assert_int_equal(disks_prepare(d, f->roots, NULL, &err), -EEXIST);
	assert_non_null(strstr(err, "exists with different format, size or backing file"));
}

/* L4: a raw disk into which the guest wrote a qcow2 header is still read as raw (its
 * descriptor's format), so the guest cannot make the agent take it for another image. */
static void test_guest_written_header(void **state)
{
	struct test_roots *f = *state;
	_cleanup_(guest_desc_freep) struct guest_desc *d = parse(
	    f, DESC_HEAD "\"disks\": [{\"disk_id\": \"r\", \"size\": 8, \"format\": \"raw\"}]}",
	    f->dir);
	_cleanup_free_ char *err = NULL;
	assert_int_equal(disks_prepare(d, f->roots, NULL, &err), 0);
	/* What a guest can do from inside: a qcow2 header at offset 0 of its raw disk. */
	_cleanup_free_ char *hdr = strjoin(f->dir, "/hdr.qcow2");
	run_ok((char *[]){"qemu-img", "create", "-q", "-f", "qcow2", hdr, "1G", NULL});
	run_ok((char *[]){"dd", "if=/dev/null", "of=/dev/null", NULL});
	_cleanup_free_ char *cmd = NULL;
	assert_true(asprintf(&cmd, "dd if=%s of=%s bs=512 count=1 conv=notrunc status=none", hdr,
			     d->disks[0].path) > 0);
	assert_int_equal(system(cmd), 0);
	/* Prepared again (a sync): the same raw disk of 8 MiB, not a 1 GiB qcow2. */
	assert_int_equal(disks_prepare(d, f->roots, NULL, &err), 0);
}

static void test_outside_root(void **state)
{
	struct test_roots *f = *state;
	/* Inside at parse time; a symlink swapped in afterwards points outside. */
	_cleanup_free_ char *sub = strjoin(f->disks, "/sub");
	assert_int_equal(mkdir_p(sub, 0755), 0);
	_cleanup_(guest_desc_freep) struct guest_desc *d =
	    parse(f,
		  DESC_HEAD "\"disks\": [{\"disk_id\": \"a\", \"size\": 8},"
			    "{\"disk_id\": \"s\", \"size\": 8, \"path\": \"%1$s/disks/sub/s\"}]}",
		  f->dir);
	assert_int_equal(rmdir(sub), 0);
	assert_int_equal(symlink(f->outside, sub), 0);
	_cleanup_free_ char *err = NULL;
	assert_int_equal(disks_prepare(d, f->roots, NULL, &err), -EPERM);
	assert_non_null(strstr(err, "is outside the disk roots"));
	_cleanup_free_ char *escaped = strjoin(f->outside, "/s");
	assert_int_equal(access(escaped, F_OK), -1);
	assert_int_equal(access(d->disks[0].path, F_OK), -1);

	/* Removal does not follow it either. */
	_cleanup_free_ char *planted = test_write(f->outside, "s", "host file");
	assert_int_equal(disks_remove(d, f->roots), -EPERM);
	assert_int_equal(access(planted, F_OK), 0);
}

static void test_backing_chain_refused(void **state)
{
	struct test_roots *f = *state;
	_cleanup_free_ char *base = strjoin(f->images, "/base.qcow2");
	_cleanup_free_ char *chained = strjoin(f->images, "/chained.qcow2");
	run_ok((char *[]){"qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2",
			  chained, NULL});
	_cleanup_(guest_desc_freep) struct guest_desc *d = parse(
	    f,
	    DESC_HEAD
	    "\"disks\": [{\"disk_id\": \"a\", \"image_path\": \"%1$s/images/chained.qcow2\"}]}",
	    f->dir);
	_cleanup_free_ char *err = NULL;
	assert_int_equal(disks_prepare(d, f->roots, NULL, &err), -EMEDIUMTYPE);
	assert_non_null(strstr(err, "chains are refused"));
	assert_int_equal(access(d->disks[0].path, F_OK), -1);
}

/* H2: a base image whose qcow2 header names an external data file would give the guest that
 * file; it is refused, naming the data file, and no disk is left. */
static void test_data_file_refused(void **state)
{
	struct test_roots *f = *state;
	_cleanup_free_ char *evil = strjoin(f->images, "/evil.qcow2");
	_cleanup_free_ char *opt = strjoin("data_file=", f->dir, "/secret.raw,data_file_raw=on");
	run_ok((char *[]){"qemu-img", "create", "-q", "-f", "qcow2", "-o", opt, evil, "64K", NULL});
	_cleanup_(guest_desc_freep) struct guest_desc *d =
	    parse(f,
		  DESC_HEAD
		  "\"disks\": [{\"disk_id\": \"a\", \"image_path\": \"%1$s/images/evil.qcow2\"}]}",
		  f->dir);
	_cleanup_free_ char *err = NULL;
	assert_int_equal(disks_prepare(d, f->roots, NULL, &err), -EMEDIUMTYPE);
	assert_non_null(strstr(err, "secret.raw"));
	assert_int_equal(access(d->disks[0].path, F_OK), -1);
}

/* qemu_user set: a disk the agent creates is QEMU's, 0600; an existing one is left alone. */
static void test_given_to_qemu(void **state)
{
	struct test_roots *f = *state;
	if (geteuid() != 0)
		skip();
	_cleanup_(guest_desc_freep) struct guest_desc *d =
	    parse(f, DESC_HEAD "\"disks\": [{\"disk_id\": \"q\", \"size\": 8}]}");
	assert_int_equal(fs_qemu_owner_set("64107:64108"), 0);
	_cleanup_free_ char *err = NULL;
	int r = disks_prepare(d, f->roots, NULL, &err);
	fs_qemu_owner_set(NULL);
	assert_int_equal(r, 0);
	struct stat st;
	assert_int_equal(stat(d->disks[0].path, &st), 0);
	assert_int_equal(st.st_uid, 64107);
	assert_int_equal(st.st_gid, 64108);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* Prepared again (it exists): not chowned by disks_prepare. */
	assert_int_equal(chown(d->disks[0].path, 0, 0), 0);
	assert_int_equal(fs_qemu_owner_set("64107:64108"), 0);
	r = disks_prepare(d, f->roots, NULL, NULL);
	fs_qemu_owner_set(NULL);
	assert_int_equal(r, 0);
	assert_int_equal(stat(d->disks[0].path, &st), 0);
	assert_int_equal(st.st_uid, 0);
}

TEST_MAIN_EACH(setup, test_roots_teardown, cmocka_unit_test(test_create_and_remove),
	       cmocka_unit_test(test_given_to_qemu), cmocka_unit_test(test_data_file_refused),
	       cmocka_unit_test(test_failure_cleans_up), cmocka_unit_test(test_existing_file_kept),
	       cmocka_unit_test(test_guest_written_header), cmocka_unit_test(test_outside_root),
	       cmocka_unit_test(test_backing_chain_refused))

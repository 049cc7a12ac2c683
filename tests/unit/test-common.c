#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/fs.h"
#include "tests/unit/test-common.h"

char *test_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *p = strjoin(base ? base : "/tmp", "/hostagent-test.XXXXXX");
	assert_non_null(p);
	assert_non_null(mkdtemp(p));
	return p;
}

char *test_data(const char *rel)
{
	const char *d = getenv("TEST_DATA");
	assert_non_null(d);
	char *p = strjoin(d, "/", rel);
	assert_non_null(p);
	return p;
}

char *test_write(const char *dir, const char *name, const char *text)
{
	char *p = strjoin(dir, "/", name);
	assert_non_null(p);
	assert_int_equal(write_file_atomic(p, text, strlen(text), 0644), 0);
	return p;
}

int test_count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

void test_roots_make(char **ret_dir, char **ret_disks, char **ret_images)
{
	_cleanup_free_ char *tmp = test_tmpdir();
	char *dir = realpath(tmp, NULL);
	assert_non_null(dir);
	char *disks = strjoin(dir, "/disks"), *images = strjoin(dir, "/images");
	assert_int_equal(mkdir_p(disks, 0755), 0);
	assert_int_equal(mkdir_p(images, 0755), 0);
	*ret_dir = dir;
	*ret_disks = disks;
	*ret_images = images;
}

void test_roots_remove(char *dir, char *disks, char *images)
{
	rm_rf(dir);
	free(dir);
	free(disks);
	free(images);
}

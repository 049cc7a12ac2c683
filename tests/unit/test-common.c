#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdarg.h>
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

char *test_tmpdir_with(const char *name, char **ret_path, ...)
{
	_cleanup_free_ char *tmp = test_tmpdir();
	char *dir = realpath(tmp, NULL);
	assert_non_null(dir);
	va_list ap;
	va_start(ap, ret_path);
	for (; name; name = va_arg(ap, const char *), ret_path = va_arg(ap, char **)) {
		char *p = strjoin(dir, "/", name);
		assert_non_null(p);
		assert_int_equal(mkdir_p(p, 0755), 0);
		*ret_path = p;
	}
	va_end(ap);
	return dir;
}

char *test_data(const char *rel)
{
	const char *d = getenv("TEST_DATA");
	assert_non_null(d);
	char *p = strjoin(d, "/", rel);
	assert_non_null(p);
	return p;
}

int test_listen_loopback(int backlog, int *ret_port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
	} u = {.in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)}};
	socklen_t l = sizeof(u.in);
	assert_int_equal(bind(fd, &u.sa, sizeof(u.in)), 0);
	assert_int_equal(listen(fd, backlog), 0);
	assert_int_equal(getsockname(fd, &u.sa, &l), 0);
	*ret_port = ntohs(u.in.sin_port);
	return fd;
}

char *test_memstream(int (*write)(FILE *f, void *userdata), void *userdata)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);
	assert_non_null(f);
	assert_int_equal(write(f, userdata), 0);
	assert_int_equal(fclose(f), 0);
	return buf;
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

int test_roots_setup(void **state)
{
	struct test_roots *t = calloc(1, sizeof(*t));
	assert_non_null(t);
	t->dir = test_tmpdir_with("disks", &t->disks, "images", &t->images, "outside", &t->outside,
				  NULL);
	t->roots[0] = t->disks;
	t->roots[1] = t->images;
	*state = t;
	return 0;
}

int test_roots_teardown(void **state)
{
	struct test_roots *t = *state;
	if (!t)
		return 0;
	rm_rf(t->dir);
	free(t->dir);
	free(t->disks);
	free(t->images);
	free(t->outside);
	free(t);
	return 0;
}

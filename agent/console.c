#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "agent/console.h"
#include "common/fs.h"
#include "common/macros.h"

/* No 0/O, 1/l/I: the password is read off a screen and typed into a VNC client. */
static const char alphabet[] = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

int console_password_generate(char ret[CONSOLE_PASSWORD_LEN + 1])
{
	const size_t n = sizeof(alphabet) - 1;
	size_t i = 0;
	while (i < CONSOLE_PASSWORD_LEN) {
		unsigned char b[32];
		ssize_t k = getrandom(b, sizeof(b), 0);
		if (k < 0)
			return negative_errno();
		/* Rejection sampling: no bias towards the first letters. */
		for (ssize_t j = 0; j < k && i < CONSOLE_PASSWORD_LEN; j++)
			if (b[j] < 256 - 256 % n)
				ret[i++] = alphabet[b[j] % n];
		explicit_bzero(b, sizeof(b));
	}
	ret[CONSOLE_PASSWORD_LEN] = 0;
	return 0;
}

bool console_password_valid(const char *s)
{
	if (!s || strlen(s) != CONSOLE_PASSWORD_LEN)
		return false;
	for (const char *p = s; *p; p++)
		if (!strchr(alphabet, *p))
			return false;
	return true;
}

static int path_of(const char *dir, char **ret)
{
	return asprintf(ret, "%s/" CONSOLE_PASSWORD_FILE, dir) < 0 ? -ENOMEM : 0;
}

int console_password_read(const char *workspace_dir, char **ret)
{
	_cleanup_free_ char *p = NULL;
	int r = path_of(workspace_dir, &p);
	if (r < 0)
		return r;
	char *s = NULL;
	size_t len = 0;
	r = read_file(p, 64, &s, &len);
	if (r < 0)
		return r;
	s[strcspn(s, "\n")] = 0;
	if (!console_password_valid(s)) {
		explicit_bzero(s, len);
		free(s);
		return -EBADMSG;
	}
	*ret = s;
	return 0;
}

int console_password_ensure(const char *workspace_dir, char **ret)
{
	int r = console_password_read(workspace_dir, ret);
	if (r != -ENOENT && r != -EBADMSG)
		return r;
	_cleanup_free_ char *p = NULL;
	r = path_of(workspace_dir, &p);
	if (r < 0)
		return r;
	char pw[CONSOLE_PASSWORD_LEN + 2];
	r = console_password_generate(pw);
	if (r >= 0) {
		pw[CONSOLE_PASSWORD_LEN] = '\n';
		r = write_file_atomic(p, pw, CONSOLE_PASSWORD_LEN + 1, 0600);
		pw[CONSOLE_PASSWORD_LEN] = 0;
	}
	if (r >= 0 && !(*ret = strdup(pw)))
		r = -ENOMEM;
	explicit_bzero(pw, sizeof(pw));
	return r < 0 ? r : 0;
}

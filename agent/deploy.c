/* The config drive on the host (see deploy.h). */
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/deploy.h"
#include "common/fs.h"
#include "common/spawn.h"

#define XORRISO_TIMEOUT_MS  (120 * 1000)
#define RANDOM_PASSWORD_LEN 14

const char *deploy_xorriso = "xorriso";

char *deploy_iso_path(const char *workspace)
{
	return strjoin(workspace, "/" DEPLOY_ISO_NAME);
}

static int random_bytes(void *buf, size_t len)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = getrandom((char *)buf + done, len - done, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)n;
	}
	return 0;
}

/* Uniform over the alphabet (rejection sampling); one of each class at random places. */
static int random_password(char **ret)
{
	static const char *const classes[] = {"ABCDEFGHJKLMNPQRSTUVWXYZ",
					      "abcdefghijkmnpqrstuvwxyz", "23456789", "@#%+-=_"};
	char alphabet[128] = "";
	for (size_t i = 0; i < ELEMENTSOF(classes); i++)
		strcat(alphabet, classes[i]);
	size_t an = strlen(alphabet);
	char *pw = calloc(RANDOM_PASSWORD_LEN + 1, 1);
	if (!pw)
		return -ENOMEM;
	for (;;) {
		for (size_t i = 0; i < RANDOM_PASSWORD_LEN;) {
			unsigned char b;
			int r = random_bytes(&b, 1);
			if (r < 0) {
				erase_and_free(pw);
				return r;
			}
			if (b >= 256 / an * an)
				continue;
			pw[i++] = alphabet[b % an];
		}
		bool all = true;
		for (size_t c = 0; c < ELEMENTSOF(classes); c++)
			all = all && strpbrk(pw, classes[c]);
		if (all)
			break;
	}
	*ret = pw;
	return 0;
}

/* SHA-512 crypt(3) with a random salt from libxcrypt. */
static int hash_password(const char *pw, char **ret)
{
	_cleanup_free_ char *salt = crypt_gensalt_ra("$6$", 0, NULL, 0);
	if (!salt)
		return negative_errno();
	void *data = NULL;
	int size = 0;
	const char *h = crypt_ra(pw, salt, &data, &size);
	int r = 0;
	if (!h || h[0] == '*')
		r = errno > 0 ? -errno : -EINVAL;
	else if (!(*ret = strdup(h)))
		r = -ENOMEM;
	if (data) {
		explicit_bzero(data, (size_t)size);
		free(data);
	}
	return r;
}

static int instance_id(const char *sid, char **ret)
{
	uint8_t b[8];
	int r = random_bytes(b, sizeof(b));
	if (r < 0)
		return r;
	return asprintf_safe(ret, "%s-%02x%02x%02x%02x%02x%02x%02x%02x", sid, b[0], b[1], b[2],
			     b[3], b[4], b[5], b[6], b[7]);
}

static int child_umask(void *userdata)
{
	umask(0077);
	return 0;
}

static int write_doc(const char *dir, const char *name, const char *text)
{
	_cleanup_free_ char *p = strjoin(dir, "/", name);
	if (!p)
		return -ENOMEM;
	int r = write_file_atomic(p, text, strlen(text), 0600);
	return r < 0 ? r : 0;
}

/* xorriso packs the files of dir into iso (written with umask 077). */
static int make_iso(const char *dir, const char *iso, bool with_network, char **ret_error)
{
	const char *argv[] = {deploy_xorriso,
			      "-as",
			      "mkisofs",
			      "-quiet",
			      "-o",
			      iso,
			      "-V",
			      "cidata",
			      "-J",
			      "-r",
			      "user-data",
			      "meta-data",
			      with_network ? "network-config" : NULL,
			      NULL};
	struct spawn_opts o = {.cwd = dir,
			       .timeout_ms = XORRISO_TIMEOUT_MS,
			       .capture = true,
			       .capture_max = 4096,
			       .child_setup = child_umask};
	struct spawn_result res = {};
	int r = spawn_run((char *const *)argv, &o, &res);
	if (r == -ENOENT)
		return error_set(ret_error, r, "%s is not installed (Debian package xorriso)",
				 deploy_xorriso);
	if (r < 0)
		return error_set(ret_error, r, "cannot run %s: %s", deploy_xorriso, strerror(-r));
	if (res.exit_status != 0) {
		const char *e = res.err ? res.err : "";
		size_t n = strlen(e);
		while (n && (e[n - 1] == '\n' || e[n - 1] == ' '))
			n--;
		r = error_set(ret_error, -EIO, "%s failed (exit %d%s): %.*s", deploy_xorriso,
			      res.exit_status, res.timed_out ? ", timed out" : "", (int)MIN(n, 512),
			      n > 512 ? e + n - 512 : e);
	}
	spawn_result_done(&res);
	return r;
}

int deploy_build(const char *workspace, const char *sid, const struct configdrive *cd,
		 bool redeploy, json_t **ret_info, char **ret_error)
{
	char *password = NULL; /* erased at the end */
	_cleanup_free_ char *hash = NULL, *iid = NULL, *key = NULL, *tmpl = NULL, *iso = NULL,
			    *tmp_iso = NULL;
	struct configdrive_docs docs = {};
	bool made_dir = false;
	int r = 0;

	if (cd->password)
		password = strdup(cd->password);
	else if (cd->reset_password)
		r = random_password(&password);
	if (r < 0 || (cd->password && !password)) {
		r = r < 0 ? r : -ENOMEM;
		error_set(ret_error, r, "cannot make a password: %s", strerror(-r));
		goto out;
	}
	if (password && (r = hash_password(password, &hash)) < 0) {
		error_set(ret_error, r, "cannot hash the password: %s", strerror(-r));
		goto out;
	}
	if ((r = instance_id(sid, &iid)) < 0 ||
	    (r = configdrive_render(cd, iid, hash, redeploy, &docs)) < 0) {
		error_set(ret_error, r, "cannot render the config drive: %s", strerror(-r));
		goto out;
	}
	if (password && !cd->public_keys) {
		uint8_t iv[16];
		if ((r = random_bytes(iv, sizeof(iv))) < 0 ||
		    (r = configdrive_login_key(sid, password, iv, &key)) < 0) {
			error_set(ret_error, r, "cannot encrypt the login key: %s", strerror(-r));
			goto out;
		}
	}
	tmpl = strjoin(workspace, "/.config-drive.XXXXXX");
	iso = deploy_iso_path(workspace);
	tmp_iso = strjoin(workspace, "/." DEPLOY_ISO_NAME ".tmp");
	if (!tmpl || !iso || !tmp_iso) {
		r = error_set(ret_error, -ENOMEM, "out of memory");
		goto out;
	}
	if (!mkdtemp(tmpl)) {
		r = error_set(ret_error, -errno, "cannot create a directory in %s: %m", workspace);
		goto out;
	}
	made_dir = true;
	if ((r = write_doc(tmpl, "meta-data", docs.meta_data)) < 0 ||
	    (r = write_doc(tmpl, "user-data", docs.user_data)) < 0 ||
	    (docs.network_config &&
	     (r = write_doc(tmpl, "network-config", docs.network_config)) < 0)) {
		error_set(ret_error, r, "cannot write the config drive files: %s", strerror(-r));
		goto out;
	}
	(void)unlink(tmp_iso);
	if ((r = make_iso(tmpl, tmp_iso, docs.network_config, ret_error)) < 0)
		goto out;
	/* QEMU reads the ISO (qemu_user): root:QEMU's group 0640 in a workspace it may traverse
	 * (0710: its other files, 0600 root, stay out of reach). As root: 0600. */
	{
		_cleanup_close_ int ifd = open(tmp_iso, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		_cleanup_close_ int wfd =
		    open(workspace, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		r = ifd < 0 || wfd < 0 || fchmod(ifd, 0600) < 0 ? -errno : 0;
		if (r >= 0 && (r = fs_share_with_qemu(ifd, 0640)) >= 0)
			r = fs_share_with_qemu(wfd, 0710);
		if (r >= 0 && rename(tmp_iso, iso) < 0)
			r = -errno;
		if (r < 0) {
			r = error_set(ret_error, r, "cannot put %s in place: %s", iso,
				      strerror(-r));
			goto out;
		}
	}
	json_t *info = json_object();
	if (!info) {
		r = error_set(ret_error, -ENOMEM, "out of memory");
		goto out;
	}
	if (password)
		json_object_set_new(info, "account", json_string(cd->account));
	if (key)
		json_object_set_new(info, "key", json_string(key));
	if (cd->os)
		json_object_set_new(info, "os", json_string(cd->os));
	*ret_info = info;
out:
	if (r < 0 && tmp_iso)
		(void)unlink(tmp_iso);
	if (made_dir)
		(void)rm_rf(tmpl);
	configdrive_docs_done(&docs);
	erase_and_free(password);
	return r;
}

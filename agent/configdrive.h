/* First-boot configuration (deploy) as a NoCloud config drive: the deploy fields of a create or
 * deploy request (Cloudpods' GetDeployConfigOnHost: password, reset_password, public_key,
 * keypair_name, deploys[], enable_cloud_init, login_account; hostname and NICs from the desc)
 * checked, and rendered as cloud-init's meta-data, user-data and network-config. Pure: no file,
 * process, clock or randomness here (agent/deploy.c builds the ISO). Every string from the
 * request reaches the YAML as a double-quoted scalar written by libyaml's emitter, file contents
 * as base64. Any thread (a create builds it on a worker). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/macros.h"

#define CONFIGDRIVE_PASSWORD_MAX 128
#define CONFIGDRIVE_KEY_MAX	 (16 * 1024)   /* one authorized_keys line */
#define CONFIGDRIVE_KEYS_MAX	 16	       /* lines of public_key */
#define CONFIGDRIVE_FILES_MAX	 64	       /* deploys[] */
#define CONFIGDRIVE_PATH_MAX	 1024	       /* deploys[].path */
#define CONFIGDRIVE_CONTENT_MAX	 (1024 * 1024) /* all deploys[].content together */
#define CONFIGDRIVE_DNS_MAX	 3

struct configdrive_file {
	char *path; /* absolute, normalized: no "." or ".." segment, no "//", no trailing '/' */
	char *content;
	size_t len; /* content may hold NUL bytes (written as base64) */
	bool append;
};

struct configdrive_nic {
	int index;
	char mac[18];
	char *ip;      /* NULL: DHCP */
	int masklen;   /* with ip */
	char *gateway; /* NULL: none */
	char **dns;    /* nameservers */
	char *domain;  /* search domain */
	int mtu;       /* 0: unchanged */
	bool is_default;
};

struct configdrive {
	char *hostname; /* NULL: the image's */
	char *account;	/* login_account, else "root" */
	char *password; /* in clear (erased when freed); NULL: unchanged */
	bool reset_password;
	bool enable_cloud_init;
	char **public_keys; /* authorized_keys lines */
	struct configdrive_file *files;
	size_t n_files;
	struct configdrive_nic *nics; /* sorted by index */
	size_t n_nics;
	char *os; /* desc os_name when it is a plain word, for the deploy info */
};

/* Whether a create body asks for a first-boot configuration: any of password, public_key,
 * deploys, login_account, or reset_password true. */
bool configdrive_requested(const json_t *args);

/* Checks the deploy fields of args and the hostname and NICs of desc (the request's, or the
 * stored one for a deploy without "desc"). -EINVAL with a message naming the field ("deploys[1]
 * .path: must be absolute"), which never contains a password or key; -ENOMEM. */
int configdrive_parse(const json_t *args, const json_t *desc, struct configdrive **ret,
		      char **ret_error);
struct configdrive *configdrive_free(struct configdrive *cd);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct configdrive *, configdrive_free)
#define _cleanup_configdrive_ _cleanup_(configdrive_freep)

struct configdrive_docs {
	char *meta_data, *user_data, *network_config; /* network_config NULL: no static NIC */
};
void configdrive_docs_done(struct configdrive_docs *docs);

/* Renders the NoCloud files. instance_id changes with every build so that cloud-init runs its
 * per-instance modules (users, passwords, keys, files) again; password_hash is the crypt(3)
 * hash of cd->password (NULL: the password is left alone); redeploy keeps the guest's SSH host
 * keys (a deploy on an existing guest, not its first boot). -EINVAL for an unsafe instance_id or
 * hash, -ENOMEM. */
int configdrive_render(const struct configdrive *cd, const char *instance_id,
		       const char *password_hash, bool redeploy, struct configdrive_docs *ret);

/* Cloudpods' login_key: base64(iv || AES-256-CFB8(key, password)), the key being the guest id
 * cut or padded with '$' to 32 bytes (what the region's login-info decrypts with the guest id
 * when no keypair is bound). iv: 16 random bytes from the caller. */
int configdrive_login_key(const char *guest_id, const char *password, const uint8_t iv[16],
			  char **ret);

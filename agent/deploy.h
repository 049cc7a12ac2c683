/* A guest's config drive on the host: the NoCloud files of agent/configdrive.h written to a
 * private temporary directory of the workspace and packed by xorriso (argv, no shell) into
 * <workspace>/config-drive.iso (volume id "cidata", mode 0600), replaced atomically. The guest
 * reads it as a read-only CD-ROM at its next boot; its disk is never opened here. Blocking
 * (file I/O, xorriso): worker pool only. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "agent/configdrive.h"

#define DEPLOY_ISO_NAME "config-drive.iso"

/* <workspace>/config-drive.iso (malloc'ed), NULL on out of memory. */
char *deploy_iso_path(const char *workspace);

/* Builds the drive of guest sid in workspace from cd. reset_password without a password
 * generates one (14 characters, as Cloudpods does). Only the SHA-512 crypt(3) hash of the password
 * goes into the drive. *ret_info is what the region saves from the callback
 * (SaveDeployInfo): "account" and "key" when a password was set ("key": the login_key the
 * region's login-info decrypts with the guest id; left out when public keys are deployed, whose
 * keypair-encrypted form, RSA-OAEP, no library linked here implements), "os" when the desc
 * names it. -ENOENT when xorriso is not installed, other negative errnos with a message (never
 * holding a password) in *ret_error. */
int deploy_build(const char *workspace, const char *sid, const struct configdrive *cd,
		 bool redeploy, json_t **ret_info, char **ret_error);

/* Test seam: the ISO tool (default "xorriso"). */
extern const char *deploy_xorriso;

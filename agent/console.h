/* Guest console passwords (security review H1): every guest's VNC/SPICE console gets a random
 * password kept in its workspace (<workspace>/console-password, 0600), written into the domain's
 * <graphics passwd=...> and handed to the region as guest metadata __vnc_password. VNC
 * authentication uses at most 8 characters of a password, so it is exactly 8 characters from an
 * alphabet without look-alikes (about 46 bits). Blocking file I/O: called on the worker pool
 * (guest operations). */
#pragma once

#include <stdbool.h>

#define CONSOLE_PASSWORD_FILE "console-password"
#define CONSOLE_PASSWORD_LEN  8

/* A fresh random password (NUL-terminated, CONSOLE_PASSWORD_LEN characters). */
int console_password_generate(char ret[CONSOLE_PASSWORD_LEN + 1]);
/* The guest's password from workspace_dir, created there (0600) when missing or malformed.
 * *ret is erased and freed by the caller (erase_and_free()). */
int console_password_ensure(const char *workspace_dir, char **ret);
/* Reads the password; -ENOENT when the guest has none yet. */
int console_password_read(const char *workspace_dir, char **ret);
/* True when s has the shape of a password this module makes. */
bool console_password_valid(const char *s);

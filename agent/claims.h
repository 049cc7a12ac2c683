/* Disk paths claimed by guests (M1 of the security review): a file below the disk roots is the
 * disk of at most one guest, from the moment a create or sync names it until the guest is
 * deleted, so two creates naming one new file cannot both succeed and no guest's rollback or
 * the disk routes' delete removes another guest's disk. Filled at startup from the stored
 * descriptors. Used from the worker pool (a create claims its paths before it looks at the
 * files): every call takes the table's mutex. Implemented in agent/claims.c. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct claims;

int claims_new(struct claims **ret);
struct claims *claims_free(struct claims *c);

/* Claims the n paths for owner, all or nothing: 0 (paths already owner's stay so), -EBUSY when
 * one belongs to another guest (*ret_index names it, *ret_owner, optional, is a copy of that
 * guest's id), -ENOMEM. */
int claims_take(struct claims *c, const char *owner, const char *const *paths, size_t n,
		size_t *ret_index, char **ret_owner);

/* Releases every path of owner that is not among keep (n_keep of them; keep NULL: all). */
void claims_release(struct claims *c, const char *owner, const char *const *keep, size_t n_keep);

/* A copy of the id of the guest that owns path, or NULL (none, or out of memory). */
char *claims_owner(struct claims *c, const char *path);
size_t claims_count(struct claims *c);

/* Calls fn for every claimed path with its owner, under the table's mutex (fn must not call
 * back into the table). */
void claims_foreach(struct claims *c,
		    void (*fn)(const char *path, const char *owner, void *userdata),
		    void *userdata);

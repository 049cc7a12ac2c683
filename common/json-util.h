/* Typed reading of untrusted JSON (request bodies, descriptors) with refusals named by the
 * field's path: "disks[1].format: expected string, got integer". A parse runs with one
 * struct ju_ctx; the first refusal wins and is kept as the message, and later ones are
 * dropped, so a parser may simply return the first negative result it gets. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/macros.h"

struct ju_ctx {
	char *error; /* the first refusal, owned */
	bool oom;
};

/* Records the refusal (unless one is recorded already) and returns -EINVAL. */
_printf_(2, 3) int ju_fail(struct ju_ctx *c, const char *fmt, ...);
/* Records an allocation failure and returns -ENOMEM. */
int ju_oom(struct ju_ctx *c);
/* Ends a parse that returned r: -ENOMEM after an allocation failure (no message); for another
 * negative r the message goes to *ret_error (when set); the context is emptied. */
int ju_finish(struct ju_ctx *c, int r, char **ret_error);

/* A field name for messages: "uuid", "disks[1].format" (PREFIX or KEY may be NULL or ""). */
struct ju_name {
	char s[96];
};
struct ju_name ju_field(const char *prefix, const char *key);

/* An untrusted value for messages: quoted, escaped, truncated. */
struct ju_quoted {
	char s[96];
};
struct ju_quoted ju_quote(const char *v);

/* "object", "string", ..., "nothing" for NULL. */
const char *ju_type_name(const json_t *v);

enum ju_text_flags {
	JU_TEXT_MULTILINE = 1 << 0, /* \t \n \r allowed */
};

/* Text that may reach XML or a config file: at most MAX bytes, valid UTF-8, no NUL, no control
 * character, no U+FFFE/U+FFFF. */
int ju_check_text(struct ju_ctx *c, const char *name, const char *s, size_t len, size_t max,
		  unsigned flags);

/* The getters below read key of OBJ, named PREFIX.KEY in messages. Absent and null are the
 * same. They return 1 when the value is present, 0 when absent (refused when REQUIRED), and
 * a negative errno on refusal. */

/* Any value; *ret is NULL when absent. */
int ju_get_value(struct ju_ctx *c, const json_t *obj, const char *prefix, const char *key,
		 bool required, json_t **ret);
/* A string checked by ju_check_text; a required one must not be empty. *ret points into OBJ
 * (NULL when absent). */
int ju_get_string(struct ju_ctx *c, const json_t *obj, const char *prefix, const char *key,
		  bool required, size_t max, unsigned flags, const char **ret);
/* An integer in MIN..MAX; *ret is DEF when absent. */
int ju_get_int(struct ju_ctx *c, const json_t *obj, const char *prefix, const char *key,
	       bool required, int64_t min, int64_t max, int64_t def, int64_t *ret);
/* A boolean; *ret is DEF when absent. */
int ju_get_bool(struct ju_ctx *c, const json_t *obj, const char *prefix, const char *key, bool def,
		bool *ret);
/* One of the N NAMES (case-insensitive): *ret is its index, DEF when absent or "". */
int ju_get_enum(struct ju_ctx *c, const json_t *obj, const char *prefix, const char *key,
		const char *const *names, size_t n, int def, int *ret);
/* An array of at most MAX entries; *ret is NULL when absent. */
int ju_get_array(struct ju_ctx *c, const json_t *obj, const char *prefix, const char *key,
		 size_t max, json_t **ret);

/* Refuses V unless it is an object. */
int ju_check_object(struct ju_ctx *c, const json_t *v, const char *name);
/* strdup that records an allocation failure; NULL gives NULL. */
int ju_dup_string(struct ju_ctx *c, const char *s, char **ret);

/* Parses the array KEY of OBJ (at most MAX object entries of SIZE bytes each) into a new array
 * of SIZE-byte items by calling ITEM on each entry in turn, then sorts it with CMP (when set).
 * ITEM gets the entry's name for messages ("disks[1]"), its index I and the new array, which
 * it owns from its first call on: it first stores the array and the count I + 1 where the
 * caller frees them, then parses entry I. Nothing is allocated for an absent or empty array. */
typedef int (*ju_item_fn)(struct ju_ctx *c, const json_t *v, const char *name, size_t i,
			  void *items, void *userdata);
int ju_get_list(struct ju_ctx *c, const json_t *obj, const char *key, size_t max, size_t size,
		int (*cmp)(const void *, const void *), ju_item_fn item, void *userdata);

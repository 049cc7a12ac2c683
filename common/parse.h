/* Checked parsing of untrusted text: full-string match, range checks, negative errno. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* -EINVAL for junk or empty input, -ERANGE outside [min, max]. */
int parse_int64(const char *s, int64_t min, int64_t max, int64_t *ret);
int parse_int(const char *s, int min, int max, int *ret);
int parse_bool(const char *s, bool *ret);
/* Validates a MAC address "aa:bb:cc:dd:ee:ff" (case-insensitive). */
bool mac_is_valid(const char *s);
/* Validates UTF-8 (no overlongs, no surrogates). */
bool utf8_is_valid(const char *s, size_t len);

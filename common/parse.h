/* Checked parsing of untrusted text: full-string match, range checks, negative errno. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* -EINVAL for junk or empty input, -ERANGE outside [min, max]. */
int parse_int64(const char *s, int64_t min, int64_t max, int64_t *ret);
int parse_int(const char *s, int min, int max, int *ret);
int parse_bool(const char *s, bool *ret);
/* Longest host or domain name, as DNS allows (RFC 1035). */
#define HOSTNAME_MAX 253
/* A host or domain name the Cloudpods region may send: dot-separated labels of 1..63 of
 * [A-Za-z0-9_-], not starting or ending with '-', at most HOSTNAME_MAX bytes, no trailing '.'.
 * The '_' is RFC 1123's letters-digits-hyphen rule relaxed as the region relaxes it: a guest
 * created without a hostname gets its name reduced to [A-Za-z0-9.-], but a hostname set
 * later is checked as a domain name only, which allows '_'. */
bool hostname_is_valid(const char *s);
/* Validates a MAC address "aa:bb:cc:dd:ee:ff" (case-insensitive). */
bool mac_is_valid(const char *s);
/* Validates UTF-8 (no overlongs, no surrogates). */
bool utf8_is_valid(const char *s, size_t len);

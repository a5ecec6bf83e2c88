/*
 * num: whole numbers read from text that came from outside.
 *
 * atoi() and sscanf("%d") are undefined when the number does not fit, and
 * neither says whether anything followed it; strtol() needs three checks at
 * every call that are easy to forget. These read a span of text that must be
 * all digits (and a leading '-' where negatives are allowed), nothing before
 * or after, into a value that must lie in [min, max].
 *
 * Each returns 0, -EINVAL (empty, a sign, a space or any other non-digit) or
 * -ERANGE (digits, but outside [min, max]); *out is set only on success.
 */
#ifndef TS_CORE_NUM_H
#define TS_CORE_NUM_H

#include <stddef.h>
#include <stdint.h>

int num_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out);
int num_parse_i64(const char *s, size_t len, int64_t min, int64_t max, int64_t *out);
int num_parse_int(const char *s, size_t len, int min, int max, int *out);

/* The same for a NUL-terminated string. */
int num_parse_int_str(const char *s, int min, int max, int *out);

#endif

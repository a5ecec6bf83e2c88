/*
 * Whole numbers from outside text.
 *
 * The digits are accumulated by hand with an overflow check before each
 * step, so there is no errno to consult and no locale involved, and a span
 * need not be NUL-terminated: parsers hand in a slice of a packet or a line.
 * A value too large for 64 bits is -ERANGE like any other out-of-range one.
 */
#include "core/num.h"

#include <errno.h>
#include <string.h>

int num_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out) {
  if (!s || len == 0) return -EINVAL;
  uint64_t v = 0;
  int overflow = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') return -EINVAL;
    unsigned d = (unsigned)(s[i] - '0');
    if (v > (UINT64_MAX - d) / 10) overflow = 1; /* keep reading: a later letter is -EINVAL */
    else v = v * 10 + d;
  }
  if (overflow || v > max) return -ERANGE;
  *out = v;
  return 0;
}

int num_parse_i64(const char *s, size_t len, int64_t min, int64_t max, int64_t *out) {
  if (!s || len == 0) return -EINVAL;
  int neg = s[0] == '-';
  if (neg && min >= 0) return -EINVAL; /* no sign where none can be meant */
  uint64_t mag;
  /* |INT64_MIN| is INT64_MAX + 1 */
  int rc = num_parse_u64(s + neg, len - (size_t)neg, neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, &mag);
  if (rc) return rc;
  int64_t v = neg ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
  if (v < min || v > max) return -ERANGE;
  *out = v;
  return 0;
}

int num_parse_int(const char *s, size_t len, int min, int max, int *out) {
  int64_t v;
  int rc = num_parse_i64(s, len, min, max, &v);
  if (rc == 0) *out = (int)v;
  return rc;
}

int num_parse_int_str(const char *s, int min, int max, int *out) {
  return num_parse_int(s, s ? strlen(s) : 0, min, max, out);
}

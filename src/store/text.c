/*
 * text: UTF-8 cleaning and time stamps, for the store's way in and way out.
 */
#include "store/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char replacement[] = "\xEF\xBF\xBD";

static int cont(unsigned char b) { return (b & 0xC0) == 0x80; }

/* Length of the valid sequence at s, or 0 when s[0] does not start one. */
static size_t seq_len(const unsigned char *s) {
  unsigned char b = s[0];
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return cont(s[1]) ? 2 : 0;
  if (b >= 0xE0 && b <= 0xEF) {
    unsigned char lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
    return s[1] >= lo && s[1] <= hi && cont(s[2]) ? 3 : 0;
  }
  if (b >= 0xF0 && b <= 0xF4) {
    unsigned char lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
    return s[1] >= lo && s[1] <= hi && cont(s[2]) && cont(s[3]) ? 4 : 0;
  }
  return 0;
}

size_t store_utf8_size(const char *s) {
  size_t n = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p;) {
    size_t k = seq_len(p);
    n += k ? k : sizeof replacement - 1;
    p += k ? k : 1;
  }
  return n;
}

void store_utf8_copy(char *dst, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p;) {
    size_t k = seq_len(p);
    if (k) memcpy(dst, p, k);
    else memcpy(dst, replacement, sizeof replacement - 1);
    dst += k ? k : sizeof replacement - 1;
    p += k ? k : 1;
  }
  *dst = '\0';
}

size_t store_utf8_prefix(const char *s, size_t chars) {
  const unsigned char *p = (const unsigned char *)s;
  for (; *p && chars; chars--) {
    size_t k = seq_len(p);
    p += k ? k : 1;
  }
  return (size_t)(p - (const unsigned char *)s);
}

json_t *store_json_text(const char *s) {
  if (!s) return json_null();
  size_t n = store_utf8_size(s);
  if (n == strlen(s)) return json_stringn(s, n);
  char *clean = malloc(n + 1);
  if (!clean) return NULL;
  store_utf8_copy(clean, s);
  json_t *j = json_stringn(clean, n);
  free(clean);
  return j;
}

void store_iso_time(int64_t ms, char *out, size_t cap) {
  int64_t secs = ms / 1000, milli = ms % 1000;
  if (milli < 0) {
    milli += 1000;
    secs--;
  }
  time_t t = (time_t)secs;
  struct tm tm;
  if (!gmtime_r(&t, &tm)) {
    snprintf(out, cap, "1970-01-01T00:00:00.000Z");
    return;
  }
  snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)milli);
}

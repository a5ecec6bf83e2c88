/*
 * text: the store's handling of strings it did not write itself.
 *
 * Transcripts come from speech recognisers and replies from language
 * models; neither is promised to be valid UTF-8, and a database cell may
 * hold anything. PostgreSQL refuses invalid UTF-8 and JSON cannot carry
 * it, so text is cleaned on the way in and again on the way out: each
 * byte that does not start a valid sequence becomes U+FFFD.
 */
#ifndef TS_STORE_TEXT_H
#define TS_STORE_TEXT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes of the cleaned copy of `s`, without the terminating NUL. */
size_t store_utf8_size(const char *s);
/* Writes the cleaned copy of `s` and a NUL to `dst` (store_utf8_size(s) + 1 bytes). */
void store_utf8_copy(char *dst, const char *s);
/* Bytes that hold the first `chars` characters of valid UTF-8 `s`. */
size_t store_utf8_prefix(const char *s, size_t chars);

/* A JSON string of `s` cleaned, JSON null for NULL; NULL when out of memory. */
json_t *store_json_text(const char *s);
/* "2026-11-29T15:06:36.123Z" for a time in ms since the epoch. */
void store_iso_time(int64_t ms, char *out, size_t cap);

#endif

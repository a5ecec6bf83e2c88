/*
 * text: a string on the heap at its own size, with a cap (see text.h).
 *
 * Every write goes through compose(), which lays out "a, maybe a space, b"
 * already cut to the cap. It writes in place when the block is big enough,
 * and otherwise into a new block that replaces the old one only once it is
 * filled, so a failed allocation leaves the text untouched and an argument
 * that points into the text is still readable while it is copied. A block
 * grows to at least twice its last size (up to the cap): a reply streamed a
 * token at a time is copied a handful of times, not once per token.
 */
#include "agent/text.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TEXT_MIN_BLOCK 32

void text_init(struct text *t, size_t max) { *t = (struct text){.max = max}; }

void text_clear(struct text *t) {
  free(t->s);
  t->s = NULL;
  t->len = t->cap = 0;
}

const char *text_str(const struct text *t) { return t->s ? t->s : ""; }

size_t text_len(const struct text *t) { return t->len; }

/* Whether p points into the text's block (compared as addresses: they may be unrelated). */
static int inside(const struct text *t, const char *p) {
  uintptr_t at = (uintptr_t)p, from = (uintptr_t)t->s;
  return t->s && at >= from && at < from + t->cap;
}

static size_t block_for(const struct text *t, size_t n) {
  size_t size = t->cap * 2;
  if (size < TEXT_MIN_BLOCK) size = TEXT_MIN_BLOCK;
  if (size > t->max + 1) size = t->max + 1;
  return size > n + 1 ? size : n + 1;
}

/* The content becomes a[0, la), a space when `space`, b[0, lb); the sum is within the cap.
 * In place only when it fits and b is not in the block (a moves to the front first). */
static int compose(struct text *t, const char *a, size_t la, int space, const char *b, size_t lb) {
  size_t n = la + (size_t)space + lb;
  if (n == 0) {
    text_clear(t);
    return 0;
  }
  char *dst = t->s;
  size_t size = t->cap;
  if (n + 1 > t->cap || inside(t, b)) {
    if (n + 1 > t->cap) size = block_for(t, n);
    if (!(dst = malloc(size))) return -ENOMEM;
  }
  memmove(dst, a, la);
  if (space) dst[la] = ' ';
  memcpy(dst + la + space, b, lb);
  dst[n] = '\0';
  if (dst != t->s) {
    free(t->s);
    t->s = dst;
    t->cap = size;
  }
  t->len = n;
  return 0;
}

int text_set(struct text *t, const char *s) {
  return compose(t, s, strnlen(s, t->max), 0, "", 0);
}

int text_append(struct text *t, const char *s) {
  size_t lb = strnlen(s, t->max - t->len);
  if (lb == 0) return 0;
  return compose(t, text_str(t), t->len, 0, s, lb);
}

int text_join(struct text *t, const char *a, const char *b) {
  size_t la = strnlen(a, t->max), lb = strnlen(b, t->max);
  int space = la && lb && la < t->max;
  if (lb > t->max - la - (size_t)space) lb = t->max - la - (size_t)space;
  return compose(t, a, la, space, b, lb);
}

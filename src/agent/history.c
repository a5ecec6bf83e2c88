/*
 * Conversation history of one call.
 *
 * The turns live in one array, oldest first; each owns its text. The window
 * is counted in exchanges: when a caller turn would make N + 1 of them, the
 * oldest exchange goes (its caller turn, the replies after it, and any
 * reply that came before the first caller turn, such as a greeting).
 *
 * Two turns of the same role in a row are merged into one, so the
 * conversation always alternates as chat services expect. That happens when
 * the caller speaks again before any of the reply was played (nothing is
 * recorded for that reply), or when the AI speaks twice.
 *
 * An interrupted reply is stored as what was played followed by
 * HISTORY_INTERRUPTED, words a language model reads as intended: its reply
 * was cut off there and the rest was never heard.
 */
#include "agent/history.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct history_turn {
  enum llm_role role;
  char *text;
};

struct history {
  struct history_turn *turns;
  size_t n, cap;
  int max_exchanges;
};

int history_new(struct history **out, int max_exchanges) {
  if (max_exchanges < 1) return -EINVAL;
  struct history *h = calloc(1, sizeof *h);
  if (!h) return -ENOMEM;
  h->max_exchanges = max_exchanges;
  *out = h;
  return 0;
}

void history_free(struct history *h) {
  if (!h) return;
  for (size_t i = 0; i < h->n; i++) free(h->turns[i].text);
  free(h->turns);
  free(h);
}

static size_t count_users(const struct history *h) {
  size_t users = 0;
  for (size_t i = 0; i < h->n; i++) users += h->turns[i].role == LLM_USER;
  return users;
}

/* Removes the oldest caller turn, the replies before it and the replies after it. */
static void drop_oldest_exchange(struct history *h) {
  size_t i = 0;
  while (i < h->n && h->turns[i].role != LLM_USER) i++;
  if (i < h->n) i++;
  while (i < h->n && h->turns[i].role != LLM_USER) i++;
  for (size_t k = 0; k < i; k++) free(h->turns[k].text);
  memmove(h->turns, h->turns + i, (h->n - i) * sizeof *h->turns);
  h->n -= i;
}

/* Appends text to the last turn, separated by a space. */
static int extend_last(struct history *h, const char *text, const char *suffix) {
  struct history_turn *t = &h->turns[h->n - 1];
  size_t a = strlen(t->text), b = strlen(text), s = strlen(suffix);
  char *joined = realloc(t->text, a + 1 + b + s + 1);
  if (!joined) return -ENOMEM;
  joined[a] = ' ';
  memcpy(joined + a + 1, text, b);
  memcpy(joined + a + 1 + b, suffix, s + 1);
  t->text = joined;
  return 0;
}

static int add(struct history *h, enum llm_role role, const char *text, const char *suffix) {
  if (h->n && h->turns[h->n - 1].role == role) return extend_last(h, text, suffix);
  if (role == LLM_USER && count_users(h) >= (size_t)h->max_exchanges) drop_oldest_exchange(h);
  if (h->n == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 8;
    struct history_turn *t = realloc(h->turns, cap * sizeof *t);
    if (!t) return -ENOMEM;
    h->turns = t;
    h->cap = cap;
  }
  size_t b = strlen(text), s = strlen(suffix);
  char *copy = malloc(b + s + 1);
  if (!copy) return -ENOMEM;
  memcpy(copy, text, b);
  memcpy(copy + b, suffix, s + 1);
  h->turns[h->n++] = (struct history_turn){role, copy};
  return 0;
}

/* Leading and trailing white space go; 1 if anything is left. */
static int trimmed(const char *text, const char **start, size_t *len) {
  const char *s = text, *e = text + strlen(text);
  while (s < e && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')) s++;
  while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r')) e--;
  *start = s;
  *len = (size_t)(e - s);
  return e > s;
}

static int add_trimmed(struct history *h, enum llm_role role, const char *text, const char *suffix) {
  const char *s;
  size_t n;
  if (!trimmed(text, &s, &n)) return 0;
  char *copy = strndup(s, n);
  if (!copy) return -ENOMEM;
  int rc = add(h, role, copy, suffix);
  free(copy);
  return rc;
}

int history_add_user(struct history *h, const char *text) {
  if (!text) return -EINVAL;
  return add_trimmed(h, LLM_USER, text, "");
}

int history_add_assistant(struct history *h, const char *text, int interrupted) {
  if (!text) return -EINVAL;
  return add_trimmed(h, LLM_ASSISTANT, text, interrupted ? HISTORY_INTERRUPTED : "");
}

size_t history_turns(const struct history *h, struct llm_turn *out, size_t cap) {
  size_t first = h->n > cap ? h->n - cap : 0;
  for (size_t i = first; i < h->n; i++)
    out[i - first] = (struct llm_turn){.role = h->turns[i].role, .text = h->turns[i].text};
  return h->n - first;
}

size_t history_count(const struct history *h) { return h->n; }

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
 *
 * A reply that called tools is stored as the services want it: an
 * assistant turn carrying the calls (and whatever was said before them),
 * one tool turn per result, then the rest of the reply as an assistant
 * turn of its own. Those are never merged with their neighbours.
 */
#include "agent/history.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct history_turn {
  enum llm_role role;
  char *text;
  struct llm_tool_call *calls; /* an assistant turn's, each string owned */
  size_t ncalls;
  char *call_id, *tool_name;   /* a tool turn's */
  int is_error;
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

static void turn_free(struct history_turn *t) {
  for (size_t i = 0; i < t->ncalls; i++) {
    free((char *)t->calls[i].id);
    free((char *)t->calls[i].name);
    free((char *)t->calls[i].arguments);
  }
  free(t->calls);
  free(t->call_id);
  free(t->tool_name);
  free(t->text);
}

void history_free(struct history *h) {
  if (!h) return;
  for (size_t i = 0; i < h->n; i++) turn_free(&h->turns[i]);
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
  for (size_t k = 0; k < i; k++) turn_free(&h->turns[k]);
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

/* Plain text turns of one role in a row merge; tool calls and results stand alone. */
static int mergeable(const struct history *h, enum llm_role role) {
  if (!h->n || role == LLM_TOOL) return 0;
  const struct history_turn *last = &h->turns[h->n - 1];
  return last->role == role && last->ncalls == 0;
}

/* A new turn at the end, its text `text` + `suffix` copied; NULL when out of memory. */
static struct history_turn *append(struct history *h, enum llm_role role, const char *text,
                                   const char *suffix) {
  if (role == LLM_USER && count_users(h) >= (size_t)h->max_exchanges) drop_oldest_exchange(h);
  if (h->n == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 8;
    struct history_turn *t = realloc(h->turns, cap * sizeof *t);
    if (!t) return NULL;
    h->turns = t;
    h->cap = cap;
  }
  size_t b = strlen(text), s = strlen(suffix);
  char *copy = malloc(b + s + 1);
  if (!copy) return NULL;
  memcpy(copy, text, b);
  memcpy(copy + b, suffix, s + 1);
  struct history_turn *t = &h->turns[h->n++];
  *t = (struct history_turn){.role = role, .text = copy};
  return t;
}

static int add(struct history *h, enum llm_role role, const char *text, const char *suffix) {
  if (mergeable(h, role)) return extend_last(h, text, suffix);
  return append(h, role, text, suffix) ? 0 : -ENOMEM;
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

/* The last turn goes again (a failed addition leaves no half of it). */
static int undo_last(struct history *h) {
  turn_free(&h->turns[--h->n]);
  return -ENOMEM;
}

int history_add_tool_calls(struct history *h, const char *text, const struct llm_tool_call *calls,
                           size_t n) {
  if (!text || !calls || n == 0) return -EINVAL;
  const char *s;
  size_t len;
  trimmed(text, &s, &len);
  char *said = strndup(s, len);
  struct history_turn *t = said ? append(h, LLM_ASSISTANT, said, "") : NULL;
  free(said);
  if (!t) return -ENOMEM;
  if (!(t->calls = calloc(n, sizeof *t->calls))) return undo_last(h);
  for (size_t i = 0; i < n; i++, t->ncalls++) {
    struct llm_tool_call *c = &t->calls[i];
    c->id = strdup(calls[i].id ? calls[i].id : "");
    c->name = strdup(calls[i].name ? calls[i].name : "");
    c->arguments = strdup(calls[i].arguments ? calls[i].arguments : "{}");
    if (!c->id || !c->name || !c->arguments) {
      t->ncalls++; /* so turn_free frees what this one got */
      return undo_last(h);
    }
  }
  return 0;
}

int history_add_tool_result(struct history *h, const char *call_id, const char *tool_name,
                            const char *result, int is_error) {
  if (!call_id || !tool_name || !result) return -EINVAL;
  struct history_turn *t = append(h, LLM_TOOL, result, "");
  if (!t) return -ENOMEM;
  t->is_error = is_error;
  if (!(t->call_id = strdup(call_id)) || !(t->tool_name = strdup(tool_name))) return undo_last(h);
  return 0;
}

size_t history_turns(const struct history *h, struct llm_turn *out, size_t cap) {
  size_t first = h->n > cap ? h->n - cap : 0;
  /* A window must not start inside a tool round: its results need their call. */
  while (first < h->n && h->turns[first].role == LLM_TOOL) first++;
  for (size_t i = first; i < h->n; i++) {
    const struct history_turn *t = &h->turns[i];
    out[i - first] = (struct llm_turn){.role = t->role, .text = t->text, .calls = t->calls,
                                       .ncalls = t->ncalls, .call_id = t->call_id,
                                       .tool_name = t->tool_name, .is_error = t->is_error};
  }
  return h->n - first;
}

size_t history_count(const struct history *h) { return h->n; }

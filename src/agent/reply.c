/*
 * reply: the AI's reply in progress (see reply.h).
 *
 * Nothing here calls an engine or the agent back: the agent starts the
 * jobs and stores them here, and this module only lets them go. The agent
 * frees a reply last in whatever path ends it, since nothing of the reply
 * may be touched after.
 */
#include "agent/reply.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engines/llm.h"
#include "engines/tts.h"

int reply_new(struct reply **out, int is_turn) {
  struct reply *r = calloc(1, sizeof *r);
  if (!r) return -ENOMEM;
  text_init(&r->text, REPLY_MAX_TEXT - 1);
  r->is_turn = is_turn;
  /* A greeting or a prompt answers no turn: there is none to record. */
  r->user_in_history = !is_turn;
  *out = r;
  return 0;
}

void reply_free(struct reply *r) {
  if (!r) return;
  reply_end_llm(r);
  reply_end_tts(r);
  for (int i = 0; i < r->nsent; i++) free(r->sentences[i]);
  free(r->sentences);
  text_clear(&r->text);
  free(r);
}

int reply_append(struct reply *r, const char *text) { return text_append(&r->text, text); }

const char *reply_text(const struct reply *r) { return text_str(&r->text); }

int reply_push_sentence(struct reply *r, const char *sentence) {
  if (r->nsent == REPLY_MAX_SENTENCES) return -ENOSPC;
  if (r->nsent == r->sentcap) {
    int ncap = r->sentcap ? r->sentcap * 2 : 8;
    char **grown = realloc(r->sentences, (size_t)ncap * sizeof *grown);
    if (!grown) return -ENOMEM;
    r->sentences = grown;
    r->sentcap = ncap;
  }
  char *copy = strdup(sentence);
  if (!copy) return -ENOMEM;
  r->sentences[r->nsent++] = copy;
  return 0;
}

char *reply_pop_sentence(struct reply *r) {
  if (r->nsent == 0) return NULL;
  char *first = r->sentences[0];
  memmove(r->sentences, r->sentences + 1, (size_t)(r->nsent - 1) * sizeof *r->sentences);
  r->nsent--;
  return first;
}

void reply_end_llm(struct reply *r) {
  llm_release(r->llm);
  r->llm = NULL;
}

void reply_end_tts(struct reply *r) {
  tts_release(r->tts);
  r->tts = NULL;
}

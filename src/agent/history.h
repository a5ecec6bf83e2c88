/*
 * history: one call's conversation, as the LLM sees it: the last N
 * exchanges (a caller turn and the AI's reply). A reply the caller cut off
 * keeps only what was actually played, marked as interrupted so the model
 * knows it was not heard in full.
 */
#ifndef TS_AGENT_HISTORY_H
#define TS_AGENT_HISTORY_H

#include <stddef.h>

#include "engines/llm.h"

struct history;

int history_new(struct history **out, int max_exchanges);
void history_free(struct history *h);

int history_add_user(struct history *h, const char *text);
/* interrupted = 1: `text` is the part that was played before the caller cut in. */
int history_add_assistant(struct history *h, const char *text, int interrupted);

/*
 * The turns to send, oldest first, pointing into the history (valid until
 * the next change). Returns how many were written (at most cap).
 */
size_t history_turns(const struct history *h, struct llm_turn *out, size_t cap);

size_t history_count(const struct history *h);

#endif

/*
 * history: one call's conversation, as the LLM sees it: the last N
 * exchanges (a caller turn and the AI's reply). A reply the caller cut off
 * keeps only what was actually played, marked as interrupted so the model
 * knows it was not heard in full.
 *
 * Turns are stored trimmed; an empty one is not stored (a reply cut off
 * before any of it played leaves no trace). Two turns of the same role in a
 * row become one, so the turns always alternate.
 */
#ifndef TS_AGENT_HISTORY_H
#define TS_AGENT_HISTORY_H

#include <stddef.h>

#include "engines/llm.h"

/* Appended to an interrupted reply: the model reads where it was cut off. */
#define HISTORY_INTERRUPTED " [interrupted by the caller]"

struct history;

/* max_exchanges >= 1, else -EINVAL. */
int history_new(struct history **out, int max_exchanges);
void history_free(struct history *h);

int history_add_user(struct history *h, const char *text);
/* interrupted = 1: `text` is the part that was played before the caller cut in. */
int history_add_assistant(struct history *h, const char *text, int interrupted);

/*
 * A reply's tool round: what was said before the calls (may be empty) and
 * the calls; then one result per call, in any order, before anything else
 * is added. Copies everything.
 */
int history_add_tool_calls(struct history *h, const char *text, const struct llm_tool_call *calls,
                           size_t n);
int history_add_tool_result(struct history *h, const char *call_id, const char *tool_name,
                            const char *result, int is_error);

/*
 * The turns to send, oldest first, pointing into the history (valid until
 * the next change). Returns how many were written (at most cap); when cap
 * is short, the newest turns are the ones written.
 */
size_t history_turns(const struct history *h, struct llm_turn *out, size_t cap);

size_t history_count(const struct history *h);

#endif
